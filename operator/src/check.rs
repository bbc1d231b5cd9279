//! `listacompra-operator check`: is the installed operator working? What the chart's
//! `helm test` hook runs, and what a person can run by hand.
//!
//! Three findings, each from the real thing rather than from the chart's own objects:
//! - the API server serves the release and approval kinds (discovery of
//!   `listacompra.app/v1alpha1`), so releases can be applied at all;
//! - the operator answers `/readyz` through its metrics Service, so at least one replica runs
//!   and is an endpoint;
//! - with leader election, some replica holds the leader Lease and renews it while we watch,
//!   so one replica acts. (A renewal seen, not a renew time compared with our clock: the
//!   holder's clock and ours need not agree.)

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::{Api, Client, Resource, ResourceExt};
use listacompra_crds::{ListaCompraApproval, ListaCompraRelease};

/// What to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the operator's metrics Service (`/readyz` is asked there).
    pub metrics_url: url::Url,
    /// The leader Lease (namespace, name), when leader election is on.
    pub lease: Option<(String, String)>,
    /// How long a Lease may go unrenewed before the check fails (the lease duration).
    pub lease_duration: Duration,
}

/// One finding: what was checked, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it holds.
    pub ok: bool,
    /// What was found, in a sentence that names the object.
    pub message: String,
}

impl Finding {
    fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}", self.message)
    }
}

/// Runs every check, in order.
pub async fn run(client: &Client, target: &Target) -> Vec<Finding> {
    let mut findings = vec![
        crds_served(client).await,
        operator_ready(&target.metrics_url).await,
    ];
    if let Some((namespace, name)) = &target.lease {
        findings.push(leader_renews(client, namespace, name, target.lease_duration).await);
    }
    findings
}

async fn crds_served(client: &Client) -> Finding {
    let group_version = ListaCompraRelease::api_version(&());
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => served(&list),
        Err(e) => Finding::failed(format!(
            "the API server does not serve {group_version}: {e}. Fix: apply the CRDs \
             (config/crd, or install the chart)"
        )),
    }
}

/// Whether the discovery document of `listacompra.app/v1alpha1` lists both kinds.
fn served(list: &APIResourceList) -> Finding {
    let wanted = [
        ListaCompraRelease::plural(&()).into_owned(),
        ListaCompraApproval::plural(&()).into_owned(),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|plural| !list.resources.iter().any(|r| &r.name == *plural))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Finding::ok(format!(
            "the API server serves {} ({})",
            list.group_version,
            wanted.join(", ")
        ))
    } else {
        Finding::failed(format!(
            "the API server serves {} without {}. Fix: apply this version's CRDs (config/crd)",
            list.group_version,
            missing.join(", ")
        ))
    }
}

async fn operator_ready(base: &url::Url) -> Finding {
    let url = match readyz(base) {
        Ok(url) => url,
        Err(e) => return Finding::failed(format!("{base} is no base URL: {e}")),
    };
    // Straight to the Service: a proxy from the environment would not know `.svc` names.
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(e) => return Finding::failed(format!("cannot build an HTTP client: {e}")),
    };
    match client.get(url.clone()).send().await {
        Ok(answer) if answer.status().is_success() => {
            Finding::ok(format!("the operator answers {url}"))
        }
        Ok(answer) => Finding::failed(format!(
            "the operator answers {url} with {}: it is not ready",
            answer.status()
        )),
        Err(e) => Finding::failed(format!(
            "no operator answers {url}: {e}. Is any replica running and ready? \
             (kubectl get pods -l app.kubernetes.io/component=operator)"
        )),
    }
}

/// `/readyz` under `base`, whether or not `base` ends with a slash (`Url::join` would
/// replace a last segment without one).
fn readyz(base: &url::Url) -> Result<url::Url, url::ParseError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join("readyz")
}

/// Reads the Lease until its record changes (a renewal or a new holder) after a first
/// read, for at most `duration` and a little more. A Lease without a holder (the leader
/// just gave it up on shutdown) or not yet made is read again: a successor takes it within
/// that time.
async fn leader_renews(
    client: &Client,
    namespace: &str,
    name: &str,
    duration: Duration,
) -> Finding {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let what = format!("Lease {namespace}/{name}");
    let deadline = tokio::time::Instant::now() + duration + Duration::from_secs(2);
    let mut first: Option<Lease> = None;
    loop {
        let now = match api.get_opt(name).await {
            Ok(lease) => lease,
            Err(e) => return Finding::failed(format!("cannot read {what}: {e}")),
        };
        match (&first, now) {
            (Some(before), Some(now)) if renewed(before, &now) => {
                let by = holder_of(&now);
                return Finding::ok(format!("{by} holds {what} and renews it"));
            }
            (None, Some(now)) => first = Some(now),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Finding::failed(match first.as_ref().and_then(holder) {
        Some(holder) => format!(
            "{holder} holds {what} but did not renew it within {}s: the leader is stuck or gone",
            duration.as_secs()
        ),
        None if first.is_some() => format!(
            "{what} has no holder and none took it within {}s: no replica acts",
            duration.as_secs()
        ),
        None => format!(
            "{what} does not exist after {}s: no replica has been leader",
            duration.as_secs()
        ),
    })
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn holder_of(lease: &Lease) -> String {
    holder(lease).unwrap_or_else(|| "nobody".to_owned())
}

/// Whether `now` records a renewal (or a new holder) after `before`: a held Lease whose
/// renew time moved.
fn renewed(before: &Lease, now: &Lease) -> bool {
    let renew_time = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    holder(now).is_some()
        && (renew_time(now) != renew_time(before)
            || now.resource_version() != before.resource_version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, MicroTime};

    fn resource(name: &str) -> APIResource {
        APIResource {
            name: name.to_owned(),
            ..APIResource::default()
        }
    }

    #[test]
    fn readyz_is_asked_under_the_base_url_with_or_without_a_slash() {
        for (base, expected) in [
            (
                "http://op-metrics.ns.svc:8080",
                "http://op-metrics.ns.svc:8080/readyz",
            ),
            (
                "http://op-metrics.ns.svc:8080/",
                "http://op-metrics.ns.svc:8080/readyz",
            ),
            ("http://h/op", "http://h/op/readyz"),
            ("http://h/op/", "http://h/op/readyz"),
        ] {
            let url = readyz(&url::Url::parse(base).unwrap()).unwrap();
            assert_eq!(url.as_str(), expected, "{base}");
        }
    }

    #[test]
    fn both_kinds_must_be_served() {
        let mut list = APIResourceList {
            group_version: "listacompra.app/v1alpha1".to_owned(),
            resources: vec![
                resource("listacomprareleases"),
                resource("listacomprareleases/status"),
            ],
        };
        let finding = served(&list);
        assert!(!finding.ok);
        assert!(
            finding.message.contains("without listacompraapprovals"),
            "{finding}"
        );
        list.resources.push(resource("listacompraapprovals"));
        assert!(served(&list).ok);
    }

    fn lease(holder: Option<&str>, renew_seconds: i64, resource_version: &str) -> Lease {
        let mut lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renew_seconds).expect("time"),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        lease.metadata.resource_version = Some(resource_version.to_owned());
        lease
    }

    #[test]
    fn a_renewal_is_a_held_lease_whose_record_moved() {
        let before = lease(Some("a"), 100, "1");
        assert!(!renewed(&before, &before.clone()));
        assert!(renewed(&before, &lease(Some("a"), 102, "2")));
        assert!(
            renewed(&before, &lease(Some("b"), 102, "2")),
            "a new leader acts too"
        );
        assert!(
            !renewed(&before, &lease(None, 102, "2")),
            "a released Lease is no leader"
        );
        assert!(
            !renewed(&before, &lease(Some(""), 102, "2")),
            "an empty holder is none"
        );
    }
}
