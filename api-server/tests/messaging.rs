//! Messaging that cannot wedge (issue 13), against the real PostgreSQL and RabbitMQ and a
//! local stand-in for the Perplexity API: provider 429s and 5xx are retried (honouring
//! Retry-After) and then answered by the offline provider when configured; model output is
//! validated like user input; a message that always fails is dead-lettered after the attempt
//! cap and counted as a failure; an outbox event that can never be published is moved aside;
//! the relay and the worker recover from closed connections and channels with a backlog.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestApp, TestDb, eventually};
use e2e::private::PrivateRabbit;
use e2e::services::Services;
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use listacompra_api::amqp::{self, Topology};
use listacompra_api::config::{Config, Vars};
use listacompra_api::metrics::Metrics;
use listacompra_api::outbox::{self, Relay};
use listacompra_api::store::PgStore;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;
use warp::Filter;

/// One scripted answer of the stand-in provider.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    /// The assistant's message (200 only).
    content: String,
    delay: Duration,
}

impl Reply {
    fn answer(content: &str) -> Self {
        Self {
            status: 200,
            retry_after: None,
            content: content.to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn status(status: u16, retry_after: Option<&str>) -> Self {
        Self {
            status,
            retry_after: retry_after.map(str::to_owned),
            content: String::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A local server speaking the chat-completions protocol: answers `script` in order, then
/// repeats its last reply. Returns its base URL and the number of calls it received.
async fn stub_provider(script: Vec<Reply>) -> Result<(String, Arc<Mutex<usize>>)> {
    let calls = Arc::new(Mutex::new(0usize));
    let queue = Arc::new(Mutex::new(VecDeque::from(script)));
    let counted = calls.clone();
    let route = warp::post()
        .and(warp::path!("chat" / "completions"))
        .then(move || {
            let queue = queue.clone();
            let counted = counted.clone();
            async move {
                *counted.lock().expect("call counter") += 1;
                let reply = {
                    let mut q = queue.lock().expect("script");
                    if q.len() > 1 {
                        q.pop_front().expect("a reply")
                    } else {
                        q.front().cloned().expect("a reply")
                    }
                };
                tokio::time::sleep(reply.delay).await;
                let body = if reply.status == 200 {
                    json!({
                        "id": "x", "model": "sonar", "object": "chat.completion",
                        "choices": [{ "index": 0, "finish_reason": "stop",
                                      "message": { "role": "assistant", "content": reply.content } }],
                    })
                } else {
                    json!({ "error": { "message": "try later" } })
                };
                let mut res = warp::reply::Response::new(body.to_string().into());
                *res.status_mut() = warp::http::StatusCode::from_u16(reply.status).expect("a status");
                res.headers_mut().insert(
                    "content-type",
                    warp::http::HeaderValue::from_static("application/json"),
                );
                if let Some(after) = reply.retry_after {
                    res.headers_mut().insert(
                        "retry-after",
                        warp::http::HeaderValue::from_str(&after).expect("a header value"),
                    );
                }
                res
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok((format!("http://{addr}"), calls))
}

/// The configuration read from environment variables (as in production), for the shared
/// services, `database_url` and `rabbitmq_url`, plus `extra` variables.
fn config_from_env(
    services: &Services,
    database_url: &str,
    rabbitmq_url: &str,
    extra: &[(&str, String)],
) -> Result<Config> {
    let mut vars: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("REDIS_URL", services.redis_url()?.to_owned()),
        ("RABBITMQ_URL", rabbitmq_url.to_owned()),
        (
            "JWT_SECRET",
            "test-secret-0123456789-0123456789-abcdef".to_owned(),
        ),
        ("PORT", "0".to_owned()),
        ("APP_VERSION", "9.9.9-test".to_owned()),
        ("AMQP_PREFIX", format!("test.{}", Uuid::new_v4().simple())),
        ("PPLX_TIMEOUT_MS", "2000".to_owned()),
        ("AI_CACHE_TTL_SECONDS", "60".to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "10".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), v.clone());
    }
    Ok(Vars(move |k: &str| vars.get(k).cloned()).config()?)
}

/// A user, a list with one item of a name no other test uses (the provider's answers are
/// cached in the shared Redis by item names), and that user's token.
async fn list_with_an_item(app: &TestApp) -> Result<(String, String)> {
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "Cena").await?;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/items"),
            Some(&token),
            Some(json!({ "name": format!("pasta {}", Uuid::new_v4().simple()), "category": "pantry" })),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "add item: {status} {body}");
    Ok((token, list))
}

/// Requests suggestions; returns the request's location.
async fn request(app: &TestApp, token: &str, list: &str) -> Result<String> {
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/suggestions"),
            Some(token),
            None,
        )
        .await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "request: {status} {body}");
    Ok(format!(
        "/v1/lists/{list}/suggestions/{}",
        body["id"].as_str().context("request id")?
    ))
}

/// Suggestions for a new list with one item, requested and waited for (60 s at most).
async fn suggested(app: &TestApp) -> Result<Value> {
    let (token, list) = list_with_an_item(app).await?;
    let location = request(app, &token, &list).await?;
    finished(app, &token, &location, Duration::from_secs(60)).await
}

/// Waits until the request at `location` is no longer pending.
async fn finished(app: &TestApp, token: &str, location: &str, timeout: Duration) -> Result<Value> {
    eventually("the suggestion request to finish", timeout, || async {
        let (s, b) = app.call(Method::GET, location, Some(token), None).await?;
        anyhow::ensure!(s == StatusCode::OK, "{s} {b}");
        Ok((b["status"] != "pending").then_some(b))
    })
    .await
}

/// The value of the sample of `name` whose labels include `label`, from `/metrics`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn ai_outcome(app: &TestApp, outcome: &str) -> u64 {
    app.running
        .as_ref()
        .expect("the app runs")
        .metrics
        .ai_jobs
        .with_label_values(&[outcome])
        .get()
}

/// Waits until the AI jobs counted reach `success` and `failure`, then asserts them exactly.
/// A job is counted just after its result commits, so an API client can read the result
/// before the count.
async fn assert_ai_outcomes(app: &TestApp, success: u64, failure: u64) -> Result<()> {
    eventually(
        "the AI jobs to be counted",
        Duration::from_secs(30),
        || async {
            Ok(
                (ai_outcome(app, "success") >= success && ai_outcome(app, "failure") >= failure)
                    .then_some(()),
            )
        },
    )
    .await?;
    assert_eq!(
        (ai_outcome(app, "success"), ai_outcome(app, "failure")),
        (success, failure),
        "AI jobs counted (success, failure)"
    );
    Ok(())
}

/// [`assert_ai_outcomes`], then stops the app and asserts them again: a count that came
/// late (a job counted twice) shows once nothing can still be counting.
async fn stop_and_assert_ai_outcomes(app: TestApp, success: u64, failure: u64) -> Result<()> {
    assert_ai_outcomes(&app, success, failure).await?;
    let metrics = app.running.as_ref().expect("the app runs").metrics.clone();
    app.stop().await;
    let jobs = |outcome: &str| metrics.ai_jobs.with_label_values(&[outcome]).get();
    assert_eq!(
        (jobs("success"), jobs("failure")),
        (success, failure),
        "AI jobs counted (success, failure) once the app stopped"
    );
    Ok(())
}

/// Deletes the exchange and queues of `config`'s prefix from the shared broker.
/// `listacompra_dead_letters_total{source="outbox"}` of `metrics`.
fn outbox_dead_letters(metrics: &Metrics) -> Option<f64> {
    let text = metrics.render();
    sample(
        &text,
        "listacompra_dead_letters_total",
        r#"source="outbox""#,
    )
}

async fn remove_topology(config: &Config) -> Result<()> {
    remove_topology_at(&config.rabbitmq_url, &config.amqp_prefix).await
}

async fn remove_topology_at(rabbitmq_url: &str, prefix: &str) -> Result<()> {
    let topology = Topology::new(prefix);
    let conn = amqp::connect(rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    for queue in [&topology.ai_queue, &topology.ai_dead_letters] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(topology.exchange.as_str().into(), Default::default())
        .await;
    conn.close(200, "bye".into()).await?;
    Ok(())
}

const TWO: &str = r#"[{"name": "Tomato sauce", "category": "pantry", "reason": "for the pasta"}, {"name": "Basil", "category": "produce", "reason": "fresh"}]"#;

#[tokio::test]
async fn provider_429s_and_503s_are_retried_honouring_retry_after() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let in_a_second =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    let (url, calls) = stub_provider(vec![
        Reply::status(429, Some("1")),
        Reply::status(503, Some(&in_a_second)),
        Reply::status(504, None),
        Reply::answer(TWO),
    ])
    .await?;
    let config = config_from_env(
        &services,
        &db.url,
        services.rabbitmq_url()?,
        &[
            ("PPLX_API_KEY", "pplx-test-key".to_owned()),
            ("PPLX_BASE_URL", url),
        ],
    )?;
    let app = TestApp::start(config.clone(), true).await?;
    let done = suggested(&app).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["provider"], "perplexity", "{done}");
    assert_eq!(done["suggestions"][0]["name"], "tomato sauce", "{done}");
    assert_eq!(*calls.lock().unwrap(), 4, "three failures, then the answer");
    stop_and_assert_ai_outcomes(app, 1, 0).await?;
    remove_topology(&config).await?;
    Ok(())
}

#[tokio::test]
async fn after_the_retries_the_offline_provider_answers_when_configured() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let (url, calls) = stub_provider(vec![Reply::status(503, None)]).await?;
    let config = config_from_env(
        &services,
        &db.url,
        services.rabbitmq_url()?,
        &[
            ("PPLX_API_KEY", "pplx-test-key".to_owned()),
            ("PPLX_BASE_URL", url),
            ("AI_PROVIDER_RETRIES", "2".to_owned()),
            ("AI_OFFLINE_FALLBACK", "true".to_owned()),
        ],
    )?;
    let app = TestApp::start(config.clone(), true).await?;
    let done = suggested(&app).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["provider"], "offline", "{done}");
    assert!(
        !done["suggestions"].as_array().unwrap().is_empty(),
        "{done}"
    );
    assert_eq!(*calls.lock().unwrap(), 3, "one call and two retries");
    stop_and_assert_ai_outcomes(app, 1, 0).await?;
    remove_topology(&config).await?;
    Ok(())
}

#[tokio::test]
async fn model_output_is_validated_like_user_input() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    // A NUL byte (PostgreSQL refuses it in jsonb), a control character, a name over the
    // item-name cap, an over-long category, and more entries than a request yields.
    let mut entries = vec![
        json!({ "name": "tomato\u{0}sauce", "reason": "nul" }),
        json!({ "name": "bell\u{7}pepper", "reason": "control" }),
        json!({ "name": "x".repeat(201), "reason": "long" }),
        json!({ "name": "basil", "category": "c".repeat(51), "reason": "long category" }),
        json!({ "name": "Parmesan", "category": "Dairy", "reason": "ok" }),
    ];
    for i in 0..20 {
        entries.push(json!({ "name": format!("extra {i}"), "reason": "many" }));
    }
    let (url, _) = stub_provider(vec![Reply::answer(&Value::Array(entries).to_string())]).await?;
    let config = config_from_env(
        &services,
        &db.url,
        services.rabbitmq_url()?,
        &[
            ("PPLX_API_KEY", "pplx-test-key".to_owned()),
            ("PPLX_BASE_URL", url),
        ],
    )?;
    let app = TestApp::start(config.clone(), true).await?;
    let done = suggested(&app).await?;
    assert_eq!(done["status"], "done", "{done}");
    let names: Vec<&str> = done["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "parmesan", "{done}");
    assert_eq!(names.len(), listacompra_api::ai::MAX_SUGGESTIONS, "{done}");
    assert!(
        names
            .iter()
            .all(|n| !n.chars().any(char::is_control) && n.len() <= 200),
        "{done}"
    );
    stop_and_assert_ai_outcomes(app, 1, 0).await?;
    remove_topology(&config).await?;
    Ok(())
}

#[tokio::test]
async fn a_message_that_always_fails_is_dead_lettered_after_the_attempt_cap() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    // The database refuses to record any result but a failure: every attempt fails.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_done() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.status = 'done' THEN RAISE EXCEPTION 'test: refusing a result'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_done BEFORE UPDATE ON suggestion_requests \
         FOR EACH ROW EXECUTE FUNCTION refuse_done();",
    )
    .execute(&db.pool)
    .await?;
    let config = config_from_env(
        &services,
        &db.url,
        services.rabbitmq_url()?,
        &[("AI_MAX_ATTEMPTS", "3".to_owned())],
    )?;
    let topology = Topology::new(&config.amqp_prefix);
    let app = TestApp::start(config.clone(), true).await?;
    let (token, list) = list_with_an_item(&app).await?;
    let location = request(&app, &token, &list).await?;
    let failed = finished(&app, &token, &location, Duration::from_secs(60)).await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("3 attempts"),
        "{failed}"
    );
    // Counted as a failure in the AI success KPI, and as a dead letter.
    assert_ai_outcomes(&app, 0, 1).await?;
    let text = app.metrics().await?;
    assert_eq!(
        sample(&text, "listacompra_dead_letters_total", r#"source="ai""#),
        Some(1.0),
        "{text}"
    );
    // The message sits in the dead-letter queue with its attempt count; the queue is empty.
    let conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    let dead = channel
        .basic_get(
            format!("{}.dlq", topology.ai_queue).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await?
        .context("nothing in the dead-letter queue")?;
    let event: outbox::Event = serde_json::from_slice(&dead.delivery.data)?;
    assert_eq!(event.event_type, outbox::SUGGESTION_REQUESTED);
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(format!("{headers:?}").contains("x-attempts"), "{headers:?}");
    let left = channel
        .basic_get(
            topology.ai_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await?;
    assert!(left.is_none(), "the message is off the main queue");
    app.stop().await;
    conn.close(200, "bye".into()).await?;
    remove_topology(&config).await?;
    Ok(())
}

#[tokio::test]
async fn an_outbox_event_that_can_never_be_published_is_moved_aside() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let topology = Topology::new(&format!("test.{}", Uuid::new_v4().simple()));
    // A broker of its own that refuses messages over 4 KiB (closing the channel, 406), and
    // an event of 8 KiB: no publish of it can succeed.
    let rabbit = Arc::new(tokio::task::spawn_blocking(PrivateRabbit::start).await??);
    tokio::task::spawn_blocking({
        let rabbit = rabbit.clone();
        move || {
            rabbit.rabbitmqctl(&[
                "eval",
                "application:set_env(rabbit, max_message_size, 4096).",
            ])
        }
    })
    .await??;
    let mut tx = db.pool.begin().await?;
    let poison = outbox::enqueue(
        &mut tx,
        "test.event",
        Uuid::new_v4(),
        json!({ "big": "x".repeat(8192) }),
    )
    .await?;
    // And one that cannot even be sent: a routing key longer than AMQP's 255 bytes.
    let unroutable = outbox::enqueue(&mut tx, &"k".repeat(300), Uuid::new_v4(), json!({})).await?;
    // A suggestion request whose event can never be published: once it is moved aside, the
    // request must end failed (its user would otherwise wait for ever, and the oldest
    // pending request's age would grow for ever).
    let (user, list) = common::user_with_list(&db.pool).await?;
    let request = common::pending_request(&db.pool, user, list, Duration::ZERO).await?;
    let stuck = outbox::enqueue(
        &mut tx,
        outbox::SUGGESTION_REQUESTED,
        request,
        json!({ "request_id": request, "list_id": list, "pad": "x".repeat(8192) }),
    )
    .await?;
    tx.commit().await?;
    let mut good = Vec::new();
    for i in 0..5 {
        let mut tx = db.pool.begin().await?;
        good.push(outbox::enqueue(&mut tx, "test.event", Uuid::new_v4(), json!({ "i": i })).await?);
        tx.commit().await?;
    }
    let metrics = Metrics::new("test")?;
    let mut relay = Relay::new(
        PgStore::new(db.pool.clone()),
        rabbit.url.clone(),
        topology.clone(),
        metrics.clone(),
    );
    relay.poll = Duration::from_millis(50);
    relay.max_backoff = Duration::from_millis(200);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(relay.run(shutdown));

    // Moved aside after the default cap of 5 attempts: never due again, not in the backlog.
    let (attempts, error): (i32, String) = eventually(
        "the poison event to be moved aside",
        Duration::from_secs(60),
        || async {
            let row: (i32, Option<String>, bool) = sqlx::query_as(
                "SELECT attempts, last_error, next_attempt_at = 'infinity' FROM outbox_events WHERE id = $1",
            )
            .bind(poison)
            .fetch_one(&db.pool)
            .await?;
            Ok(row.2.then(|| (row.0, row.1.unwrap_or_default())))
        },
    )
    .await?;
    assert_eq!(attempts, 5);
    // Refused by the broker (not by a check of ours before sending).
    assert!(
        error.contains("gave up after 5 attempts") && error.contains("RabbitMQ"),
        "{error}"
    );
    let (status, error): (String, Option<String>) = eventually(
        "the suggestion request of the event moved aside to end failed",
        Duration::from_secs(60),
        || async {
            let row: (String, Option<String>) =
                sqlx::query_as("SELECT status, error FROM suggestion_requests WHERE id = $1")
                    .bind(request)
                    .fetch_one(&db.pool)
                    .await?;
            Ok((row.0 != "pending").then_some(row))
        },
    )
    .await?;
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("could not be queued")),
        "{error:?}"
    );
    let aside: bool =
        sqlx::query_scalar("SELECT next_attempt_at = 'infinity' FROM outbox_events WHERE id = $1")
            .bind(stuck)
            .fetch_one(&db.pool)
            .await?;
    assert!(aside);
    assert_eq!(
        listacompra_api::ai::backlog::oldest_pending_seconds(&db.pool).await?,
        0
    );
    let published: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE published_at IS NOT NULL AND id = ANY($1)",
    )
    .bind(&good)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(published, 5, "the other events are published");
    assert_eq!(outbox::backlog(&db.pool).await?, 0);
    // The unroutable event is moved aside at its first attempt: retrying cannot help.
    let (attempts, aside): (i32, bool) = sqlx::query_as(
        "SELECT attempts, next_attempt_at = 'infinity' FROM outbox_events WHERE id = $1",
    )
    .bind(unroutable)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!((attempts, aside), (1, true));
    // Eight retries (the fifth failure of each big event is not followed by one), three
    // dead letters.
    assert_eq!(metrics.outbox_retries.get(), 8);
    assert_eq!(outbox_dead_letters(&metrics), Some(3.0));
    let _ = stop.send(true);
    task.await?;
    // The suggestion request it marked failed counts against the AI success KPI, once (the
    // relay has stopped: nothing can still be counting).
    assert_eq!(metrics.ai_jobs.with_label_values(&["failure"]).get(), 1);
    assert_eq!(metrics.ai_jobs.with_label_values(&["success"]).get(), 0);
    Ok(())
}

/// An event whose stored time the relay cannot hold (a hand edit: `infinity`, `-infinity`,
/// a year past chrono's) is moved aside unpublished, with the reason, and counted as a dead
/// letter; a suggestion request it carried ends failed; the other events are published and
/// the relay keeps running. Before, sqlx's time decode panicked on such a row in every batch:
/// the relay's task died, and with it the delivery of every later event.
#[tokio::test]
async fn an_event_with_a_time_the_relay_cannot_hold_is_moved_aside_not_a_panic() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let prefix = format!("test.{}", Uuid::new_v4().simple());
    let (user, list) = common::user_with_list(&db.pool).await?;
    let request = common::pending_request(&db.pool, user, list, Duration::ZERO).await?;
    let mut tx = db.pool.begin().await?;
    let mut events = Vec::new();
    for i in 0..5 {
        events
            .push(outbox::enqueue(&mut tx, "test.event", Uuid::new_v4(), json!({ "i": i })).await?);
    }
    let job = outbox::enqueue(
        &mut tx,
        outbox::SUGGESTION_REQUESTED,
        request,
        json!({ "request_id": request, "list_id": list }),
    )
    .await?;
    tx.commit().await?;
    let bad = [
        (events[0], "infinity"),
        (events[2], "-infinity"),
        (events[3], "270000-01-01 00:00:00+00"),
        (job, "infinity"),
    ];
    for (id, time) in bad {
        sqlx::query("UPDATE outbox_events SET created_at = $2::timestamptz WHERE id = $1")
            .bind(id)
            .bind(time)
            .execute(&db.pool)
            .await?;
    }
    let metrics = Metrics::new("test")?;
    let mut relay = Relay::new(
        PgStore::new(db.pool.clone()),
        services.rabbitmq_url()?.to_owned(),
        Topology::new(&prefix),
        metrics.clone(),
    );
    relay.poll = Duration::from_millis(50);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(relay.run(shutdown));
    eventually(
        "the readable events published, the others moved aside",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox_events WHERE published_at IS NULL \
                 AND next_attempt_at <> 'infinity'",
            )
            .fetch_one(&db.pool)
            .await?;
            Ok((waiting == 0).then_some(()))
        },
    )
    .await?;
    for (id, time) in bad {
        let (published, aside, error): (bool, bool, Option<String>) = sqlx::query_as(
            "SELECT published_at IS NOT NULL, next_attempt_at = 'infinity', last_error \
             FROM outbox_events WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await?;
        assert!(
            !published && aside,
            "the event created at {time} is moved aside"
        );
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM outbox_events WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await?;
        assert_eq!(attempts, 0, "nothing was sent: no attempt is counted");
        assert!(
            error.as_deref().is_some_and(|e| e.contains("created_at")),
            "the reason names the column: {error:?}"
        );
    }
    let published: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE published_at IS NOT NULL AND id = ANY($1)",
    )
    .bind([events[1], events[4]])
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(published, 2, "the readable events are published");
    let status: String = sqlx::query_scalar("SELECT status FROM suggestion_requests WHERE id = $1")
        .bind(request)
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        status, "failed",
        "the suggestion request of the event moved aside"
    );
    assert!(!task.is_finished(), "the relay is still running");
    let _ = stop.send(true);
    task.await?;
    assert_eq!(outbox_dead_letters(&metrics), Some(4.0));
    assert_eq!(metrics.ai_jobs.with_label_values(&["failure"]).get(), 1);
    remove_topology_at(services.rabbitmq_url()?, &prefix).await?;
    Ok(())
}

#[tokio::test]
async fn a_message_that_is_not_an_event_is_dead_lettered_and_counted() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = config_from_env(&services, &db.url, services.rabbitmq_url()?, &[])?;
    let topology = Topology::new(&config.amqp_prefix);
    let app = TestApp::start(config.clone(), true).await?;
    let conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    // The same declarations as the worker's (idempotent), so the queue exists whoever is first.
    amqp::declare(&channel, &topology).await?;
    let garbage = b"\xff not JSON, not an event {{{";
    amqp::publish_to(
        &channel,
        "",
        &topology.ai_queue,
        garbage,
        lapin::BasicProperties::default(),
        Uuid::new_v4(),
    )
    .await?;
    let dead = eventually(
        "the garbage message in the dead-letter queue",
        Duration::from_secs(30),
        || async {
            Ok(channel
                .basic_get(
                    topology.ai_dead_letters.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await?)
        },
    )
    .await?;
    assert_eq!(dead.delivery.data, garbage);
    // Counted once the broker has confirmed the copy, which can reach this test's `basic_get`
    // before the confirm reaches the worker.
    let dead_letters = app
        .running
        .as_ref()
        .expect("the app runs")
        .metrics
        .dead_letters
        .with_label_values(&["ai"]);
    eventually(
        "the dead letter to be counted",
        Duration::from_secs(30),
        || async { Ok((dead_letters.get() > 0).then_some(())) },
    )
    .await?;
    assert_eq!(dead_letters.get(), 1);
    // Not an AI job (no request to fail): the KPI is untouched.
    assert_eq!(ai_outcome(&app, "failure"), 0);
    let left = channel
        .basic_get(
            topology.ai_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await?;
    assert!(left.is_none(), "the message is off the main queue");
    app.stop().await;
    conn.close(200, "bye".into()).await?;
    remove_topology(&config).await?;
    Ok(())
}

#[tokio::test]
async fn relay_and_worker_recover_from_closed_connections_and_channels_with_a_backlog() -> Result<()>
{
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let rabbit = Arc::new(tokio::task::spawn_blocking(PrivateRabbit::start).await??);
    // A slow provider, so that requests pile up in the queue.
    let mut slow = Reply::answer(TWO);
    slow.delay = Duration::from_millis(500);
    let (url, _) = stub_provider(vec![slow]).await?;
    let config = config_from_env(
        &services,
        &db.url,
        &rabbit.url,
        &[
            ("PPLX_API_KEY", "pplx-test-key".to_owned()),
            ("PPLX_BASE_URL", url),
        ],
    )?;
    let topology = Topology::new(&config.amqp_prefix);
    let app = TestApp::start(config.clone(), true).await?;
    // One list per request: their items differ, so no answer comes from the cache.
    let (token, _) = list_with_an_item(&app).await?;
    let mut lists = Vec::new();
    for _ in 0..16 {
        let list = app.create_list(&token, "Cena").await?;
        let (status, body) = app
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/items"),
                Some(&token),
                Some(json!({ "name": format!("pasta {}", Uuid::new_v4().simple()) })),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "add item: {status} {body}");
        lists.push(list);
    }
    let mut lists = lists.into_iter();
    let pending = |n: i64| {
        let pool = db.pool.clone();
        async move {
            let p: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM suggestion_requests WHERE status = 'pending'",
            )
            .fetch_one(&pool)
            .await?;
            anyhow::Ok(p >= n)
        }
    };
    let mut locations = Vec::new();
    for _ in 0..8 {
        locations.push(request(&app, &token, &lists.next().context("a list")?).await?);
    }
    // 1. The broker closes every connection while a backlog waits.
    eventually(
        "a first request to be done",
        Duration::from_secs(60),
        || async { Ok((ai_outcome(&app, "success") >= 1).then_some(())) },
    )
    .await?;
    anyhow::ensure!(pending(3).await?, "no backlog left to test with");
    tokio::task::spawn_blocking({
        let rabbit = rabbit.clone();
        move || rabbit.rabbitmqctl(&["close_all_connections", "test: connection loss"])
    })
    .await??;
    for _ in 0..4 {
        locations.push(request(&app, &token, &lists.next().context("a list")?).await?);
    }
    for location in &locations {
        let body = finished(&app, &token, location, Duration::from_secs(120)).await?;
        assert_eq!(body["status"], "done", "{body}");
    }
    // 2. The broker closes the relay's channel: its exchange is gone, so its next publish is
    //    refused (404) and the channel closed; the worker's queue is gone too, which cancels
    //    its consumer.
    let conn = amqp::connect(&rabbit.url, Duration::from_secs(10)).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_delete(topology.exchange.as_str().into(), Default::default())
        .await?;
    channel
        .queue_delete(
            topology.ai_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await?;
    conn.close(200, "bye".into()).await?;
    for _ in 0..4 {
        locations.push(request(&app, &token, &lists.next().context("a list")?).await?);
    }

    // Every request is answered, each exactly once.
    for location in &locations {
        let body = finished(&app, &token, location, Duration::from_secs(120)).await?;
        assert_eq!(body["status"], "done", "{body}");
    }
    let done = i64::try_from(locations.len())?;
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'ai-worker'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(processed, done);
    assert_ai_outcomes(&app, u64::try_from(done)?, 0).await?;
    let retries = app.running.as_ref().unwrap().metrics.outbox_retries.get();
    assert!(retries < 5, "{retries} outbox retries for two blips");
    // Replaced connections were closed, not left open: the relay's and the worker's only.
    let open = eventually(
        "the broker to show only the relay's and the worker's connections",
        Duration::from_secs(30),
        || {
            let rabbit = rabbit.clone();
            async move {
                let out = tokio::task::spawn_blocking(move || {
                    rabbit.rabbitmqctl(&["-q", "--no-table-headers", "list_connections", "name"])
                })
                .await??;
                let open = out.lines().filter(|l| !l.trim().is_empty()).count();
                Ok((open == 2).then_some(open))
            }
        },
    )
    .await?;
    assert_eq!(open, 2);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_queue_a_previous_release_declared_is_used_as_it_is() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = config_from_env(&services, &db.url, services.rabbitmq_url()?, &[])?;
    let topology = Topology::new(&config.amqp_prefix);
    // The previous release's topology: the exchange, and the AI queue classic, durable and
    // without arguments, bound to suggestion requests.
    let conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            topology.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(
            topology.ai_queue.as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            topology.ai_queue.as_str().into(),
            topology.exchange.as_str().into(),
            outbox::SUGGESTION_REQUESTED.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await?;
    // What this release avoids: the broker refuses that queue with other arguments (here a
    // quorum queue, for x-delivery-count), closing the channel.
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let refused = channel
        .queue_declare(topology.ai_queue.as_str().into(), durable, quorum)
        .await
        .expect_err("a queue re-declared with other arguments is refused");
    assert!(
        refused.to_string().contains("PRECONDITION_FAILED"),
        "{refused}"
    );
    conn.close(200, "bye".into()).await?;

    // This release declares over it (adding only the dead-letter queue) and answers.
    let app = TestApp::start(config.clone(), true).await?;
    let done = suggested(&app).await?;
    assert_eq!(done["status"], "done", "{done}");
    app.stop().await;
    remove_topology(&config).await?;
    Ok(())
}

/// Redis is only the suggestions' cache: with it unreachable the whole time, a suggestion
/// request still goes through the outbox, the broker and the worker to `done`, the provider
/// is asked, and the job counts as a success.
#[tokio::test]
async fn suggestions_complete_with_redis_unreachable() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let (url, calls) = stub_provider(vec![Reply::answer(TWO)]).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = config_from_env(
        &services,
        &db.url,
        services.rabbitmq_url()?,
        &[
            ("PPLX_API_KEY", "pplx-test-key".to_owned()),
            ("PPLX_BASE_URL", url),
            ("REDIS_URL", format!("redis://127.0.0.1:{closed}/0")),
        ],
    )?;
    let app = TestApp::start(config.clone(), true).await?;
    let done = suggested(&app).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert!(
        !done["suggestions"].as_array().unwrap().is_empty(),
        "{done}"
    );
    assert_eq!(*calls.lock().unwrap(), 1, "the provider answered once");
    stop_and_assert_ai_outcomes(app, 1, 0).await?;
    remove_topology(&config).await?;
    Ok(())
}
