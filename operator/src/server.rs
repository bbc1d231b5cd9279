//! The operator's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use warp::Filter;

use crate::telemetry::Metrics;

/// Serves the endpoints on `address` until the process ends; returns the bound address.
/// `/readyz` answers 200 once `ready` is set, 503 before.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        if ready.load(Ordering::Relaxed) {
            warp::reply::with_status("ok", warp::http::StatusCode::OK)
        } else {
            warp::reply::with_status("not ready", warp::http::StatusCode::SERVICE_UNAVAILABLE)
        }
    });
    let routes = metrics_route.or(healthz).or(readyz);
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let server = warp::serve(routes).incoming(listener).run();
    Ok((bound, server))
}
