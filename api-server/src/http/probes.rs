//! The operational endpoints, `/health`, `/ready` and `/metrics`: the API serves them among
//! its routes, and the worker process ([`worker`]) serves them alone, with the same answers,
//! for Prometheus and people (its pods have no kubelet probes: see the operator's workload).

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use super::response::{error_body, error_response, json_response};
use crate::error::AppError;
use crate::health::{Health, TokenCheck};
use crate::metrics::Metrics;

/// `GET /health`: the process is up.
pub(super) fn health(version: &str) -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "status": "ok", "version": version }),
    )
}

/// `GET /ready`: 200 when the process can do its work (see [`Health::readiness`]), else 503;
/// with the right `X-Healthcheck-Token`, the check of every dependency.
pub(super) async fn ready(
    health: &Health,
    version: &str,
    token: Option<&str>,
) -> Result<Response, AppError> {
    let token = health.token(token);
    if token == TokenCheck::Invalid {
        return Err(AppError::Unauthorized("wrong X-Healthcheck-Token"));
    }
    let readiness = health.readiness().await;
    let (status, word) = if readiness.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    Ok(if token == TokenCheck::Valid {
        json_response(
            status,
            &json!({
                "status": word,
                "version": version,
                "degraded": readiness.degraded(),
                "checks": readiness,
            }),
        )
    } else {
        json_response(status, &json!({ "status": word }))
    })
}

/// `GET /metrics`: the Prometheus text format.
pub(super) fn metrics(metrics: &Metrics) -> Response {
    let mut res = Response::new(metrics.render().into());
    res.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// What the worker's endpoints answer from.
#[derive(Debug)]
pub struct Probes {
    /// Dependency checks.
    pub health: Health,
    /// The worker's metrics.
    pub metrics: Metrics,
    /// The running version.
    pub version: String,
}

/// The worker process's HTTP surface: the three operational endpoints, a JSON 404 for any
/// other path (the API is served by the API pods), a JSON 405 for other methods.
pub fn worker(
    probes: Arc<Probes>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .then(
            move |method: Method, path: warp::path::FullPath, headers: HeaderMap| {
                let probes = probes.clone();
                async move {
                    let token = headers
                        .get("x-healthcheck-token")
                        .and_then(|v| v.to_str().ok());
                    answer(&probes, &method, path.as_str(), token).await
                }
            },
        )
}

async fn answer(probes: &Probes, method: &Method, path: &str, token: Option<&str>) -> Response {
    let known = matches!(path, "/health" | "/ready" | "/metrics");
    if !known {
        let body = error_body(
            "route_not_found",
            "this is the AI worker: it serves /health, /ready and /metrics only",
            None,
        );
        return json_response(StatusCode::NOT_FOUND, &body);
    }
    if method != Method::GET {
        let mut res = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &error_body("method_not_allowed", "allowed: GET", None),
        );
        res.headers_mut()
            .insert("allow", HeaderValue::from_static("GET"));
        return res;
    }
    match path {
        "/health" => health(&probes.version),
        "/ready" => ready(&probes.health, &probes.version, token)
            .await
            .unwrap_or_else(|e| error_response(&e)),
        _ => metrics(&probes.metrics),
    }
}
