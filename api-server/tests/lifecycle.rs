//! Graceful shutdown drains in-flight requests; request ids are echoed (and logged).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::fault::FaultConfig;
use reqwest::StatusCode;

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_refuses_new_ones() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    // Slow down one route so that a request is surely in flight when shutdown starts.
    config.fault = FaultConfig {
        latency: Duration::from_millis(700),
        error_rate: 0.0,
        routes: vec!["/v1/auth/register".to_owned()],
    };
    let app = TestApp::start(config, false).await?;
    let url = format!("{}/v1/auth/register", app.base);
    let http = app.http.clone();
    let in_flight = tokio::spawn(async move {
        http.post(url)
            .json(&serde_json::json!({ "email": "slow@example.com", "password": "correct horse" }))
            .send()
            .await
    });
    // Shut down only once the server is handling the request (a fixed sleep would race on
    // a busy machine: the request might not have arrived yet).
    let handling = app
        .running
        .as_ref()
        .map(|r| r.metrics.http_in_flight.clone())
        .expect("the app runs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handling.get() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request did not reach the server within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let base = app.base.clone();
    let stopped = tokio::spawn(app.stop());
    let res = in_flight.await??;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "the in-flight request completes"
    );
    tokio::time::timeout(Duration::from_secs(10), stopped).await??;
    let after = reqwest::Client::new()
        .get(format!("{base}/health"))
        .send()
        .await;
    assert!(
        after.is_err(),
        "the listener is closed after shutdown: {after:?}"
    );
    Ok(())
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(common::config(&services, &db)?, false).await?;
    let res = app
        .http
        .get(format!("{}/health", app.base))
        .header("X-Request-Id", "req-123")
        .send()
        .await?;
    assert_eq!(res.headers()["x-request-id"], "req-123");
    let res = app.http.get(format!("{}/nope", app.base)).send().await?;
    let generated = res.headers()["x-request-id"].to_str()?;
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    Ok(())
}
