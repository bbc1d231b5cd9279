//! Where the gates may send credentials read from Secrets.
//!
//! Whoever may write a release could otherwise point `health.baseUrl` or
//! `analysis.prometheus.address` at a server of their own and have the operator read a
//! Secret they cannot read and send it there (a confused deputy). So credentials go only to
//! the release's own Service, or to hosts the cluster admin allows in the operator's own
//! configuration (`GATE_ALLOWED_HOSTS`, chart value `gates.allowedHosts`), never to a host
//! the release alone names. A gate refused this way fails (health) or is inconclusive
//! (KPIs), saying why; the credential is never sent.

/// Whether credentials may be sent to `url` for the release whose Service is
/// `service.namespace`; the refusal names the host and the fix.
pub fn check(url: &str, service: &str, namespace: &str, allowed: &[String]) -> Result<(), String> {
    let host = host_of(url).ok_or_else(|| format!("{url} has no host"))?;
    let own = [
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
    ];
    let host_only = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    if own.iter().any(|o| o == host_only) || allowed.iter().any(|a| matches(a, &host)) {
        return Ok(());
    }
    Err(format!(
        "refused to send credentials to {host}: it is not the release's Service ({service}.{namespace}.svc) and not in the operator's allowed hosts (GATE_ALLOWED_HOSTS, chart value gates.allowedHosts); a cluster admin must allow it"
    ))
}

/// The `host[:port]` of an http(s) URL, lower-cased.
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    // userinfo@host is never a legitimate gate address; the host is what follows it.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An allow-list entry: `host`, `host:port`, or `*.domain` (any host under it, any port).
fn matches(entry: &str, host: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    if entry.is_empty() {
        return false;
    }
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if let Some(domain) = entry.strip_prefix("*.") {
        return host_only.ends_with(&format!(".{domain}"));
    }
    if entry.contains(':') {
        entry == host
    } else {
        entry == host_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_release_service_is_always_allowed() {
        for url in [
            "http://lc-api.shop.svc:8080",
            "http://lc-api.shop.svc.cluster.local:8080/x",
            "https://lc-api.shop",
        ] {
            assert_eq!(check(url, "lc-api", "shop", &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_hosts_need_the_admins_allow_list() {
        let refused = check("http://attacker.example:9000", "lc-api", "shop", &[]);
        let message = refused.expect_err("refused");
        assert!(message.contains("attacker.example:9000"), "{message}");
        assert!(message.contains("GATE_ALLOWED_HOSTS"), "{message}");
        // Another namespace's Service with the same name is not the release's own.
        assert!(check("http://lc-api.other.svc:8080", "lc-api", "shop", &[]).is_err());
        let list = allowed(&[
            "prometheus.monitoring.svc",
            "*.corp.example",
            "127.0.0.1:9090",
        ]);
        assert!(
            check(
                "http://prometheus.monitoring.svc:9090",
                "lc-api",
                "shop",
                &list
            )
            .is_ok()
        );
        assert!(
            check(
                "https://metrics.eu.corp.example/api",
                "lc-api",
                "shop",
                &list
            )
            .is_ok()
        );
        assert!(check("http://corp.example.evil.io", "lc-api", "shop", &list).is_err());
        assert!(check("http://127.0.0.1:9090", "lc-api", "shop", &list).is_ok());
        assert!(check("http://127.0.0.1:9091", "lc-api", "shop", &list).is_err());
    }

    #[test]
    fn userinfo_cannot_disguise_the_host() {
        assert!(
            check(
                "http://lc-api.shop.svc@attacker.example/",
                "lc-api",
                "shop",
                &[]
            )
            .is_err()
        );
        assert!(check("ftp://lc-api.shop.svc", "lc-api", "shop", &[]).is_err());
    }
}
