//! The HTTP edge (warp): one filter extracts the request, the route table dispatches it.
//!
//! The route table [`ROUTES`] is the router: the OpenAPI document is generated from the same
//! table, and the metrics' `route` label is the matched template, so they cannot drift.
//! Every outcome is a JSON response; no input can produce a 500.

mod client;
mod handlers;
mod idle;
pub mod openapi;
pub mod probes;
mod request;
mod response;
mod routes;
pub mod serve;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::Instrument;
use uuid::Uuid;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::reply::Response;
use warp::{Buf, Filter};

use crate::auth::{Argon2Hasher, Tokens};
use crate::fault::{self, FaultConfig};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::store::PgStore;
use crate::usecases::UseCases;
pub use client::client_ip;
use request::Request;
pub use request::parse_json;
use response::{
    body_timeout, error_body, error_response, json_response, request_timeout, too_large,
};
use routes::{Matched, route};
pub use routes::{Op, ROUTES, Route, method_label, route_label};

/// Default largest accepted request body (`HTTP_MAX_BODY_BYTES`).
pub const MAX_BODY: usize = 64 * 1024;

/// The use cases over the production adapters.
pub type Api = UseCases<PgStore, Argon2Hasher, Tokens>;

/// What the handlers share.
#[derive(Debug)]
pub struct State {
    /// The use cases (the only way the edge reaches the data).
    pub api: Api,
    /// Metrics.
    pub metrics: Metrics,
    /// Dependency checks.
    pub health: Health,
    /// Fault injection.
    pub fault: FaultConfig,
    /// The running version.
    pub version: String,
    /// Time to receive a request body (`HTTP_BODY_READ_TIMEOUT_SECONDS`).
    pub body_read_timeout: std::time::Duration,
    /// Time to handle a request once read (`HTTP_REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: std::time::Duration,
    /// Largest accepted request body (`HTTP_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Rate limits per client address, account and user.
    pub rate_limits: RateLimits,
    /// Proxies in front of the server that append to `X-Forwarded-For` (`TRUSTED_PROXY_HOPS`).
    pub trusted_proxy_hops: usize,
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn start(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn dispatch(state: Arc<State>, req: Request) -> Response {
    let _in_flight = InFlight::start(&state.metrics.http_in_flight);
    let start = Instant::now();
    let request_id = req
        .header("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let matched = route(&req.method, &req.path);
    let template = match &matched {
        Matched::Route(route, _) => route.path,
        _ => "unmatched",
    };
    // The server span of the request (OpenTelemetry's HTTP conventions), a child of the
    // caller's trace when it sent `traceparent`. Its name is fixed when it starts, so the
    // route is matched first; names come from closed sets only, as the metrics' labels do
    // (`GET /v1/lists/{id}`). Probes, scrapes and unmatched paths get a `debug` span: their
    // log lines keep the request id where `RUST_LOG` shows them, but they make no traces.
    macro_rules! request_span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "request",
                request_id = %request_id,
                method = %req.method,
                path = %req.path,
                otel.name = %format!("{} {template}", method_label(&req.method)),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.request.method = %req.method,
                http.route = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
                url.path = %req.path,
            )
        };
    }
    let traced = matches!(&matched, Matched::Route(route, _) if route.is_api());
    let span = if traced {
        request_span!(tracing::Level::INFO)
    } else {
        request_span!(tracing::Level::DEBUG)
    };
    if template != "unmatched" {
        span.record("http.route", template);
    }
    listacompra_telemetry::propagation::continue_from(&span, |name| {
        req.header(name).map(str::to_owned)
    });
    let (label, api, mut res) = async {
        match matched {
            Matched::Route(route, params) => {
                let handled = async {
                    if state.fault.matches(route.path, &req.path) {
                        if !state.fault.latency.is_zero() {
                            tokio::time::sleep(state.fault.latency).await;
                        }
                        if state.fault.fails(fault::roll()) {
                            let body = error_body(
                                "fault_injected",
                                "injected fault (FAULT_ERROR_RATE)",
                                None,
                            );
                            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &body);
                        }
                    }
                    handlers::handle(&state, route, &params, &req)
                        .await
                        .unwrap_or_else(|e| error_response(&e))
                };
                // A request still running at the deadline is dropped: its transaction rolls
                // back, and the client learns it may retry.
                let res = tokio::time::timeout(state.request_timeout, handled)
                    .await
                    .unwrap_or_else(|_| request_timeout(state.request_timeout));
                (route.path, route.is_api(), res)
            }
            Matched::WrongMethod(allowed) => {
                let body = error_body(
                    "method_not_allowed",
                    &format!("allowed: {}", allowed.join(", ")),
                    None,
                );
                let mut res = json_response(StatusCode::METHOD_NOT_ALLOWED, &body);
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    res.headers_mut().insert("allow", v);
                }
                ("unmatched", false, res)
            }
            Matched::NoRoute => (
                "unmatched",
                false,
                json_response(
                    StatusCode::NOT_FOUND,
                    &error_body("route_not_found", "no such route", None),
                ),
            ),
        }
    }
    .instrument(span.clone())
    .await;
    let status = res.status();
    let elapsed = start.elapsed();
    // Every label from a closed set: route templates (or `unmatched`), the route table's
    // methods (or `other`), and the status codes this server answers with.
    let labels = [label, method_label(&req.method), status.as_str()];
    state.metrics.http_requests.with_label_values(&labels).inc();
    if api {
        // The latency KPI measures API routes only: not probes, scrapes or unmatched paths.
        state
            .metrics
            .http_duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            route = label,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    // A rate-limited request waits a little for its 429 (see `ratelimit`), after the
    // latency was measured and logged: the hold is the client's penalty, not our latency.
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        state.rate_limits.hold(retry_after).await;
    }
    res
}

async fn read_body<S, B>(body: S, max: usize) -> Result<Vec<u8>, Response>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return Err(json_response(
                StatusCode::BAD_REQUEST,
                &error_body("bad_request", "the body could not be read", Some("body")),
            ));
        };
        if buf.len() + chunk.remaining() > max {
            return Err(too_large(max));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// The whole HTTP API as one warp filter that never rejects.
pub fn api(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let extract = warp::method()
        .and(warp::ext::optional::<serve::PeerAddr>())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  peer: Option<serve::PeerAddr>,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
                let state = state.clone();
                async move {
                    let declared = headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok());
                    let max = state.max_body_bytes;
                    if declared.is_some_and(|n| n > max) {
                        return too_large(max);
                    }
                    // A client that sends its body slowly (or never) holds a connection and a
                    // task: bounded by the body-read timeout, then 408 and the connection closes.
                    let buf =
                        match tokio::time::timeout(state.body_read_timeout, read_body(body, max))
                            .await
                        {
                            Ok(Ok(buf)) => buf,
                            Ok(Err(res)) => return res,
                            Err(_) => return body_timeout(state.body_read_timeout),
                        };
                    let peer = peer.map_or_else(
                        || std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                        |serve::PeerAddr(addr)| addr,
                    );
                    let forwarded_for =
                        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
                    let client = client_ip(peer, forwarded_for, state.trusted_proxy_hops);
                    let req = Request {
                        client,
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        headers,
                        body: Bytes::from(buf),
                    };
                    dispatch(state, req).await
                }
            },
        );
    // None of the extractors above rejects a well-formed HTTP request; should one ever do,
    // the answer is still JSON.
    extract
        .recover(|rejection: warp::Rejection| async move {
            let message = format!("{rejection:?}");
            Ok::<_, Infallible>(json_response(
                StatusCode::BAD_REQUEST,
                &error_body("bad_request", &message, None),
            ))
        })
        .unify()
}
