//! `/ready` means "can serve": a database whose schema is older than the oldest revision this
//! build works with ([`migrate::MIN_SCHEMA`]) makes the server unready, naming the revision
//! found and the range required; migrating makes it ready again. Newer revisions (a rollback
//! of the code after an expand migration) are served.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb, eventually};
use listacompra_api::migrate;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ready(app: &TestApp) -> Result<(StatusCode, Value)> {
    let res = app
        .http
        .get(format!("{}/ready", app.base))
        .header("X-Healthcheck-Token", "health-token")
        .send()
        .await?;
    Ok((res.status(), res.json().await?))
}

/// The value of the `listacompra_schema_revision` gauge.
async fn revision_gauge(app: &TestApp) -> Result<Option<f64>> {
    let text = app.metrics().await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("listacompra_schema_revision") && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok()))
}

/// Waits until a fresh probe (the cache is short here) sees the database at `revision`.
async fn ready_at(app: &TestApp, revision: i64) -> Result<(StatusCode, Value)> {
    eventually(
        &format!("/ready to see schema revision {revision}"),
        Duration::from_secs(30),
        || async {
            let (s, b) = ready(app).await?;
            Ok((b["checks"]["schema"]["revision"] == revision).then_some((s, b)))
        },
    )
    .await
}

#[tokio::test]
async fn ready_is_503_below_the_minimum_schema_and_200_once_migrated() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    let mut config = common::config(&services, &db)?;
    config.ready_cache_ttl = Duration::from_millis(50);
    let app = TestApp::start(config, false).await?;
    let head = migrate::head();

    // Not migrated at all: revision 0.
    let (s, b) = ready(&app).await?;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["status"], "not_ready", "{b}");
    assert_eq!(b["checks"]["postgres"]["ok"], true, "{b}");
    let schema = &b["checks"]["schema"];
    assert_eq!(schema["ok"], false, "{b}");
    assert_eq!(schema["revision"], 0, "{b}");
    assert_eq!(schema["min"], migrate::MIN_SCHEMA, "{b}");
    assert_eq!(schema["head"], head, "{b}");
    let error = schema["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("revision 0") && error.contains(&migrate::MIN_SCHEMA.to_string()),
        "{b}"
    );
    // Without the token: the summary only.
    let res = app.http.get(format!("{}/ready", app.base)).send().await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json::<Value>().await?, json!({ "status": "not_ready" }));
    assert_eq!(revision_gauge(&app).await?, Some(0.0));

    // One revision below the minimum: still not ready, naming that revision.
    let below = migrate::MIN_SCHEMA - 1;
    migrate::reset_to(&db.pool, Some(below)).await?;
    let (s, b) = ready_at(&app, below).await?;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["checks"]["schema"]["ok"], false, "{b}");
    assert!(
        b["checks"]["schema"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("revision {below}"))),
        "{b}"
    );

    // The minimum itself is enough.
    migrate::reset_to(&db.pool, Some(migrate::MIN_SCHEMA)).await?;
    let (s, b) = ready_at(&app, migrate::MIN_SCHEMA).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["checks"]["schema"]["ok"], true, "{b}");

    // Head, and a revision newer than this build knows (expand/contract rollback), too.
    migrate::reset_to(&db.pool, None).await?;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer release', true, '\\x00'::bytea, 1)",
    )
    .bind(head + 1)
    .execute(&db.pool)
    .await?;
    let (s, b) = ready_at(&app, head + 1).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["checks"]["schema"]["ok"], true, "{b}");
    assert_eq!(revision_gauge(&app).await?, Some((head + 1) as f64));
    app.stop().await;
    Ok(())
}
