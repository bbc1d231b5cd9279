//! The AI worker as its own process (`listacompra-api worker`, the `<release>-worker` pods):
//! it answers the pod's probes and Prometheus' scrape, does the AI jobs the API pods queue
//! (the API runs with RUN_WORKER=false, as the operator runs it), reports how far behind it
//! is, and stops cleanly on SIGTERM. Against the shared PostgreSQL, Redis and RabbitMQ.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{TestApp, TestDb, eventually};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use listacompra_api::ai::backlog;
use listacompra_api::amqp::{self, Topology};
use listacompra_crds::metrics as names;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `listacompra-api worker` on `port` with the services of `config` and `more` variables
/// (killed when dropped).
fn spawn_worker(
    config: &listacompra_api::config::Config,
    port: u16,
    more: &[(&str, &str)],
) -> Result<tokio::process::Child> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_listacompra-api"))
            .arg("worker")
            .env_clear()
            .env("DATABASE_URL", &config.database_url)
            .env("REDIS_URL", &config.redis_url)
            .env("RABBITMQ_URL", &config.rabbitmq_url)
            .env("JWT_SECRET", &config.jwt_secret)
            .env("AMQP_PREFIX", &config.amqp_prefix)
            .env("PORT", port.to_string())
            .envs(more.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    )
}

/// The value of the sample of `name` in a `/metrics` text, if exported.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn the_broker_counts_the_messages_waiting_in_the_ai_queue() -> Result<()> {
    let services = common::services().await?;
    let topology = Topology::new(&format!("test.{}", uuid::Uuid::new_v4().simple()));
    let conn = amqp::connect(services.rabbitmq_url()?, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    amqp::declare(&channel, &topology).await?;
    assert_eq!(
        backlog::queue_messages(&channel, &topology.ai_queue).await?,
        0
    );
    for n in 0..3 {
        channel
            .basic_publish(
                "".into(),
                topology.ai_queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("message {n}").as_bytes(),
                BasicProperties::default(),
            )
            .await?
            .await?;
    }
    let waiting = eventually("3 messages counted", Duration::from_secs(10), || async {
        let n = backlog::queue_messages(&channel, &topology.ai_queue).await?;
        Ok((n == 3).then_some(n))
    })
    .await?;
    assert_eq!(waiting, 3);
    // A passive declare never creates a queue: a missing one is an error, not 0.
    let missing =
        backlog::queue_messages(&channel, &format!("{}.missing", topology.ai_queue)).await;
    assert!(missing.is_err(), "{missing:?}");
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

#[tokio::test]
async fn the_worker_process_serves_probes_does_the_jobs_and_reports_its_backlog() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = common::config(&services, &db)?;
    // The API pods, as the operator runs them: no relay, no worker.
    let app = TestApp::start(config.clone(), false).await?;
    let (user, _, token) = app.user().await?;
    let list = app.create_list(&token, "pasta night").await?;

    // A request that will never be served (no event in the outbox), 120 s old: the oldest
    // pending one.
    let stuck = common::pending_request(
        &db.pool,
        uuid::Uuid::parse_str(&user)?,
        uuid::Uuid::parse_str(&list)?,
        Duration::from_secs(120),
    )
    .await?;
    ensure!(backlog::oldest_pending_seconds(&db.pool).await? >= 120);

    // A real request, queued by the API: only the worker process can serve it.
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/suggestions"),
            Some(&token),
            None,
        )
        .await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {body}");
    let location = format!(
        "/v1/lists/{list}/suggestions/{}",
        body["id"].as_str().context("id")?
    );

    let port = e2e::runner::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut worker = spawn_worker(
        &config,
        port,
        &[
            ("HEALTHCHECK_TOKEN", "health-token"),
            ("APP_VERSION", "9.9.9-worker"),
        ],
    )?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let get = |path: &str| http.get(format!("{base}{path}"));

    eventually("the worker's /ready", Duration::from_secs(30), || async {
        Ok(
            matches!(get("/ready").send().await, Ok(r) if r.status() == StatusCode::OK)
                .then_some(()),
        )
    })
    .await?;
    let health: Value = get("/health").send().await?.json().await?;
    assert_eq!(health["version"], "9.9.9-worker", "{health}");
    let detail = get("/ready")
        .header("x-healthcheck-token", "health-token")
        .send()
        .await?;
    assert_eq!(detail.status(), StatusCode::OK);
    let detail: Value = detail.json().await?;
    assert_eq!(detail["checks"]["postgres"]["ok"], true, "{detail}");
    let wrong = get("/ready")
        .header("x-healthcheck-token", "nope")
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Not the API: its routes are a JSON 404, other methods a JSON 405.
    let api = get("/v1/lists").send().await?;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    let api: Value = api.json().await?;
    assert_eq!(api["error"], "route_not_found", "{api}");
    let post = http.post(format!("{base}/health")).send().await?;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        post.headers().get("allow").map(|v| v.as_bytes()),
        Some(&b"GET"[..])
    );

    // The API's request is served by the worker process.
    let done = eventually("the suggestion job", Duration::from_secs(60), || async {
        let (s, b) = app.call(Method::GET, &location, Some(&token), None).await?;
        ensure!(s == StatusCode::OK, "{s} {b}");
        Ok((b["status"] != "pending").then_some(b))
    })
    .await?;
    assert_eq!(done["status"], "done", "{done}");

    // Its metrics: the job counted, and the backlog sampled (the queue drained; the stuck
    // request still the oldest pending one).
    let text = eventually("the backlog gauges", Duration::from_secs(30), || async {
        let text = get("/metrics").send().await?.text().await?;
        let ready = sample(&text, names::AI_OLDEST_PENDING_SECONDS).is_some_and(|s| s >= 120.0)
            && sample(&text, names::AI_JOBS_TOTAL).is_some();
        Ok(ready.then_some(text))
    })
    .await?;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("9.9.9-worker"))
            .map(str::to_owned)
    };
    assert!(
        line(&format!("{}{{outcome=\"success\"", names::AI_JOBS_TOTAL))
            .is_some_and(|l| l.ends_with(" 1")),
        "{text}"
    );
    assert_eq!(sample(&text, names::AI_QUEUE_MESSAGES), Some(0.0), "{text}");

    // Once the stuck request is served elsewhere, nothing is pending: the gauge says 0.
    sqlx::query(
        "UPDATE suggestion_requests SET status = 'failed', completed_at = now() WHERE id = $1",
    )
    .bind(stuck)
    .execute(&db.pool)
    .await?;
    eventually(
        "the oldest pending age back to 0",
        Duration::from_secs(30),
        || async {
            let text = get("/metrics").send().await?.text().await?;
            Ok((sample(&text, names::AI_OLDEST_PENDING_SECONDS) == Some(0.0)).then_some(()))
        },
    )
    .await?;

    // SIGTERM: it stops consuming, stops serving and exits 0.
    let pid = worker.id().context("worker pid")?;
    nix_kill(pid)?;
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .context("the worker did not exit within 20 s of SIGTERM")??;
    ensure!(status.success(), "the worker exited with {status}");
    app.stop().await;
    Ok(())
}

/// The AI queue's depth is sampled beside the jobs, not between them: while the provider
/// hangs on the first job, the messages beyond the prefetched ones are reported waiting.
#[tokio::test]
async fn the_worker_reports_the_messages_waiting_while_a_job_takes_long() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = common::config(&services, &db)?;
    // A "provider" that accepts connections and never answers.
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_url = format!("http://{}", provider.local_addr()?);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = provider.accept().await {
            held.push(socket);
        }
    });

    let (user, list) = common::user_with_list(&db.pool).await?;
    let topology = Topology::new(&config.amqp_prefix);
    let conn = amqp::connect(&config.rabbitmq_url, Duration::from_secs(5)).await?;
    let channel = conn.create_channel().await?;
    amqp::declare(&channel, &topology).await?;
    const JOBS: u32 = 12;
    for _ in 0..JOBS {
        let request = common::pending_request(&db.pool, user, list, Duration::ZERO).await?;
        let event = listacompra_api::domain::Event {
            id: uuid::Uuid::new_v4(),
            event_type: listacompra_api::outbox::SUGGESTION_REQUESTED.to_owned(),
            aggregate_id: list,
            payload: serde_json::json!({ "request_id": request, "list_id": list }),
            created_at: chrono::Utc::now(),
        };
        channel
            .basic_publish(
                "".into(),
                topology.ai_queue.as_str().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&event)?,
                BasicProperties::default(),
            )
            .await?
            .await?;
    }

    let port = e2e::runner::free_port()?;
    let _worker = spawn_worker(
        &config,
        port,
        &[
            ("PPLX_API_KEY", "pplx-test-key"),
            ("PPLX_BASE_URL", &provider_url),
            ("PPLX_TIMEOUT_MS", "120000"),
            ("AI_PROVIDER_RETRIES", "0"),
            ("APP_VERSION", "9.9.9-slow"),
        ],
    )?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // One job hangs in the provider and the prefetch (8) holds seven more: four wait.
    let waiting = eventually(
        "the worker to report 4 waiting messages",
        Duration::from_secs(60),
        || async {
            let Ok(res) = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            else {
                return Ok(None);
            };
            let text = res.text().await?;
            Ok(sample(&text, names::AI_QUEUE_MESSAGES).filter(|n| *n == f64::from(JOBS - 8)))
        },
    )
    .await?;
    assert_eq!(waiting, 4.0);
    assert_eq!(
        backlog::queue_messages(&channel, &topology.ai_queue).await?,
        JOBS - 8
    );
    hold.abort();
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

fn nix_kill(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM {pid}: {status}");
    Ok(())
}
