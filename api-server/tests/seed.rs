//! `seed`: the demo user and list are created once, through the use cases, and usable.

mod common;

use anyhow::{Context, Result};
use common::{TestApp, TestDb};
use listacompra_api::seed;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn seeding_creates_a_usable_demo_account_once() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    assert!(seed::seed(&db.pool, "demo-password").await?);
    assert!(!seed::seed(&db.pool, "demo-password").await?, "idempotent");
    let short = seed::seed(&TestDb::migrated(&services).await?.pool, "short")
        .await
        .unwrap_err()
        .to_string();
    assert!(short.contains("password"), "{short}");

    let app = TestApp::start(common::config(&services, &db)?, false).await?;
    let (s, session) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": seed::DEMO_EMAIL, "password": "demo-password" })),
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{session}");
    let token = session["token"].as_str().context("token")?;
    let (s, page) = app
        .call(Method::GET, "/v1/lists", Some(token), None)
        .await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["total"], 1, "{page}");
    let id = page["lists"][0]["id"].as_str().context("list id")?;
    let (_, list) = app
        .call(Method::GET, &format!("/v1/lists/{id}"), Some(token), None)
        .await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4), "{list}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_events")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(events, 6, "user, list and four items, each with its event");
    app.stop().await;
    Ok(())
}
