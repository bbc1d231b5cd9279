//! TLS to managed Redis and RabbitMQ: the server started with `rediss://` and `amqps://` URLs
//! and the test CA (`REDIS_CA_FILE`, `RABBITMQ_CA_FILE`) is ready, computes a suggestion
//! through the broker (outbox relay publishes, AI worker consumes, both over TLS) and caches
//! it in Redis over TLS; with a CA that did not sign the servers' certificates, the server
//! still starts and serves (both are optional) and `/ready` names the variable to fix. The
//! services listen with TLS on extra loopback ports (`e2e/scripts/services.sh`).

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestApp, TestDb, eventually};
use e2e::services::Services;
use listacompra_api::ai;
use listacompra_api::config::{CaFile, Config};
use listacompra_api::domain::ItemSummary;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// A configuration that reaches Redis and RabbitMQ over TLS, trusting the CA in `ca_file`.
fn tls_config(services: &Services, db: &TestDb, ca_file: &str) -> Result<Config> {
    let mut config = common::config(services, db)?;
    config.redis_url = services.redis_tls_url()?.to_owned();
    config.rabbitmq_url = services.rabbitmq_tls_url()?.to_owned();
    config.redis_ca = Some(CaFile::read("REDIS_CA_FILE", ca_file)?);
    config.rabbitmq_ca = Some(CaFile::read("RABBITMQ_CA_FILE", ca_file)?);
    Ok(config)
}

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
async fn the_server_uses_redis_and_rabbitmq_over_tls_with_a_private_ca() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = tls_config(&services, &db, services.tls_ca_file()?)?;
    let app = TestApp::start(config.clone(), true).await?;

    let b = eventually(
        "/ready to reach everything over TLS",
        Duration::from_secs(30),
        || async {
            let (s, b) = ready(&app).await?;
            Ok((s == StatusCode::OK && b["degraded"] == json!([])).then_some(b))
        },
    )
    .await?;
    assert_eq!(b["checks"]["redis"]["ok"], true, "{b}");
    assert_eq!(b["checks"]["rabbitmq"]["ok"], true, "{b}");

    // A suggestion goes outbox -> relay -> RabbitMQ (TLS) -> AI worker (TLS) -> Redis (TLS).
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "TLS").await?;
    let item = format!("pasta-{}", Uuid::new_v4().simple());
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/items"),
            Some(&token),
            Some(json!({ "name": item, "category": "pantry" })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/suggestions"),
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let location = format!(
        "/v1/lists/{list}/suggestions/{}",
        b["id"].as_str().context("request id")?
    );
    let done = eventually("the suggestion job", Duration::from_secs(60), || async {
        let (s, b) = app.call(Method::GET, &location, Some(&token), None).await?;
        anyhow::ensure!(s == StatusCode::OK, "{s} {b}");
        Ok((b["status"] != "pending").then_some(b))
    })
    .await?;
    assert_eq!(done["status"], "done", "{done}");
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE published_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await?;
    assert!(published >= 1, "the relay published over TLS");

    // The worker cached the answer through the TLS connection; read it back over TLS too.
    let key = ai::cache_key(
        "offline",
        &[ItemSummary {
            name: item,
            category: Some("pantry".to_owned()),
        }],
    );
    let redis = listacompra_api::cache::redis_manager(&config.redis_url, config.redis_ca.as_ref())?;
    let mut conn = redis.clone();
    let cached: Option<String> = conn.get(&key).await?;
    let cached: Value = serde_json::from_str(&cached.context("nothing cached")?)?;
    assert_eq!(cached, done["suggestions"], "cached under {key}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_servers_is_reported_naming_the_variable() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let config = tls_config(&services, &db, services.tls_other_ca_file()?)?;
    // Starts (no panic): Redis and RabbitMQ are optional, requests go on without them.
    let app = TestApp::start(config, true).await?;
    app.until_ready().await?;
    let (s, b) = ready(&app).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["degraded"], json!(["redis", "rabbitmq"]), "{b}");
    let redis = b["checks"]["redis"]["error"].as_str().unwrap_or_default();
    assert!(redis.contains("REDIS_CA_FILE"), "{b}");
    let rabbitmq = b["checks"]["rabbitmq"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(rabbitmq.contains("RABBITMQ_CA_FILE"), "{b}");
    let (_, _, token) = app.user().await?;
    app.create_list(&token, "still serving").await?;
    app.stop().await;
    Ok(())
}
