//! AI suggestions: the Perplexity client against a local server that speaks its protocol
//! (answers, errors, timeouts), and the worker end to end through the shared RabbitMQ and
//! Redis (202 then results, cache with TTL, success and failure counted, redelivery ignored).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestApp, TestDb, eventually};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use listacompra_api::ai::{self, PerplexityProvider};
use listacompra_api::amqp::{self, Topology};
use listacompra_api::domain::ItemSummary;
use listacompra_api::outbox::{self, Event};
use listacompra_api::ports::SuggestionProvider;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warp::Filter;

/// How the fake Perplexity answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Answer,
    Status(u16),
    Slow,
    Garbage,
}

/// A local HTTP server speaking the chat-completions protocol; returns its base URL.
async fn fake_perplexity(mode: Mode) -> Result<String> {
    let route = warp::post()
        .and(warp::path!("chat" / "completions"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::json())
        .then(move |auth: Option<String>, body: Value| async move {
            let reply = |status: u16, body: String| {
                let mut res = warp::reply::Response::new(body.into());
                *res.status_mut() = warp::http::StatusCode::from_u16(status).unwrap_or_default();
                res.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/json"));
                res
            };
            if auth.as_deref() != Some("Bearer pplx-test-key") {
                return reply(401, json!({ "error": { "message": "Invalid API key" } }).to_string());
            }
            let prompt = body["messages"][1]["content"].as_str().unwrap_or_default().to_owned();
            if body["model"] != "sonar" || !prompt.contains("pasta") {
                return reply(400, json!({ "error": { "message": format!("unexpected request {body}") } }).to_string());
            }
            match mode {
                Mode::Answer => {
                    let content = "```json\n[{\"name\": \"Tomato sauce\", \"category\": \"pantry\", \"reason\": \"for the pasta\"}]\n```";
                    reply(200, json!({
                        "id": "x", "model": "sonar", "object": "chat.completion",
                        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": content } }],
                        "usage": { "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20 }
                    }).to_string())
                }
                Mode::Status(code) => reply(code, json!({ "error": { "message": "boom" } }).to_string()),
                Mode::Slow => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    reply(200, "{}".to_owned())
                }
                Mode::Garbage => reply(200, "<html>not json</html>".to_owned()),
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok(format!("http://{addr}"))
}

fn pasta() -> Vec<ItemSummary> {
    vec![ItemSummary {
        name: "pasta".to_owned(),
        category: Some("pantry".to_owned()),
    }]
}

#[tokio::test]
async fn perplexity_client_parses_answers_and_reports_errors_and_timeouts() -> Result<()> {
    let timeout = Duration::from_millis(500);
    let ok = PerplexityProvider::new(
        &fake_perplexity(Mode::Answer).await?,
        "pplx-test-key",
        "sonar",
        timeout,
    )?;
    let got = ok.suggest(&pasta()).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "tomato sauce");
    assert_eq!(got[0].category.as_deref(), Some("pantry"));

    let bad_key = PerplexityProvider::new(
        &fake_perplexity(Mode::Answer).await?,
        "wrong",
        "sonar",
        timeout,
    )?;
    let err = bad_key.suggest(&pasta()).await.unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("PPLX_API_KEY"), "{err}");

    for (mode, expect) in [
        (Mode::Status(500), "500"),
        (Mode::Status(429), "rate limited"),
        (Mode::Slow, "timed out after 500 ms"),
        (Mode::Garbage, "unexpected response body"),
    ] {
        let client = PerplexityProvider::new(
            &fake_perplexity(mode).await?,
            "pplx-test-key",
            "sonar",
            timeout,
        )?;
        let start = std::time::Instant::now();
        let err = client.suggest(&pasta()).await.unwrap_err().to_string();
        assert!(err.contains(expect), "{mode:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{mode:?} took {:?}",
            start.elapsed()
        );
    }
    // Nothing listening at all.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere =
        PerplexityProvider::new(&format!("http://127.0.0.1:{free}"), "k", "sonar", timeout)?;
    assert!(
        nowhere
            .suggest(&pasta())
            .await
            .unwrap_err()
            .to_string()
            .contains("request failed")
    );
    Ok(())
}

/// Requests suggestions for `list` (202 expected) and waits until the job has finished.
async fn request_and_wait(app: &TestApp, token: &str, list: &str) -> Result<Value> {
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/suggestions"),
            Some(token),
            None,
        )
        .await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "request: {status} {body}");
    let id = body["id"].as_str().context("request id")?;
    wait_done(app, token, &format!("/v1/lists/{list}/suggestions/{id}")).await
}

async fn wait_done(app: &TestApp, token: &str, location: &str) -> Result<Value> {
    eventually("the suggestion job", Duration::from_secs(60), || async {
        let (s, b) = app.call(Method::GET, location, Some(token), None).await?;
        anyhow::ensure!(s == StatusCode::OK, "{s} {b}");
        Ok((b["status"] != "pending").then_some(b))
    })
    .await
}

#[tokio::test]
async fn suggestions_are_computed_by_the_worker_cached_and_deduplicated() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = common::config(&services, &db)?;
    let topology = Topology::new(&config.amqp_prefix);
    let app = TestApp::start(config.clone(), true).await?;
    let (_, _, token) = app.user().await?;
    let t = Some(token.as_str());
    let list = app.create_list(&token, "Cena").await?;
    app.call(
        Method::POST,
        &format!("/v1/lists/{list}/items"),
        t,
        Some(json!({ "name": "Pasta", "category": "pantry" })),
    )
    .await?;

    let res = app
        .http
        .post(format!("{}/v1/lists/{list}/suggestions", app.base))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str()?.to_owned();
    let body: Value = res.json().await?;
    assert_eq!(body["status"], "pending");
    assert_eq!(
        location,
        format!(
            "/v1/lists/{list}/suggestions/{}",
            body["id"].as_str().unwrap()
        )
    );

    let done = wait_done(&app, &token, &location).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["provider"], "offline");
    assert_eq!(done["suggestions"][0]["name"], "tomato sauce", "{done}");
    assert!(done["completed_at"].is_string());
    let ok = || {
        app.running
            .as_ref()
            .unwrap()
            .metrics
            .ai_jobs
            .with_label_values(&["success"])
            .get()
    };
    // Counted just after the result commits: wait for it, then for exactly one.
    let counted = |n: u64| {
        eventually(
            "the AI job to be counted",
            Duration::from_secs(30),
            move || async move { Ok((ok() >= n).then_some(())) },
        )
    };
    counted(1).await?;
    assert_eq!(ok(), 1);

    // The answer is cached in Redis with the configured TTL.
    let redis = redis::Client::open(config.redis_url.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let key = ai::cache_key(
        "offline",
        &[ItemSummary {
            name: "Pasta".to_owned(),
            category: Some("pantry".to_owned()),
        }],
    );
    let ttl: i64 = conn.ttl(&key).await?;
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    // Redeliver the same event (same id): no second effect.
    let (id, event_type, aggregate_id, payload, created_at): (uuid::Uuid, String, uuid::Uuid, Value, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT id, event_type, aggregate_id, payload, created_at FROM outbox_events WHERE event_type = $1")
            .bind(outbox::SUGGESTION_REQUESTED)
            .fetch_one(&db.pool)
            .await?;
    let event = Event {
        id,
        event_type,
        aggregate_id,
        payload,
        created_at,
    };
    let amqp_conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = amqp_conn.create_channel().await?;
    channel
        .basic_publish(
            topology.exchange.as_str().into(),
            outbox::SUGGESTION_REQUESTED.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&event)?,
            BasicProperties::default().with_message_id(event.id.to_string().into()),
        )
        .await?;
    // A second request, queued behind the duplicate: once it is done, the duplicate was seen.
    let second = request_and_wait(&app, &token, &list).await?;
    assert_eq!(second["status"], "done");
    counted(2).await?;
    // Exactly two once the worker has stopped (below): nothing can still be counting then.
    let metrics = app.running.as_ref().unwrap().metrics.clone();
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'ai-worker'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(processed, 2);

    // Only members read suggestions.
    let (_, _, stranger) = app.user().await?;
    let (s, _) = app
        .call(Method::GET, &location, Some(&stranger), None)
        .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let _ = channel
        .queue_delete(topology.ai_queue.as_str().into(), Default::default())
        .await;
    let _ = channel
        .exchange_delete(topology.exchange.as_str().into(), Default::default())
        .await;
    amqp_conn.close(200, "bye".into()).await?;
    app.stop().await;
    assert_eq!(
        metrics.ai_jobs.with_label_values(&["success"]).get(),
        2,
        "the redelivered event must not count again"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_provider_marks_the_job_failed_and_counts_a_failure() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    config.pplx_api_key = Some("pplx-test-key".to_owned());
    config.pplx_base_url = fake_perplexity(Mode::Status(503)).await?;
    let topology = Topology::new(&config.amqp_prefix);
    let app = TestApp::start(config.clone(), true).await?;
    let (_, _, token) = app.user().await?;
    let t = Some(token.as_str());
    let list = app.create_list(&token, "Cena").await?;
    app.call(
        Method::POST,
        &format!("/v1/lists/{list}/items"),
        t,
        Some(json!({ "name": "pasta" })),
    )
    .await?;
    let done = request_and_wait(&app, &token, &list).await?;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["provider"], "perplexity");
    assert!(done["error"].as_str().unwrap().contains("503"), "{done}");
    let metrics = &app.running.as_ref().unwrap().metrics;
    let failures = metrics.ai_jobs.with_label_values(&["failure"]);
    eventually(
        "the failed AI job to be counted",
        Duration::from_secs(30),
        || async { Ok((failures.get() > 0).then_some(())) },
    )
    .await?;
    assert_eq!(failures.get(), 1);
    assert_eq!(metrics.ai_jobs.with_label_values(&["success"]).get(), 0);

    let conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    let _ = channel
        .queue_delete(topology.ai_queue.as_str().into(), Default::default())
        .await;
    let _ = channel
        .exchange_delete(topology.exchange.as_str().into(), Default::default())
        .await;
    conn.close(200, "bye".into()).await?;
    app.stop().await;
    Ok(())
}
