//! The OpenAPI document matches the router: every documented operation is routed (it never
//! answers `route_not_found` or 405), and every route is documented.

mod common;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::http::ROUTES;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_route_documented() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(common::config(&services, &db)?, false).await?;
    let (s, doc) = app.call(Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], "9.9.9-test");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);

    // Probe the running server with each documented operation.
    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    s.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let res = app
            .http
            .request(
                Method::from_bytes(method.as_bytes())?,
                format!("{}{concrete}", app.base),
            )
            .send()
            .await?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["error"], "route_not_found", "{method} {path}");
        assert!(
            !status.is_server_error(),
            "{method} {path}: {status} {body}"
        );
        // The documented responses include what the server answered.
        let op = &paths[path][method.to_lowercase()];
        assert!(
            op["responses"][status.as_str()].is_object(),
            "{method} {path} answered {status}, not documented"
        );
    }
    // And a path outside the document is not routed.
    let (s, b) = app.call(Method::GET, "/v1/admin", None, None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"], "route_not_found");
    Ok(())
}

#[tokio::test]
async fn the_limits_answers_are_documented() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, doc) = app.call(Method::GET, "/openapi.json", None, None).await?;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    for (path, method) in [
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/lists/{list_id}/suggestions", "post"),
    ] {
        let res = &op(path, method)["responses"]["429"];
        assert!(res.is_object(), "{method} {path}: no 429");
        assert!(res["headers"]["Retry-After"].is_object(), "{method} {path}");
    }
    for (path, method) in [("/v1/auth/register", "post"), ("/v1/auth/login", "post")] {
        let res = &op(path, method)["responses"]["503"];
        assert!(res.is_object(), "{method} {path}: no 503");
        assert!(res["headers"]["Retry-After"].is_object(), "{method} {path}");
    }
    // Every operation with a body can time out while it is being received.
    assert!(op("/v1/lists", "post")["responses"]["408"].is_object());
    let error = &doc["components"]["schemas"]["Error"]["properties"];
    assert!(error["limit"].is_object() && error["retry_after_seconds"].is_object());
    Ok(())
}
