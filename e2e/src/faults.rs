//! The network between the API pods and PostgreSQL, as it fails in production: a TCP proxy
//! the pods reach the database through, which a test turns slow or cuts while a release is
//! verified. The database, the pods and Prometheus stay real; only the wire between them
//! misbehaves, on command.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{Error, Result};

/// What the wire does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes everything at once.
    Healthy,
    /// Holds each read from a client this long before passing it on (reads of one
    /// connection in turn: a query round trip pays it once, a message arriving meanwhile
    /// waits for the one before).
    Latency(Duration),
    /// Closes every open connection; new ones are held unanswered until the wire is healthy
    /// or slow again, as a partition black-holes them (a client's connect timeout applies).
    Cut,
    /// Holds each new connection this long (the delay it met when it arrived) before it
    /// reaches the server, as a database host too busy to start sessions does; open
    /// connections pass at once.
    SlowConnect(Duration),
}

/// A running proxy to one upstream address; when dropped, it closes its connections and
/// stops accepting.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, healthy at first.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io {
                action: "binding the database fault proxy".to_owned(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| Error::Io {
            action: "reading the fault proxy's address".to_owned(),
            source,
        })?;
        let (fault, _) = watch::channel(Fault::Healthy);
        let watching = fault.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(tunnel(client, upstream, watching.subscribe()));
                    }
                    // Out of descriptors, or a client gone before it was accepted: the
                    // proxy goes on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Ok(Self {
            address,
            fault,
            task,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Switches the wire to `fault` (a cut closes the connections open now).
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// What the wire does now.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Every tunnel ends on a cut (a held one never starts: the receivers see the sender
        // gone).
        self.fault.send_replace(Fault::Cut);
        self.task.abort();
    }
}

/// The address a `postgres://` URL connects to (a loopback server's: no name lookup).
pub fn upstream_of(url: &str) -> Result<SocketAddr> {
    let parsed = parse(url)?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port().unwrap_or(5432);
    format!("{host}:{port}")
        .parse()
        .map_err(|e| Error::Workload {
            message: format!("{url:?}: the fault proxy needs an IP address as host: {e}"),
        })
}

/// `url` with its host and port replaced by the proxy's `address`.
pub fn through(url: &str, address: SocketAddr) -> Result<String> {
    let mut parsed = parse(url)?;
    let bad = |what: &str| Error::Workload {
        message: format!("{url:?}: cannot set the proxy's {what}"),
    };
    parsed.set_ip_host(address.ip()).map_err(|()| bad("host"))?;
    parsed
        .set_port(Some(address.port()))
        .map_err(|()| bad("port"))?;
    Ok(parsed.to_string())
}

fn parse(url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| Error::Workload {
        message: format!("{url:?} is not a PostgreSQL URL: {e}"),
    })
}

/// One client connection: held while the wire is cut, then both directions until both end
/// or the wire is cut.
async fn tunnel(client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Fault>) {
    while *rx.borrow_and_update() == Fault::Cut {
        if rx.changed().await.is_err() {
            return; // the proxy is gone
        }
    }
    let fault = *rx.borrow();
    if let Fault::SlowConnect(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both = futures::future::join(
        pump(client_read, server_write, rx.clone(), true),
        pump(server_read, client_write, rx.clone(), false),
    );
    tokio::select! {
        _ = both => {}
        () = cut(rx) => {}
    }
}

/// Copies `from` to `to`, holding each read for the current latency when `delayed`, until
/// either side closes or the wire is cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    rx: watch::Receiver<Fault>,
    delayed: bool,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => {
                // Half-close: the other direction goes on.
                let _ = to.shutdown().await;
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        // Read after the wire changed: nothing passes a cut, whichever branch runs first.
        let latency = match *rx.borrow() {
            Fault::Cut => return,
            Fault::Latency(latency) if delayed => Some(latency),
            _ => None,
        };
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
            if *rx.borrow() == Fault::Cut {
                return;
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Returns when the wire is cut.
async fn cut(mut rx: watch::Receiver<Fault>) {
    loop {
        if *rx.borrow_and_update() == Fault::Cut {
            return;
        }
        if rx.changed().await.is_err() {
            return; // the proxy is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0_u8; 64];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Duration> {
        let started = Instant::now();
        stream.write_all(b"ping").await?;
        let mut answer = [0_u8; 4];
        stream.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"ping");
        Ok(started.elapsed())
    }

    #[test]
    fn urls_are_routed_through_the_proxy() {
        let url = "postgres://u:p@127.0.0.1:55432/lc_x?sslmode=disable";
        assert_eq!(
            upstream_of(url).expect("address"),
            "127.0.0.1:55432".parse().expect("literal")
        );
        assert_eq!(
            through(url, "127.0.0.1:40000".parse().expect("literal")).expect("url"),
            "postgres://u:p@127.0.0.1:40000/lc_x?sslmode=disable"
        );
    }

    #[tokio::test]
    async fn the_wire_passes_slows_and_cuts_on_command() {
        let proxy = FaultProxy::start(echo().await).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.address()).await.expect("connect");
        round_trip(&mut open).await.expect("a healthy wire echoes");

        proxy.set(Fault::Latency(Duration::from_millis(300)));
        let took = round_trip(&mut open)
            .await
            .expect("a slow wire still echoes");
        assert!(took >= Duration::from_millis(300), "took {took:?}");

        proxy.set(Fault::Cut);
        assert!(
            round_trip(&mut open).await.is_err(),
            "an open connection is closed by the cut"
        );
        let mut held = TcpStream::connect(proxy.address()).await.expect("accepted");
        held.write_all(b"ping").await.expect("buffered");
        let mut answer = [0_u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), held.read_exact(&mut answer))
                .await
                .is_err(),
            "a new connection is held unanswered while the wire is cut"
        );

        proxy.set(Fault::Healthy);
        held.read_exact(&mut answer)
            .await
            .expect("the held connection goes through");
        assert_eq!(&answer, b"ping");
        let mut again = TcpStream::connect(proxy.address()).await.expect("connect");
        round_trip(&mut again).await.expect("the wire is back");

        drop(proxy);
        assert!(
            round_trip(&mut again).await.is_err(),
            "a dropped proxy closes its connections"
        );
    }

    #[tokio::test]
    async fn a_slow_connect_holds_new_connections_only() {
        let proxy = FaultProxy::start(echo().await).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.address()).await.expect("connect");
        round_trip(&mut open).await.expect("a healthy wire echoes");

        proxy.set(Fault::SlowConnect(Duration::from_millis(400)));
        let took = round_trip(&mut open)
            .await
            .expect("an open connection echoes");
        assert!(took < Duration::from_millis(400), "took {took:?}");
        let mut new = TcpStream::connect(proxy.address()).await.expect("accepted");
        let took = round_trip(&mut new).await.expect("a new connection echoes");
        assert!(took >= Duration::from_millis(400), "took {took:?}");
    }
}
