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
/// `service.namespace`; the refusal names the host and the fix. The URL is parsed as the
/// HTTP client parses it (WHATWG URL rules: a backslash is a path separator, userinfo comes before
/// the last `@` of the authority), so the host checked is the host the request goes to.
pub fn check(url: &str, service: &str, namespace: &str, allowed: &[String]) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: only http and https carry gate credentials"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "refused to send credentials to {url}: a gate address must not carry userinfo"
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let own = [
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
    ];
    if own.contains(&host) || allowed.iter().any(|a| matches(a, &host, port)) {
        return Ok(());
    }
    Err(format!(
        "refused to send credentials to {host}:{port}: it is not the release's Service ({service}.{namespace}.svc) and not in the operator's allowed hosts (GATE_ALLOWED_HOSTS, chart value gates.allowedHosts); a cluster admin must allow it"
    ))
}

/// An allow-list entry: `host`, `host:port`, or `*.domain` (any host under it, any port).
fn matches(entry: &str, host: &str, port: u16) -> bool {
    let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    if entry.is_empty() {
        return false;
    }
    if let Some(domain) = entry.strip_prefix("*.") {
        return host.ends_with(&format!(".{domain}"));
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            h == host && p.parse::<u16>().is_ok_and(|p| p == port)
        }
        _ => entry == host,
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
    fn userinfo_and_backslashes_cannot_disguise_the_host() {
        for sneaky in [
            "http://lc-api.shop.svc@attacker.example/",
            "http://attacker.example\\@lc-api.shop.svc",
            "http://attacker.example\\lc-api.shop.svc",
            "http://user:pw@lc-api.shop.svc:8080",
            "ftp://lc-api.shop.svc",
            "http://attacker.example#@lc-api.shop.svc",
        ] {
            assert!(
                check(sneaky, "lc-api", "shop", &[]).is_err(),
                "{sneaky} was allowed"
            );
        }
        // Spelling variants of the release's own Service are still its Service.
        assert!(check("HTTP://LC-API.shop.svc.:8080/x", "lc-api", "shop", &[]).is_ok());
    }
}
