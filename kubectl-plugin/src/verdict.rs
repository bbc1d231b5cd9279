//! What a release's status says about its current attempt: still going, or its verdict.
//! Pure: `status` and `get` read releases through it.

use listacompra_crds::status::condition;
use listacompra_crds::{ListaCompraRelease, Phase};

/// Where the attempt for the current spec stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The operator has not taken up the current spec yet (a new version, retry token or
    /// other edit not yet observed).
    NotObserved,
    /// The attempt is going on (or waits: approvals, references, a pause, a held analysis).
    InFlight,
    /// The version passed every gate and serves.
    Succeeded,
    /// The version failed and the stable one serves again.
    RolledBack {
        /// CamelCase reason of the failure, e.g. `KpiBreached`.
        reason: String,
        /// What failed, e.g. the KPI and its value.
        message: String,
    },
    /// The version failed and could not be rolled back.
    Failed {
        /// CamelCase reason.
        reason: String,
        /// What failed.
        message: String,
    },
}

impl Verdict {
    /// Reads the verdict of `release`'s current spec.
    pub fn of(release: &ListaCompraRelease) -> Self {
        let Some(status) = release.status.as_ref().filter(|_| observed(release)) else {
            return Self::NotObserved;
        };
        let degraded = condition_of(release, condition::DEGRADED)
            .map(|(_, reason, message)| (reason, message))
            .unwrap_or_default();
        let stalled = condition_of(release, condition::STALLED).filter(|(on, ..)| *on);
        let ready = condition_of(release, condition::READY).is_some_and(|(on, ..)| on);
        let reconciling = condition_of(release, condition::RECONCILING).is_some_and(|(on, ..)| on);
        match status.phase {
            // Succeeded, serving and settled (as kstatus reads Current); a Secret rotation
            // that failed after it (Stalled) is a failure to report, one still rolling
            // (Reconciling) is still going.
            Some(Phase::Succeeded) => match stalled {
                Some((_, reason, message)) => Self::Failed { reason, message },
                None if ready && !reconciling => Self::Succeeded,
                None => Self::InFlight,
            },
            Some(Phase::RolledBack) => Self::RolledBack {
                reason: degraded.0,
                message: degraded.1,
            },
            Some(Phase::Failed) => Self::Failed {
                reason: degraded.0,
                message: degraded.1,
            },
            _ => Self::InFlight,
        }
    }
}

/// Whether a change of the spec the operator has not taken up yet may start a new attempt
/// (a new version, retry token or image; before the launch, any change of the spec: it
/// starts the attempt over), so that a command naming the current attempt (an abort, an
/// approval) would name one about to be replaced. A pause or resume later on does not.
pub fn new_attempt_pending(release: &ListaCompraRelease) -> bool {
    let Some(status) = &release.status else {
        return true;
    };
    let unobserved = status.observed_generation.unwrap_or_default()
        < release.metadata.generation.unwrap_or_default();
    let unlaunched = matches!(
        status.phase,
        None | Some(Phase::Pending | Phase::AwaitingApproval)
    );
    !status.describes(&release.spec) || (unobserved && unlaunched)
}

/// Whether the operator has taken up the current spec: it observed the generation, and the
/// status is about the attempt for this version, retry token and image (during a rollback
/// the operator observes a newer spec but starts its attempt only after).
pub fn observed(release: &ListaCompraRelease) -> bool {
    release.status.as_ref().is_some_and(|status| {
        status.observed_generation.unwrap_or_default()
            >= release.metadata.generation.unwrap_or_default()
            && status.describes(&release.spec)
    })
}

/// One line of progress, printed by `status` when it changes: the phase and what the
/// release says it does or waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The phase, or `-` before the first status.
    pub phase: String,
    /// The Reconciling (or, when stalled, the Stalled) message.
    pub detail: String,
    /// The release waits for a person (Stalled=True).
    pub stalled: bool,
}

impl Step {
    /// The step `release` is at.
    pub fn of(release: &ListaCompraRelease) -> Self {
        let status = release.status.clone().unwrap_or_default();
        let phase = status
            .phase
            .map_or_else(|| "-".to_owned(), |p| format!("{p:?}"));
        if !observed(release) {
            return Self {
                phase: "Waiting".to_owned(),
                detail: format!(
                    "the operator has not taken up {} yet (the status is of {} {phase})",
                    release.spec.version,
                    status.current_version.as_deref().unwrap_or("no version")
                ),
                stalled: false,
            };
        }
        let stalled = condition_of(release, condition::STALLED).filter(|(on, ..)| *on);
        let reconciling = condition_of(release, condition::RECONCILING).filter(|(on, ..)| *on);
        let ready = condition_of(release, condition::READY);
        let (stalled, detail) = match (stalled, reconciling, ready) {
            (Some((_, reason, message)), ..) => (true, format!("{reason}: {message}")),
            (None, Some((_, _, message)), _) | (None, None, Some((_, _, message))) => {
                (false, message)
            }
            (None, None, None) => (false, String::new()),
        };
        Self {
            phase,
            detail,
            stalled,
        }
    }
}

/// `(status is True, reason, message)` of a condition, if the release has it.
pub fn condition_of(release: &ListaCompraRelease, type_: &str) -> Option<(bool, String, String)> {
    release
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()))
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;
    use listacompra_crds::ListaCompraReleaseStatus;

    use super::*;

    /// A release of `version` at generation 3, its spec from the staging sample.
    pub(crate) fn release(version: &str) -> ListaCompraRelease {
        let sample = include_str!("../../config/samples/staging.yaml");
        let mut release: ListaCompraRelease =
            serde_yaml_ng::from_str(sample).expect("the staging sample parses");
        release.spec.version = version.to_owned();
        release.metadata.generation = Some(3);
        release
    }

    pub(crate) fn with_condition(
        release: &mut ListaCompraRelease,
        type_: &str,
        on: bool,
        reason: &str,
        message: &str,
    ) {
        let status = release.status.get_or_insert_with(Default::default);
        status.conditions.retain(|c| c.type_ != type_);
        status.conditions.push(Condition {
            type_: type_.to_owned(),
            status: if on { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: Some(3),
        });
    }

    pub(crate) fn at(release: &mut ListaCompraRelease, phase: Phase, version: &str) {
        let status = release
            .status
            .get_or_insert_with(ListaCompraReleaseStatus::default);
        status.phase = Some(phase);
        status.observed_generation = Some(3);
        status.current_version = Some(version.to_owned());
        status.attempt = Some(2);
    }

    #[test]
    fn a_spec_not_yet_observed_has_no_verdict() {
        let mut lc = release("1.1.0");
        assert_eq!(Verdict::of(&lc), Verdict::NotObserved);
        // The status still describes the earlier version's success.
        at(&mut lc, Phase::Succeeded, "1.0.0");
        assert_eq!(Verdict::of(&lc), Verdict::NotObserved);
        // The operator saw an older generation.
        at(&mut lc, Phase::Succeeded, "1.1.0");
        lc.status.as_mut().expect("status").observed_generation = Some(2);
        assert_eq!(Verdict::of(&lc), Verdict::NotObserved);
        // A new retry token not yet taken up.
        at(&mut lc, Phase::RolledBack, "1.1.0");
        lc.spec.retry_token = Some("again".into());
        assert_eq!(Verdict::of(&lc), Verdict::NotObserved);
        // A new digest under the same version, observed during a rollback but not started.
        lc.spec.retry_token = None;
        let status = lc.status.as_mut().expect("status");
        status.current_image = Some(lc.spec.image.reference("1.1.0"));
        assert_ne!(Verdict::of(&lc), Verdict::NotObserved);
        lc.spec.image.digest = Some(format!("sha256:{}", "b".repeat(64)));
        assert_eq!(Verdict::of(&lc), Verdict::NotObserved);
        assert_eq!(Step::of(&lc).phase, "Waiting");
    }

    #[test]
    fn the_verdict_follows_the_phase_and_names_the_reason() {
        let mut lc = release("1.1.0");
        at(&mut lc, Phase::Verifying, "1.1.0");
        assert_eq!(Verdict::of(&lc), Verdict::InFlight);
        at(&mut lc, Phase::RolledBack, "1.1.0");
        with_condition(
            &mut lc,
            condition::DEGRADED,
            true,
            "KpiBreached",
            "KPI p95-latency-ms (912 > max 350)",
        );
        assert_eq!(
            Verdict::of(&lc),
            Verdict::RolledBack {
                reason: "KpiBreached".into(),
                message: "KPI p95-latency-ms (912 > max 350)".into()
            }
        );
        at(&mut lc, Phase::Succeeded, "1.1.0");
        assert_eq!(
            Verdict::of(&lc),
            Verdict::InFlight,
            "not Ready yet: a rotation rolls"
        );
        with_condition(&mut lc, condition::READY, true, "Succeeded", "1.1.0 serves");
        assert_eq!(Verdict::of(&lc), Verdict::Succeeded);
        with_condition(
            &mut lc,
            condition::RECONCILING,
            true,
            "Rotating",
            "rolling the pods with a rotated Secret",
        );
        assert_eq!(
            Verdict::of(&lc),
            Verdict::InFlight,
            "a rotation still rolls"
        );
        with_condition(
            &mut lc,
            condition::RECONCILING,
            false,
            "Settled",
            "no release in flight",
        );
        assert_eq!(Verdict::of(&lc), Verdict::Succeeded);
        with_condition(
            &mut lc,
            condition::STALLED,
            true,
            "SecretRotationFailed",
            "the health gate failed",
        );
        assert_eq!(
            Verdict::of(&lc),
            Verdict::Failed {
                reason: "SecretRotationFailed".into(),
                message: "the health gate failed".into()
            }
        );
    }

    #[test]
    fn a_step_shows_the_stall_before_the_progress() {
        let mut lc = release("1.1.0");
        at(&mut lc, Phase::Pending, "1.1.0");
        with_condition(
            &mut lc,
            condition::RECONCILING,
            true,
            "WaitingForReferences",
            "Secret db is missing",
        );
        let step = Step::of(&lc);
        assert_eq!(
            (step.phase.as_str(), step.detail.as_str(), step.stalled),
            ("Pending", "Secret db is missing", false)
        );
        with_condition(
            &mut lc,
            condition::STALLED,
            true,
            "ReferencesMissing",
            "Secret db is missing past the deadline",
        );
        let step = Step::of(&lc);
        assert!(step.stalled);
        assert_eq!(
            step.detail,
            "ReferencesMissing: Secret db is missing past the deadline"
        );
    }
}
