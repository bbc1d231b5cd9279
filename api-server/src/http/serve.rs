//! Serving the API over hyper with connection timeouts (warp's own server sets no timer, so
//! a client that never finishes its headers would hold its connection for ever).
//!
//! Each connection runs hyper's HTTP/1.1 server with a Tokio timer and a header-read
//! timeout: a client must send a whole request head within
//! [`ConnLimits::header_read_timeout`] of its first byte, and a connection on which nothing
//! moves for [`ConnLimits::idle_timeout`] is closed ([`super::idle`]). The body is
//! bounded by the request filter ([`super::api`]), which answers 408 when it is not received
//! within its own timeout.
//!
//! No cap on open connections: the kubelet's probes share the port, so a full cap would
//! fail them and restart a pod that is only busy. A cap needs the probes on a listener of
//! their own first.
//!
//! HTTP/1.1 only: the pods' clients (the ingress or load balancer, which may speak HTTP/2
//! to browsers, the smoke Job, the operator's gates) speak HTTP/1.1 to them, and cleartext
//! HTTP/2 would be a second protocol to bound (hyper has no header-read timeout for it).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::http;
use warp::reply::Response;

use super::idle::IdleTimeout;

/// The peer address of the connection a request arrived on, as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Connection-level limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time to receive a whole request head (`HTTP_HEADER_READ_TIMEOUT_SECONDS`); also how
    /// long a kept-alive connection may stay idle.
    pub header_read_timeout: Duration,
    /// Time a connection may go without any byte read or written
    /// (`HTTP_IDLE_TIMEOUT_SECONDS`): clients that connect and send nothing, idle kept-alive
    /// connections, clients that stop reading. Longer than any request takes to handle.
    pub idle_timeout: Duration,
}

/// Serves `service` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the connections in flight to finish their requests.
pub async fn serve<S>(
    service: S,
    listener: TcpListener,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: Service<http::Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors or a connection reset before accept: the
                    // listener itself is fine; back off a little instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            service.clone().call(req)
        });
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout)),
                per_request,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                // Timeouts and clients going away end up here; they are not server faults.
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
