//! `listacompra-api smoke` against a real server on the shared services: it passes on a
//! healthy API and leaves no list behind; it fails closed, naming the step, when the API
//! answers an error, does not answer, or never finishes the AI suggestions.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::Error;
use listacompra_api::fault::FaultConfig;
use listacompra_api::smoke::{self, SmokeConfig};

fn smoke_config(base_url: &str) -> SmokeConfig {
    SmokeConfig {
        base_url: base_url.to_owned(),
        request_timeout: Duration::from_secs(10),
        suggestion_timeout: Duration::from_secs(30),
        // Generous: the first probes fill the database pool, slow on a busy machine.
        ready_timeout: Duration::from_secs(30),
    }
}

/// A loopback port that drops every connection until `closed_for` has passed, then forwards
/// them to `to`: an API whose network comes back, as after a rollback or a dependency's
/// recovery.
async fn comes_back_after(to: std::net::SocketAddr, closed_for: Duration) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let open_at = tokio::time::Instant::now() + closed_for;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if tokio::time::Instant::now() < open_at {
                continue; // dropped: the client sees the connection closed
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Ok(format!("http://{address}"))
}

#[tokio::test]
async fn health_and_readiness_are_awaited_within_their_bound() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(common::config(&services, &db)?, true).await?;
    let app_address = app.base.trim_start_matches("http://").parse()?;
    let base = comes_back_after(app_address, Duration::from_secs(2)).await?;
    let steps = smoke::run(&smoke_config(&base), |_| {}).await?;
    assert_eq!(steps.len(), 10, "every step passed once the API answered");

    let never = comes_back_after(app_address, Duration::from_secs(3_600)).await?;
    let mut config = smoke_config(&never);
    config.ready_timeout = Duration::from_secs(2);
    let err = smoke::run(&config, |_| {})
        .await
        .expect_err("an API that never answers within the bound fails");
    let (step, message) = failed_step(&err);
    assert_eq!(step, "health", "{err}");
    assert!(
        message.contains("not answered within 2s"),
        "the bound and the last answer are named: {err}"
    );
    app.stop().await;
    Ok(())
}

/// The step and message of a smoke-test failure.
fn failed_step(err: &Error) -> (&'static str, &str) {
    match err {
        Error::Smoke { step, message } => (step, message),
        other => panic!("expected a smoke error, got {other:?}"),
    }
}

async fn lists_in(db: &TestDb) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM lists")
        .fetch_one(&db.pool)
        .await?)
}

#[tokio::test]
async fn passes_against_a_healthy_api_and_cleans_up_its_list() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    // With the workers: the AI suggestions go through the outbox, RabbitMQ and the worker.
    let app = TestApp::start(common::config(&services, &db)?, true).await?;
    let mut heard = Vec::new();
    let steps = smoke::run(&smoke_config(&app.base), |s| heard.push(s.name)).await?;
    let names: Vec<_> = steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "health",
            "readiness",
            "register",
            "log in",
            "create a list",
            "add an item",
            "read the item back",
            "AI suggestions",
            "delete the list",
            "log out",
        ]
    );
    assert_eq!(heard, names, "every passed step is reported as it passes");
    assert_eq!(lists_in(&db).await?, 0, "the smoke test deletes its list");
    let accounts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE email LIKE 'smoke-%@smoke.listacompra.test'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(accounts, 1, "its throwaway account is recognisable");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_error_answer_fails_the_step_that_got_it_and_the_list_is_still_deleted() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    // A "bad version": adding items answers 500, everything else works.
    config.fault = FaultConfig {
        error_rate: 1.0,
        routes: vec!["/v1/lists/{list_id}/items".to_owned()],
        ..FaultConfig::default()
    };
    let app = TestApp::start(config, false).await?;
    let err = smoke::run(&smoke_config(&app.base), |_| {})
        .await
        .expect_err("a 500 must fail the smoke test");
    let (step, message) = failed_step(&err);
    assert_eq!(step, "add an item", "{err}");
    assert!(message.contains("500"), "{err}");
    assert!(
        !message.contains('\n'),
        "one line, for the operator to quote: {err}"
    );
    assert_eq!(
        lists_in(&db).await?,
        0,
        "the list is deleted after a failure too"
    );
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn no_answer_fails_at_the_first_step() -> Result<()> {
    // A port nothing listens on: bind one, then let it go.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?
        .port();
    let mut config = smoke_config(&format!("http://127.0.0.1:{port}"));
    config.ready_timeout = Duration::from_secs(2);
    let err = smoke::run(&config, |_| {})
        .await
        .expect_err("no API, no pass");
    let (step, message) = failed_step(&err);
    assert_eq!(step, "health", "{err}");
    assert!(
        message.to_lowercase().contains("connect"),
        "the cause is named, not just \"error sending request\": {err}"
    );
    Ok(())
}

#[tokio::test]
async fn suggestions_that_never_come_fail_the_suggestion_step() -> Result<()> {
    // No workers: the suggestion request stays pending.
    let (app, db) = common::app().await?;
    let mut config = smoke_config(&app.base);
    config.suggestion_timeout = Duration::from_secs(2);
    let err = smoke::run(&config, |_| {})
        .await
        .expect_err("pending suggestions must not pass");
    let (step, message) = failed_step(&err);
    assert_eq!(step, "AI suggestions", "{err}");
    assert!(message.contains("pending"), "{err}");
    assert_eq!(lists_in(&db).await?, 0);
    app.stop().await;
    Ok(())
}
