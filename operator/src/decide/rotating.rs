//! Secret rotation: when a Secret the API pods consume changes (the controller fingerprints
//! their names and resourceVersions, see [`Observed::secrets_version`]), the pods of the
//! version that serves are rolled with it. A Succeeded release verifies the rolled pods with
//! the health gate alone — no migration, no smoke test, no KPI analysis — while its phase
//! stays Succeeded and Reconciling says so. A failed rotation cannot be rolled back (the old
//! values are gone): the release is Degraded and Stalled until the Secret changes again or a
//! new attempt starts. The stable pods of a RolledBack release, or of one whose new attempt
//! waits to launch (approvals, references, alerts), are rolled at once, without a gate; an
//! attempt in flight stamps the fingerprint of the moment it rolls out, and a change after
//! that is rotated once it has succeeded.

use k8s_openapi::jiff::SignedDuration;
use listacompra_crds::status::{SecretsRotation, condition};

use super::machine::Machine;
use super::*;
use crate::gates::health::{self, HealthVerdict};

/// Reconciling reason while the rotated pods roll and are checked.
const ROTATING: &str = "RotatingSecrets";
/// Degraded and Stalled reason (and Event) of a rotation that failed.
pub(super) const ROTATION_FAILED: &str = "SecretRotationFailed";

impl Machine<'_, '_> {
    /// The fingerprint of the Secrets as observed now, when it differs from the one the pods
    /// were stamped with.
    fn secrets_changed(&self) -> Option<String> {
        let observed = self.o.secrets_version.as_ref()?;
        (self.status.secrets_version.as_ref() != Some(observed)).then(|| observed.clone())
    }

    /// Why the pods roll (for the Event), before the new fingerprint is recorded.
    fn why_rotated(&self) -> &'static str {
        if self.status.secrets_version.is_none() {
            "the Secrets the API pods consume are fingerprinted for the first time"
        } else {
            "a Secret the API pods consume changed"
        }
    }

    /// Stamps the observed fingerprint on what an attempt rolls out.
    pub(super) fn stamp_secrets(&mut self) {
        if let Some(observed) = &self.o.secrets_version {
            self.status.secrets_version = Some(observed.clone());
        }
    }

    /// Succeeded: the target serves; a changed Secret rolls its pods, verified by the
    /// health gate.
    pub(super) fn serving_target(&mut self) {
        if let Some(observed) = self.secrets_changed()
            && !self.spec().paused
        {
            self.start_rotation(observed);
        }
        let target = self.target();
        let Some(rotation) = self.status.rotation.clone() else {
            return self.settled(Some(target));
        };
        if let Some(failure) = rotation.failure {
            self.workload = Some(target);
            return self.set_hold(ROTATION_FAILED, failure);
        }
        if rotation.completion_time.is_some() {
            return self.settled(Some(target));
        }
        if self.spec().paused {
            // Paused mid-rotation: hold where it stands (its clock stopped), check nothing.
            self.workload = Some(target);
            return self.pause();
        }
        self.rotate(rotation);
    }

    /// RolledBack: the stable pods are rolled with a changed Secret at once (no gate: the
    /// release already failed and waits for a person).
    pub(super) fn serving_stable(&mut self) {
        self.rotate_stable_at_once("the release is RolledBack");
        self.settled(self.stable());
    }

    /// The stable version serves while the release is not verifying anything (RolledBack,
    /// or a new attempt waiting to launch, perhaps for days): a changed Secret is stamped
    /// at once, so its pods are rolled with it without a gate.
    pub(super) fn rotate_stable_at_once(&mut self, why_ungated: &str) {
        let Some(observed) = self.secrets_changed().filter(|_| !self.spec().paused) else {
            return;
        };
        let why = self.why_rotated();
        self.status.secrets_version = Some(observed);
        let stable = self
            .status
            .stable_version
            .clone()
            .unwrap_or_else(|| "the stable version".to_owned());
        self.note(
            false,
            "SecretsRotated",
            format!("{why}: {stable}'s pods are rolled with them, without a gate ({why_ungated})"),
        );
    }

    fn start_rotation(&mut self, observed: String) {
        let why = self.why_rotated();
        self.status.secrets_version = Some(observed.clone());
        // A Secret written again before the last rotation ended restarts its roll, not its
        // clock: the deadline still counts from the first change.
        let start_time = self
            .status
            .rotation
            .as_ref()
            .filter(|r| r.completion_time.is_none())
            .map_or_else(|| self.now.clone(), |r| r.start_time.clone());
        self.status.rotation = Some(SecretsRotation {
            version: self.version().to_owned(),
            secrets_version: observed,
            start_time,
            health: None,
            completion_time: None,
            failure: None,
        });
        self.note(
            false,
            "SecretsRotated",
            format!(
                "{why}: rolling {}'s pods with them (health gate only, no migration)",
                self.version()
            ),
        );
    }

    fn rotate(&mut self, mut rotation: SecretsRotation) {
        let target = self.target();
        self.workload = Some(target.clone());
        let version = self.version().to_owned();
        let deadline = rotation.start_time.0 + seconds(self.spec().progress_deadline_seconds);
        if self.o.now >= deadline {
            return self.fail_rotation(
                rotation,
                format!(
                    "{version}'s pods rolled with the rotated Secrets were not healthy within {}s",
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        if let Some(message) = self.o.workload.stalled.clone() {
            return self.fail_rotation(
                rotation,
                format!(
                    "the Deployment of {version} stalled rolling the rotated Secrets: {message}"
                ),
            );
        }
        if !self.is_serving(&target) {
            self.waiting = Some((
                ROTATING,
                format!("rolling {version}'s pods with the rotated Secrets"),
            ));
            self.status.rotation = Some(rotation);
            return self.wait();
        }
        let mut progress = rotation.health.clone().unwrap_or_default();
        if let Some(outcome) = &self.o.health_check {
            let (next, verdict) =
                health::record(&progress, outcome, &self.spec().health, self.now.clone());
            let message = next.message.clone().unwrap_or_default();
            rotation.health = Some(next.clone());
            progress = next;
            match verdict {
                HealthVerdict::Failed => {
                    return self.fail_rotation(
                        rotation,
                        format!(
                            "the health gate of {version}'s pods rolled with the rotated Secrets failed: {message}"
                        ),
                    );
                }
                HealthVerdict::Passed => {
                    rotation.completion_time = Some(self.now.clone());
                    self.status.rotation = Some(rotation);
                    if conditions::get(&self.status.conditions, condition::DEGRADED)
                        .is_some_and(|c| c.reason == ROTATION_FAILED)
                    {
                        self.set_condition(
                            condition::DEGRADED,
                            false,
                            "SecretsRotated",
                            format!(
                                "{version}'s pods passed the health gate with the rotated Secrets"
                            ),
                        );
                    }
                    self.note(
                        false,
                        "SecretRotationVerified",
                        format!("{version}'s pods rolled with the rotated Secrets passed the health gate: {message}"),
                    );
                    return self.settled(Some(target));
                }
                HealthVerdict::Pending => {}
            }
        }
        // Every pod is updated and available: the checks begin (at once) or go on.
        let first = progress.last_check_time.is_none();
        rotation.health = Some(progress);
        self.status.rotation = Some(rotation);
        self.waiting = Some((
            ROTATING,
            format!("checking the health of {version}'s pods rolled with the rotated Secrets"),
        ));
        self.requeue_in(if first {
            SignedDuration::ZERO
        } else {
            seconds(self.spec().health.interval_seconds)
        });
    }

    fn fail_rotation(&mut self, mut rotation: SecretsRotation, message: String) {
        let message = format!(
            "{message}; nothing to roll back to (the old values are gone): fix the Secret, and its next change starts another rotation"
        );
        rotation.completion_time = Some(self.now.clone());
        rotation.failure = Some(message.clone());
        self.status.rotation = Some(rotation);
        self.set_condition(condition::DEGRADED, true, ROTATION_FAILED, message.clone());
        self.note(true, ROTATION_FAILED, message.clone());
        self.workload = Some(self.target());
        self.set_hold(ROTATION_FAILED, message);
    }
}

/// Whether a rotation's health check is due (its pods rolled, its gate not passed, the
/// release not paused).
pub(super) fn health_due(
    spec: &ListaCompraReleaseSpec,
    status: &ListaCompraReleaseStatus,
    now: Timestamp,
) -> bool {
    status
        .rotation
        .as_ref()
        .filter(|r| r.completion_time.is_none())
        .and_then(|r| r.health.as_ref())
        .is_some_and(|progress| !spec.paused && health::due(progress, &spec.health, now))
}
