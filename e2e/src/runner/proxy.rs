//! A Service as kube-proxy would make it: one local TCP port that spreads connections over
//! the Service's ready backends, round robin.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

/// Listens on 127.0.0.1 (a free port) and forwards each connection to the next of the
/// addresses `backends` returns at that moment. With none, the connection is closed at once,
/// as a Service without ready endpoints refuses traffic. Returns the local address.
pub async fn start<F>(backends: F) -> std::io::Result<SocketAddr>
where
    F: Fn() -> Vec<SocketAddr> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let addresses = backends();
            if addresses.is_empty() {
                continue; // dropping `client` closes the connection
            }
            let pick = addresses[next.fetch_add(1, Ordering::Relaxed) % addresses.len()];
            tokio::spawn(async move {
                if let Ok(mut backend) = TcpStream::connect(pick).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                }
            });
        }
    });
    Ok(address)
}
