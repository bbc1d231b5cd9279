//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas
//! only one acts, the way client-go's leaderelection does it:
//!
//! - a candidate takes the Lease when it is free, or when its record (holder and renew time)
//!   has not changed for the lease duration *as measured on the candidate's own clock* since
//!   the candidate first saw that record: clocks of different machines are never compared;
//! - the leader renews every retry period, and stops acting (returns from [`Elector::hold`])
//!   when it has not renewed for the renew deadline, which is shorter than the lease
//!   duration: it is gone before anyone else may take the Lease;
//! - every API call has a timeout; every write carries the resourceVersion read, so two
//!   candidates can never both win;
//! - on shutdown the leader releases the Lease, so a successor takes over at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::error::{Error, Result, kube as kube_err};

/// The timing of an election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease record stays valid without a change.
    pub lease: Duration,
    /// How long a leader keeps acting without a successful renewal (shorter than `lease`).
    pub renew_deadline: Duration,
    /// How often candidates try and leaders renew.
    pub retry: Duration,
}

impl Timing {
    /// client-go's proportions for a lease of `lease`: renew deadline 2/3, retry 2/15.
    pub fn for_lease(lease: Duration) -> Self {
        Self {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease * 2 / 15).max(Duration::from_millis(200)),
        }
    }
}

/// A Lease record as a candidate saw it, and when (on its own clock).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<String>,
    duration: Option<i32>,
}

#[derive(Debug, Clone)]
struct Observation {
    record: Record,
    since: Instant,
}

/// Whether a record first seen at `since` (unchanged since) is expired at `now`: free, or
/// not renewed for `lease`, both on the local clock.
fn expired(record: &Record, since: Instant, lease: Duration, now: Instant) -> bool {
    record.holder.as_deref().is_none_or(str::is_empty) || now.duration_since(since) > lease
}

/// Whether a leader whose last successful renewal was at `renewed` may still act at `now`.
fn may_act(renewed: Instant, renew_deadline: Duration, now: Instant) -> bool {
    now.duration_since(renewed) < renew_deadline
}

/// One candidate for the Lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Mutex<Option<Observation>>,
}

impl Elector {
    /// A candidate `identity` for Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: Mutex::new(None),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not read or take the leader Lease; retrying"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost: another holder
    /// took it, or no renewal succeeded within the renew deadline (the caller must stop
    /// acting then: the Lease may be taken once it expires).
    pub async fn hold(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            // A renewal counts from when it was sent (the Lease may say so from then on),
            // and it may take no longer than the time left before the renew deadline.
            let sent = Instant::now();
            let left = self
                .timing
                .renew_deadline
                .saturating_sub(sent.duration_since(renewed));
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = sent,
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "leadership lost to another candidate");
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "could not renew the leader Lease; retrying"),
                Err(_) => warn!(lease = %self.name, "renewing the leader Lease timed out"),
            }
            if !may_act(renewed, self.timing.renew_deadline, Instant::now()) {
                warn!(
                    lease = %self.name,
                    deadline = ?self.timing.renew_deadline,
                    "no renewal within the renew deadline; stepping down"
                );
                return;
            }
        }
    }

    /// Gives the Lease up (when this candidate holds it), so a successor need not wait for
    /// it to expire.
    pub async fn release(&self) {
        let released = async {
            let Some(mut lease) = self.get().await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.replace(&lease).await
        };
        match released.await {
            Ok(true) => info!(lease = %self.name, "released the leader Lease"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "could not release the leader Lease"),
        }
    }

    /// Runs one API call with the election's per-call timeout.
    async fn timed<T>(&self, action: &str, call: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(self.timing.retry.max(Duration::from_secs(2)), call)
            .await
            .map_err(|_| Error::Timeout(action.to_owned()))
    }

    async fn get(&self) -> Result<Option<Lease>> {
        self.timed("reading the leader Lease", self.api.get_opt(&self.name))
            .await?
            .map_err(kube_err("reading the leader Lease"))
    }

    /// Writes `lease` (with the resourceVersion read): false when another candidate wrote
    /// first.
    async fn replace(&self, lease: &Lease) -> Result<bool> {
        let params = PostParams::default();
        let write = self.api.replace(&self.name, &params, lease);
        match self.timed("updating the leader Lease", write).await? {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(kube_err("updating the leader Lease")(e)),
        }
    }

    fn observe(&self, record: Record, now: Instant) -> Observation {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some(o) if o.record == record => o.clone(),
            _ => {
                let fresh = Observation { record, since: now };
                *observed = Some(fresh.clone());
                fresh
            }
        }
    }

    /// One attempt: true when this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Instant::now();
        let seconds = i32::try_from(self.timing.lease.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.get().await? else {
            let stamp = Timestamp::now();
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(stamp)),
                    renew_time: Some(MicroTime(stamp)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let params = PostParams::default();
            let create = self.api.create(&params, &lease);
            return match self.timed("creating the leader Lease", create).await? {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(kube_err("creating the leader Lease")(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = Record {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            duration: spec.lease_duration_seconds,
        };
        let observation = self.observe(record.clone(), now);
        let mine = record.holder.as_deref() == Some(self.identity.as_str());
        let valid_for = record
            .duration
            .and_then(|d| u64::try_from(d).ok())
            .map_or(self.timing.lease, Duration::from_secs);
        if !mine && !expired(&record, observation.since, valid_for, now) {
            return Ok(false);
        }
        let stamp = Timestamp::now();
        if !mine {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(MicroTime(stamp));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(stamp));
        spec.lease_duration_seconds = Some(seconds);
        self.replace(&lease).await
    }
}

/// This replica's identity: the pod name when given, else the host name with a random
/// suffix (the process id is 1 in every container, so it tells nothing apart).
pub fn identity(pod_name: Option<&str>) -> String {
    match pod_name.filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "listacompra-operator".to_owned());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: Some("2026-01-01T00:00:00Z".to_owned()),
            duration: Some(15),
        }
    }

    #[test]
    fn expiry_is_measured_on_the_local_clock_from_the_first_sighting() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(15);
        let held = record(Some("a"));
        assert!(!expired(&held, t0, lease, t0 + Duration::from_secs(14)));
        assert!(expired(&held, t0, lease, t0 + Duration::from_secs(16)));
        // The remote renew time plays no part: a record seen just now is fresh, whatever
        // time it names (a skewed clock on the holder's machine changes nothing).
        assert!(!expired(
            &held,
            t0 + Duration::from_secs(20),
            lease,
            t0 + Duration::from_secs(21)
        ));
        assert!(
            expired(&record(None), t0, lease, t0),
            "a released Lease is free"
        );
        assert!(
            expired(&record(Some("")), t0, lease, t0),
            "an empty holder is free"
        );
    }

    #[test]
    fn a_leader_steps_down_before_anyone_may_take_over() {
        let timing = Timing::for_lease(Duration::from_secs(15));
        assert!(timing.renew_deadline < timing.lease);
        assert!(timing.retry < timing.renew_deadline);
        let t0 = Instant::now();
        assert!(may_act(
            t0,
            timing.renew_deadline,
            t0 + Duration::from_secs(9)
        ));
        assert!(!may_act(
            t0,
            timing.renew_deadline,
            t0 + Duration::from_secs(10)
        ));
    }

    #[test]
    fn identities_differ_between_replicas_without_a_pod_name() {
        assert_eq!(identity(Some("operator-7d9f")), "operator-7d9f");
        let a = identity(None);
        assert_ne!(a, identity(None));
        assert_ne!(identity(Some("")), "");
    }
}
