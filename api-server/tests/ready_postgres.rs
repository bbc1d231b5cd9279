//! `/ready` turns 503 when PostgreSQL stops and recovers when it returns (a private
//! PostgreSQL, so the shared one keeps serving the other tests).

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use common::{TestApp, eventually};
use e2e::env::Component;
use e2e::private::PrivateService;
use e2e::services::Services;
use reqwest::StatusCode;
use serde_json::Value;

async fn ready(app: &TestApp) -> Result<(StatusCode, Value)> {
    let res = app
        .http
        .get(format!("{}/ready", app.base))
        .header("X-Healthcheck-Token", "health-token")
        .send()
        .await?;
    Ok((res.status(), res.json().await?))
}

#[tokio::test]
async fn ready_turns_503_when_postgres_stops_and_recovers_when_it_returns() -> Result<()> {
    let services = Services::start(&[Component::Redis, Component::RabbitMq]).await?;
    let pg = Arc::new(tokio::task::spawn_blocking(PrivateService::postgres).await??);
    let pool = listacompra_api::store::pool(&pg.url, 2, None)?;
    listacompra_api::migrate::migrate_to(&pool, None).await?;
    pool.close().await;

    let mut config = common::config_with(&services, &pg.url)?;
    config.database_max_connections = 4;
    let app = TestApp::start(config, false).await?;
    let (s, b) = ready(&app).await?;
    assert_eq!(s, StatusCode::OK, "{b}");

    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.down()
    })
    .await??;
    // Probes are cached for a second: the next fresh one sees PostgreSQL gone.
    let b = eventually("/ready to turn 503", Duration::from_secs(30), || async {
        let (s, b) = ready(&app).await?;
        Ok((s == StatusCode::SERVICE_UNAVAILABLE).then_some(b))
    })
    .await?;
    assert_eq!(b["status"], "not_ready", "{b}");
    assert_eq!(b["checks"]["postgres"]["ok"], false, "{b}");
    assert_eq!(b["checks"]["redis"]["ok"], true, "{b}");
    // Liveness stays up: restarting the pod would not help.
    let health = app.http.get(format!("{}/health", app.base)).send().await?;
    assert_eq!(health.status(), StatusCode::OK);

    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.up()
    })
    .await??;
    eventually("/ready to recover", Duration::from_secs(30), || async {
        let (s, _) = ready(&app).await?;
        Ok((s == StatusCode::OK).then_some(()))
    })
    .await?;
    app.stop().await;
    Ok(())
}
