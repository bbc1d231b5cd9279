//! /health, /ready (with and without the token, and with a dependency down), /metrics and
//! fault injection, against the real services.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::fault::FaultConfig;
use listacompra_crds::metrics as names;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn ready(app: &TestApp, token: Option<&str>) -> Result<(StatusCode, Value)> {
    let mut req = app.http.get(format!("{}/ready", app.base));
    if let Some(t) = token {
        req = req.header("X-Healthcheck-Token", t);
    }
    let res = req.send().await?;
    Ok((res.status(), res.json().await?))
}

#[tokio::test]
async fn health_is_cheap_and_ready_checks_every_dependency() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(common::config(&services, &db)?, false).await?;
    let (s, b) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({ "status": "ok", "version": "9.9.9-test" }));

    app.until_ready().await?;
    let (s, b) = ready(&app, None).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({ "status": "ready" }),
        "no detail without the token"
    );
    let (s, b) = ready(&app, Some("health-token")).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    for dep in ["postgres", "redis", "rabbitmq"] {
        assert_eq!(b["checks"][dep]["ok"], true, "{b}");
    }
    let (s, b) = ready(&app, Some("health-tokeN")).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b.get("checks").is_none());
    Ok(())
}

#[tokio::test]
async fn ready_stays_200_when_redis_or_rabbitmq_is_unreachable_and_shows_them_degraded()
-> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    // Nothing listens on these ports: a closed port is an unreachable server. Requests need
    // neither (the cache is optional, the outbox rides out broker outages), so the server
    // stays ready and reports them degraded.
    let closed = |port: u16| format!("127.0.0.1:{port}");
    let free = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    config.redis_url = format!("redis://{}/0", closed(free));
    config.rabbitmq_url = format!("amqp://guest:guest@{}/%2f", closed(free));
    let app = TestApp::start(config, false).await?;
    // Ready within a kubelet's patience, without Redis and RabbitMQ: while the first probes
    // fill the database pool (slow on a busy machine) only PostgreSQL may hold it back.
    common::eventually("/ready to answer 200", Duration::from_secs(60), || async {
        let (s, b) = ready(&app, Some("health-token")).await?;
        if s == StatusCode::OK {
            return Ok(Some(()));
        }
        assert_eq!(
            b["checks"]["postgres"]["ok"], false,
            "only PostgreSQL may keep the server unready: {b}"
        );
        Ok(None)
    })
    .await?;
    // Liveness does not depend on anything.
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = ready(&app, None).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({ "status": "ready" }));
    let (s, b) = ready(&app, Some("health-token")).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "ready", "{b}");
    assert_eq!(b["degraded"], json!(["redis", "rabbitmq"]), "{b}");
    assert_eq!(b["checks"]["postgres"]["ok"], true, "{b}");
    assert_eq!(b["checks"]["redis"]["ok"], false, "{b}");
    assert_eq!(b["checks"]["rabbitmq"]["ok"], false, "{b}");
    assert!(
        b["checks"]["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    // And in the metrics, for alerts.
    let text = app.metrics().await?;
    for (dep, up) in [("postgres", 1.0), ("redis", 0.0), ("rabbitmq", 0.0)] {
        assert_eq!(
            sample(
                &text,
                "listacompra_dependency_up",
                &[&format!(r#"dependency="{dep}""#)]
            ),
            Some(up),
            "{text}"
        );
    }
    Ok(())
}

fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_use_the_shared_names_route_templates_and_the_version_label() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(common::config(&services, &db)?, false).await?;
    let (_, _, token) = app.user().await?;
    let list_id = app.create_list(&token, "M").await?;
    let path = format!("/v1/lists/{list_id}");
    for _ in 0..3 {
        app.call(Method::GET, &path, Some(&token), None).await?;
    }
    app.call(Method::GET, "/v1/lists/not-a-uuid", Some(&token), None)
        .await?;
    let res = app.http.get(format!("{}/metrics", app.base)).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()?
            .starts_with("text/plain")
    );
    let text = res.text().await?;
    let count = format!("{}_count", names::HTTP_REQUEST_DURATION_SECONDS);
    let get_list = [
        r#"route="/v1/lists/{list_id}""#,
        r#"method="GET""#,
        r#"version="9.9.9-test""#,
    ];
    assert_eq!(
        sample(
            &text,
            &count,
            &[&get_list[..], &[r#"status="200""#]].concat()
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &count,
            &[&get_list[..], &[r#"status="400""#]].concat()
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(&path), "raw paths must not become labels");
    for name in [
        names::AI_JOBS_TOTAL,
        names::OUTBOX_RETRIES_TOTAL,
        names::OUTBOX_BACKLOG,
        names::OUTBOX_QUEUE_LATENCY_SECONDS,
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains(r#"version="9.9.9-test""#)),
            "{name} in {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn fault_injection_adds_latency_and_errors_on_chosen_routes_only() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    config.fault = FaultConfig {
        latency: Duration::from_millis(150),
        error_rate: 1.0,
        routes: vec!["/v1/lists".to_owned()],
    };
    let app = TestApp::start(config, false).await?;
    let (_, _, token) = app.user().await?; // /v1/auth is not affected
    let start = std::time::Instant::now();
    let (s, b) = app
        .call(Method::GET, "/v1/lists", Some(&token), None)
        .await?;
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b["error"], "fault_injected");
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    let text = app.metrics().await?;
    assert!(text.contains(r#"route="/v1/lists",status="500""#), "{text}");
    Ok(())
}

/// `/ready` asks the dependencies once per `READY_CACHE_MS`, however many callers: a burst
/// of probes (kubelets, load balancers, a hostile client) costs one round of checks.
#[tokio::test]
async fn concurrent_ready_calls_within_the_cache_time_share_one_probe() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let probes_after_50 = |ttl: Duration| {
        let (services, db) = (&services, &db);
        async move {
            let mut config = common::config(services, db)?;
            config.ready_cache_ttl = ttl;
            let app = TestApp::start(config, false).await?;
            let calls = (0..50).map(|_| ready(&app, None));
            let answers = futures::future::join_all(calls).await;
            // The count does not depend on what the probes found: on a busy machine the
            // first probe may still be filling the pool when its check's time runs out.
            // Callers that share a probe share its answer.
            let statuses: Vec<StatusCode> = answers
                .into_iter()
                .map(|a| a.map(|(s, _)| s))
                .collect::<Result<_>>()?;
            if ttl > Duration::ZERO {
                assert!(statuses.iter().all(|s| *s == statuses[0]), "{statuses:?}");
            }
            let text = app.metrics().await?;
            anyhow::Ok(
                sample(&text, listacompra_api::metrics::READY_PROBES_TOTAL, &[]).unwrap_or(-1.0),
            )
        }
    };
    assert_eq!(probes_after_50(Duration::from_secs(600)).await?, 1.0);
    // Without the cache every call probes: the counter counts what it says.
    assert_eq!(probes_after_50(Duration::ZERO).await?, 50.0);
    Ok(())
}

/// A statement PostgreSQL ends for its `statement_timeout` (as the server's sessions set it
/// from `HTTP_REQUEST_TIMEOUT_SECONDS`), like a deadlock or an unreachable database, is a
/// passing refusal: HTTP answers it 503, never 500.
#[tokio::test]
async fn a_statement_ended_by_its_timeout_is_answered_503_not_500() -> Result<()> {
    use listacompra_api::error::AppError;
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let pool = listacompra_api::store::pool(&db.url, 1, Some(Duration::from_millis(100)))?;
    let source = sqlx::query("SELECT pg_sleep(5)")
        .execute(&pool)
        .await
        .expect_err("pg_sleep(5) outlives a 100 ms statement_timeout");
    let err = listacompra_api::Error::Database {
        context: "sleeping",
        source,
    };
    assert!(err.is_database_transient(), "{err:?}");
    assert!(
        matches!(AppError::from(err), AppError::Unavailable(_)),
        "a statement timeout must be a 503"
    );
    // A real fault stays one: a syntax error is no passing refusal.
    let source = sqlx::query("SELEC 1")
        .execute(&pool)
        .await
        .expect_err("bad SQL");
    let err = listacompra_api::Error::Database {
        context: "typing",
        source,
    };
    assert!(!err.is_database_transient());
    Ok(())
}
