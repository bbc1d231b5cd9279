//! What hostile clients do, against the real server and services: each check names the
//! attack and the bound that holds.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::config::Limits;
use listacompra_crds::metrics as names;
use reqwest::{Method, StatusCode};

async fn metrics_text(app: &common::TestApp) -> Result<String> {
    Ok(app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await?
        .text()
        .await?)
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() -> Result<()> {
    let (app, _db) = common::app().await?;
    // One made-up method first: whatever label it gets exists from now on.
    let first = Method::from_bytes(b"ZZ0")?;
    app.http
        .request(first, format!("{}/x", app.base))
        .send()
        .await?;
    // So is the scrape's own line.
    metrics_text(&app).await?;
    let before = metrics_text(&app).await?.lines().count();
    for i in 1..=300 {
        let method = Method::from_bytes(format!("ZZ{i}").as_bytes())?;
        let res = app
            .http
            .request(method, format!("{}/x", app.base))
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let text = metrics_text(&app).await?;
    assert_eq!(
        text.lines().count(),
        before,
        "300 made-up methods added lines:\n{text}"
    );
    assert!(!text.contains("ZZ"), "a made-up method became a label");
    Ok(())
}

#[tokio::test]
async fn the_latency_histogram_measures_api_routes_only() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, token) = app.user().await?;
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/nope"] {
        app.call(Method::GET, path, None, None).await?;
    }
    app.call(Method::PUT, "/v1/lists", Some(&token), None)
        .await?;
    app.call(Method::GET, "/v1/lists", Some(&token), None)
        .await?;
    let text = metrics_text(&app).await?;
    let histogram: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(names::HTTP_REQUEST_DURATION_SECONDS))
        .collect();
    assert!(
        histogram
            .iter()
            .any(|l| l.contains(r#"route="/v1/lists""#) && l.contains(r#"method="GET""#)),
        "{text}"
    );
    for route in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "unmatched",
    ] {
        let label = format!(r#"route="{route}""#);
        assert!(
            !histogram.iter().any(|l| l.contains(&label)),
            "{route} is in the latency histogram:\n{text}"
        );
    }
    // They are still counted, with bounded labels.
    assert!(
        text.lines()
            .any(|l| l.starts_with("listacompra_http_requests_total")
                && l.contains(r#"route="/health""#)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("listacompra_http_requests_total")
                && l.contains(r#"route="unmatched""#)
                && l.contains(r#"status="404""#)),
        "{text}"
    );
    Ok(())
}

/// A server on a fresh database whose limits `change` adjusts.
async fn app_with(change: impl FnOnce(&mut Limits)) -> Result<(TestApp, TestDb)> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    change(&mut config.limits);
    Ok((TestApp::start(config, false).await?, db))
}

/// Reads from `stream` until the server closes it; `None` when it is still open after
/// `guard` (a bound so a failing test ends, not a speed assertion).
async fn closed_by_server(stream: &mut tokio::net::TcpStream, guard: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(guard, read_all).await.ok()?;
    Some(got)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (app, _db) = app_with(|l| l.header_read_timeout = Duration::from_secs(1)).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n")
        .await?;
    let answer = closed_by_server(&mut stream, Duration::from_secs(60)).await;
    assert!(
        answer.is_some(),
        "the connection is still open 60 s after a partial header"
    );
    // The server is still serving everyone else.
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_disconnected() -> Result<()> {
    let (app, _db) = app_with(|l| l.idle_timeout = Duration::from_secs(1)).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    let answer = closed_by_server(&mut stream, Duration::from_secs(60)).await;
    assert!(
        answer.is_some(),
        "an idle connection is still open after 60 s"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408_and_is_disconnected() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (app, _db) = app_with(|l| l.body_read_timeout = Duration::from_secs(1)).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\"",
        )
        .await?;
    let answer = closed_by_server(&mut stream, Duration::from_secs(60))
        .await
        .expect("the connection is still open 60 s after a partial body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
    assert!(text.contains("HTTP_BODY_READ_TIMEOUT_SECONDS"), "{text}");
    Ok(())
}
