//! The operator's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, over HTTP/1.1 with
//! hyper's server. Three fixed answers need no routing framework (the API's warp brought
//! an HTTP/2 server and its filters into the operator's binary and resident memory).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::warn;

use crate::telemetry::Metrics;

/// How long a client may take to send a request's headers (a slow client holds a task, not
/// the port).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the endpoints on `address` until the process ends; returns the bound address.
/// `/readyz` answers 200 once `ready` is set, 503 before.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let server = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    warn!(error = %e, "could not accept a connection on the metrics address");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<_>| {
                    let answer = answer(
                        request.method(),
                        request.uri().path(),
                        &metrics,
                        ready.load(Ordering::Relaxed),
                    );
                    async move { Ok::<_, Infallible>(answer) }
                });
                // A connection that ends badly (a client gone, headers too slow) concerns
                // that client only.
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    Ok((bound, server))
}

/// The answer to `method path`: 404 for another path, 405 for another method.
fn answer(method: &Method, path: &str, metrics: &Metrics, ready: bool) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" | "/healthz" | "/readyz" if method != Method::GET => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed".into(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/healthz" => (StatusCode::OK, TEXT, "ok".into()),
        "/readyz" if ready => (StatusCode::OK, TEXT, "ok".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready".into()),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// The content type of the plain answers.
const TEXT: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_answers_its_method_and_the_rest_is_refused() {
        let metrics = Metrics::new().expect("metrics");
        let status = |method: Method, path: &str, ready: bool| {
            answer(&method, path, &metrics, ready).status()
        };
        assert_eq!(status(Method::GET, "/metrics", false), StatusCode::OK);
        assert_eq!(status(Method::GET, "/healthz", false), StatusCode::OK);
        assert_eq!(
            status(Method::GET, "/readyz", false),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(Method::GET, "/readyz", true), StatusCode::OK);
        assert_eq!(
            status(Method::POST, "/metrics", true),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(status(Method::GET, "/", true), StatusCode::NOT_FOUND);
        let metrics_answer = answer(&Method::GET, "/metrics", &metrics, true);
        assert_eq!(
            metrics_answer.headers()[CONTENT_TYPE],
            "text/plain; version=0.0.4"
        );
    }

    /// Over a real socket: the server answers, and a client that never finishes its headers
    /// does not keep it from answering the next.
    #[tokio::test]
    async fn the_endpoints_answer_over_http() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let ready = Arc::new(AtomicBool::new(true));
        let (bound, server) = serve("127.0.0.1:0".parse().expect("an address"), metrics, ready)
            .await
            .expect("binds");
        tokio::spawn(server);
        let _silent = tokio::net::TcpStream::connect(bound)
            .await
            .expect("connects");
        let client = reqwest::Client::new();
        let answer = client
            .get(format!("http://{bound}/readyz"))
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        assert_eq!(answer.text().await.expect("a body"), "ok");
        let metrics = client
            .get(format!("http://{bound}/metrics"))
            .send()
            .await
            .expect("answers");
        assert!(metrics.text().await.expect("a body").contains("# HELP"));
    }
}
