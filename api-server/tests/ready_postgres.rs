//! `/ready` turns 503 when PostgreSQL stops and recovers when it returns (a private
//! PostgreSQL, so the shared one keeps serving the other tests).

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use common::{TestApp, eventually};
use e2e::env::Component;
use e2e::faults::{self, Fault, FaultProxy};
use e2e::private::PrivateService;
use e2e::services::Services;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;

async fn ready(app: &TestApp) -> Result<(StatusCode, Value)> {
    let res = app
        .http
        .get(format!("{}/ready", app.base))
        .header("X-Healthcheck-Token", "health-token")
        .send()
        .await?;
    Ok((res.status(), res.json().await?))
}

/// A ready server on a migrated PostgreSQL of its own (the shared one keeps serving the other
/// tests), with `max` pooled connections, `min` of them opened before it is ready.
async fn private_postgres_app(
    max: u32,
    min: u32,
) -> Result<(Services, Arc<PrivateService>, TestApp)> {
    let services = Services::start(&[Component::Redis, Component::RabbitMq]).await?;
    let pg = Arc::new(tokio::task::spawn_blocking(PrivateService::postgres).await??);
    let pool = listacompra_api::store::pool(&pg.url, 2, None)?;
    listacompra_api::migrate::migrate_to(&pool, None).await?;
    pool.close().await;
    let mut config = common::config_with(&services, &pg.url)?;
    config.database_max_connections = max;
    config.database_min_connections = min;
    let app = TestApp::start(config, false).await?;
    app.until_ready().await?;
    Ok((services, pg, app))
}

#[tokio::test]
async fn ready_turns_503_when_postgres_stops_and_recovers_when_it_returns() -> Result<()> {
    let (_services, pg, app) = private_postgres_app(4, 2).await?;
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

/// A server reports ready only with its pool full (`DATABASE_MIN_CONNECTIONS`, by default
/// `DATABASE_MAX_CONNECTIONS`), so a pod that joins its Service serves a burst on open
/// connections. When new connections are slow (a busy database host, a lost SYN), a request
/// that has to open one waits for it, however many connections other requests give back
/// meanwhile, and fails once the pool's acquire timeout (5 s) has passed: during a rollback on
/// a busy machine, the pods that had just turned ready answered 503 to requests they could
/// have served. (A pool that is only partly full opens connections under a burst even when
/// it holds enough: sqlx checks a connection with a round trip before it is idle again.)
#[tokio::test]
async fn a_ready_server_answers_a_burst_without_opening_connections() -> Result<()> {
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let proxy = FaultProxy::start(faults::upstream_of(&db.url)?).await?;
    let mut config = common::config_with(&services, &faults::through(&db.url, proxy.address())?)?;
    config.database_max_connections = 6;
    config.database_min_connections = 6;
    let app = TestApp::start(config, false).await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "burst").await?;
    eventually("/ready to answer 200", Duration::from_secs(30), || async {
        let (s, _) = ready(&app).await?;
        Ok((s == StatusCode::OK).then_some(()))
    })
    .await?;

    // From now on a new connection takes longer than the pool waits for one.
    proxy.set(Fault::SlowConnect(Duration::from_secs(8)));
    let path = format!("/v1/lists/{list}");
    let burst = (0..6).map(|_| app.call(reqwest::Method::GET, &path, Some(&token), None));
    let answers = futures::future::join_all(burst).await;
    for answer in answers {
        let (status, body) = answer?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    proxy.set(Fault::Healthy);
    app.stop().await;
    Ok(())
}

/// PostgreSQL restarts while the server is quiet: every pooled connection is dead. The pool
/// checks a connection that sat idle before it hands it out (and replaces a dead one), so
/// the first requests afterwards are served; a connection in steady use is not checked
/// (that round trip per query is what `store::pool` saves).
#[tokio::test]
async fn the_first_requests_after_a_postgres_restart_are_served() -> Result<()> {
    let (_services, pg, app) = private_postgres_app(4, 4).await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "before the restart").await?;

    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.down().and_then(|()| pg.up())
    })
    .await??;
    // Longer than the pool's idle threshold, so the connections count as idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // As many requests at once as the pool has connections: each takes a dead one.
    let path = format!("/v1/lists/{list}");
    let calls = (0..4).map(|_| app.call(reqwest::Method::GET, &path, Some(&token), None));
    for (status, body) in futures::future::try_join_all(calls).await? {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    app.stop().await;
    Ok(())
}

/// PostgreSQL ends a connection the server was using (an administrator's
/// `pg_terminate_backend`, a restart under load: SQLSTATE 57P01): the request on it answers
/// 503 with a JSON body, as for an unreachable database, never 500; the next one is served
/// on a new connection. (A connection idle for a second is checked before use and replaced
/// instead: a cycle that took that long answers 200 and is tried again.)
#[tokio::test]
async fn a_connection_postgres_terminates_answers_503_and_the_next_request_is_served() -> Result<()>
{
    let (_services, pg, app) = private_postgres_app(1, 1).await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "groceries").await?;
    let path = format!("/v1/lists/{list}");
    let admin_url = pg.admin_url.clone().expect("a PostgreSQL admin URL");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let mut answers = Vec::new();
    for _ in 0..5 {
        // The connection was in use a moment ago, so the pool hands it out unchecked.
        let (status, body) = app
            .call(reqwest::Method::GET, &path, Some(&token), None)
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = 'listacompra' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .fetch_all(&mut admin)
        .await?;
        assert!(!pids.is_empty(), "no connection of the server to end");
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut admin)
                .await?;
        }
        // pg_terminate_backend only signals: wait until the backends are gone, so that the
        // next request meets a connection that is already ended.
        let asked = std::time::Instant::now();
        loop {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&pids)
                    .fetch_one(&mut admin)
                    .await?;
            if left == 0 {
                break;
            }
            anyhow::ensure!(
                asked.elapsed() < Duration::from_secs(5),
                "backends {pids:?} still there"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (status, body) = app
            .call(reqwest::Method::GET, &path, Some(&token), None)
            .await?;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(
            body["error"].is_string() || status == StatusCode::OK,
            "{body}"
        );
        answers.push(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
    }
    assert_eq!(
        answers.last(),
        Some(&StatusCode::SERVICE_UNAVAILABLE),
        "no request met an ended connection: {answers:?}"
    );
    let (status, body) = app
        .call(reqwest::Method::GET, &path, Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
    Ok(())
}
