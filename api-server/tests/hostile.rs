//! What hostile clients do, against the real server and services: each check names the
//! attack and the bound that holds.

mod common;

use anyhow::Result;
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
