//! The client address that rate limits key on.
//!
//! Decision: by default the connection's peer address, and `X-Forwarded-For` is ignored,
//! because any client can write that header (trusting it would let one client pick a new
//! address per request and escape every per-address limit). Behind proxies, set
//! `TRUSTED_PROXY_HOPS` to how many of them append to `X-Forwarded-For`: the client is then
//! the n-th address from the right (the one the outermost trusted proxy saw), and entries to
//! its left, which the client may have forged, are ignored. A Kubernetes Service (kube-proxy)
//! is not a proxy in this sense: it keeps the peer address (with
//! `externalTrafficPolicy: Local`) or replaces it with a node's, and adds no header.

use std::net::{IpAddr, SocketAddr};

/// The client of a request that came from `peer` with this `X-Forwarded-For` header, with
/// `hops` trusted proxies in front of the server.
pub fn client_ip(peer: SocketAddr, forwarded_for: Option<&str>, hops: usize) -> IpAddr {
    if hops == 0 {
        return peer.ip();
    }
    let Some(header) = forwarded_for else {
        return peer.ip();
    };
    let entries: Vec<&str> = header.split(',').map(str::trim).collect();
    // Fewer entries than trusted hops: every entry was written by a trusted proxy, and the
    // leftmost is the client.
    let index = entries.len().saturating_sub(hops);
    entries
        .get(index)
        .and_then(|e| e.parse::<IpAddr>().ok())
        .unwrap_or_else(|| peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.9:40000".parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let ip = client_ip(peer(), Some("203.0.113.7"), 0);
        assert_eq!(ip, "10.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn with_trusted_proxies_the_nth_address_from_the_right_is_the_client() {
        // The client forged "1.2.3.4"; one trusted proxy appended what it saw.
        let ip = client_ip(peer(), Some("1.2.3.4, 198.51.100.2"), 1);
        assert_eq!(ip, "198.51.100.2".parse::<IpAddr>().unwrap());
        let ip = client_ip(peer(), Some("1.2.3.4, 198.51.100.2, 10.0.0.3"), 2);
        assert_eq!(ip, "198.51.100.2".parse::<IpAddr>().unwrap());
        // Fewer entries than hops: the leftmost.
        let ip = client_ip(peer(), Some("198.51.100.2"), 2);
        assert_eq!(ip, "198.51.100.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_missing_or_garbled_header_falls_back_to_the_peer() {
        let peer_ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(client_ip(peer(), None, 1), peer_ip);
        assert_eq!(client_ip(peer(), Some("not an address"), 1), peer_ip);
    }
}
