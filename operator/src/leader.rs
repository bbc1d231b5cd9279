//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas
//! only one acts. The Lease is taken when free or expired and renewed while held; every
//! write carries the resourceVersion read, so two candidates can never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::error::{Result, kube as kube_err};

/// One candidate for the Lease.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// A candidate `identity` for Lease `namespace/name`, valid `duration` after each renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            if self.try_acquire_or_renew().await? {
                info!(lease = %self.name, identity = %self.identity, "became leader");
                return Ok(());
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease every third of its duration; returns when leadership is lost.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(lease = %self.name, "leadership lost to another candidate");
                    return;
                }
                Err(e) => warn!(error = %e, "could not renew the lease; retrying"),
            }
        }
    }

    /// One attempt: true when this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(kube_err("reading the leader Lease"))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(kube_err("creating the leader Lease")(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let valid = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(seconds),
            ));
            now > renewed.0 + valid
        });
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(MicroTime(now));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // `replace` sends the resourceVersion we read: a concurrent winner makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(kube_err("updating the leader Lease")(e)),
        }
    }
}
