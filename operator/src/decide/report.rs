//! The conditions (Progressing, Ready, Available, Reconciling, Stalled, RolledBack) and the
//! phase-change Event that follow from where the machine ended.

use listacompra_crds::Phase;
use listacompra_crds::status::condition;

use super::machine::Machine;
use super::*;
use crate::conditions;

impl Machine<'_, '_> {
    pub(super) fn finish(mut self) -> Decision {
        let phase = self.status.phase.unwrap_or(Phase::Pending);
        let version = self.version().to_owned();
        let stable = self.status.stable_version.clone();
        let (progressing, p_reason, p_message) = match (&self.hold, phase) {
            (Some((reason, message)), _) => (false, *reason, message.clone()),
            (None, _) if let Some((reason, message)) = &self.waiting => {
                (true, *reason, message.clone())
            }
            (None, Phase::Succeeded) => {
                (false, "ReleaseSucceeded", format!("{version} is released"))
            }
            (None, Phase::RolledBack) => {
                (false, "RolledBack", format!("{version} was rolled back"))
            }
            (None, Phase::Failed) => (
                false,
                "ReleaseFailed",
                format!("the release of {version} failed"),
            ),
            (None, Phase::RollingBack) => {
                (true, "RollingBack", format!("rolling back from {version}"))
            }
            (None, p) => (true, phase_name(p), format!("releasing {version}")),
        };
        self.set_condition(condition::PROGRESSING, progressing, p_reason, p_message);

        // Ready: the desired version serves (kstatus reads Ready=False as not yet Current).
        // A Succeeded release rotating Secrets is in flight too (waiting says so).
        let in_flight = matches!(
            phase,
            Phase::Pending
                | Phase::AwaitingApproval
                | Phase::Migrating
                | Phase::RollingOut
                | Phase::Verifying
                | Phase::RollingBack
                | Phase::Restoring
        ) || (phase == Phase::Succeeded && self.waiting.is_some());
        // A new version (or retry token, or image) applied during a rollback starts once the
        // rollback ends: the outcome of the attempt before it is not the spec's verdict, so
        // kstatus consumers (Helm --wait, Flux) keep waiting instead of reading it as Failed.
        let next_attempt_waits = !self.status.describes(self.spec());
        let in_flight = in_flight || next_attempt_waits;
        // Until a rotation passes again, the pods of a failed one are not known to be good.
        let rotation_failed = phase == Phase::Succeeded
            && conditions::get(&self.status.conditions, condition::DEGRADED)
                .is_some_and(|c| c.status == "True" && c.reason == rotating::ROTATION_FAILED);
        let (ready, r_reason, r_message) = match phase {
            Phase::Succeeded if rotation_failed => (
                false,
                rotating::ROTATION_FAILED,
                format!("{version}'s pods failed their health gate after a Secret changed"),
            ),
            Phase::Succeeded => (true, "Serving", format!("{version} serves")),
            Phase::RolledBack => (
                false,
                "RolledBack",
                format!(
                    "{version} failed and was rolled back; {} serves",
                    stable.as_deref().unwrap_or("the stable version")
                ),
            ),
            Phase::Failed => (
                false,
                "ReleaseFailed",
                format!("the release of {version} failed"),
            ),
            Phase::Restoring => (
                false,
                "Restoring",
                "the database is restored (see status.restore)".to_owned(),
            ),
            _ => (false, "Releasing", format!("{version} is not released yet")),
        };
        self.set_condition(condition::READY, ready, r_reason, r_message);

        // Available: some version serves, the desired one or the stable one.
        let stable_failed_smoke = conditions::get(&self.status.conditions, condition::DEGRADED)
            .is_some_and(|c| c.status == "True" && c.reason == SMOKE_FAILED_AFTER_ROLLBACK);
        let (available, a_reason, a_message) = match (phase, &stable) {
            (Phase::Restoring, _)
                if self.traffic_held
                    || !self.workload.as_ref().is_some_and(|w| self.is_serving(w)) =>
            {
                (
                    false,
                    "Restoring",
                    "the API and the worker are stopped while the database is restored".to_owned(),
                )
            }
            (Phase::Succeeded, _) => (true, "Serving", format!("{version} serves")),
            (Phase::Failed, Some(s)) if stable_failed_smoke => (
                true,
                "StableServing",
                format!("{s} serves again (rolled back) but failed its smoke test"),
            ),
            (Phase::Failed, _) => (
                false,
                "ReleaseFailed",
                "the release failed and nothing was rolled back".to_owned(),
            ),
            (_, Some(s)) => (true, "StableServing", format!("{s} serves")),
            (_, None) => (
                false,
                "NotYetServing",
                "no version has passed the gates yet".to_owned(),
            ),
        };
        self.set_condition(condition::AVAILABLE, available, a_reason, a_message);

        // kstatus (Flux, Helm --wait, cli-utils): Reconciling while an attempt is in flight
        // and moving; Stalled once it ended failed or waits for a person, until the spec
        // changes. A spec pause is neither: the release is simply not done.
        let held_for_person = self
            .hold
            .as_ref()
            .is_some_and(|(reason, _)| *reason != "Paused");
        let (reconciling, c_reason, c_message) = match &self.hold {
            None if in_flight => match &self.waiting {
                Some((reason, message)) => (true, *reason, message.clone()),
                None => (true, phase_name(phase), format!("releasing {version}")),
            },
            Some((reason, message)) if in_flight && !held_for_person => {
                (false, *reason, message.clone())
            }
            _ => (false, "Settled", "no release in flight".to_owned()),
        };
        self.set_condition(condition::RECONCILING, reconciling, c_reason, c_message);
        let degraded = conditions::get(&self.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()));
        let (stalled, s_reason, s_message) = match (phase, &self.hold, degraded) {
            _ if next_attempt_waits => (
                false,
                "NotStalled".to_owned(),
                format!("{version} starts once the attempt before it has ended"),
            ),
            // Named with the version and the outcome: Helm --wait and Flux print this message
            // alone.
            (Phase::RolledBack, _, Some((reason, message))) => (
                true,
                reason,
                format!(
                    "{} rolled back to {}: {message}",
                    failed_version(&self.status, &version),
                    stable.as_deref().unwrap_or("the stable version")
                ),
            ),
            (Phase::Failed, _, Some((reason, message))) => (
                true,
                reason,
                format!(
                    "{} failed: {message}",
                    failed_version(&self.status, &version)
                ),
            ),
            (Phase::RolledBack | Phase::Failed, _, None) => (
                true,
                phase_name(phase).to_owned(),
                format!("the release of {version} ended {}", phase_name(phase)),
            ),
            (_, Some((reason, message)), _) if held_for_person => {
                (true, (*reason).to_owned(), message.clone())
            }
            _ => (
                false,
                "NotStalled".to_owned(),
                "nothing blocks the release".to_owned(),
            ),
        };
        // A release stalled on a missing reference or someone else's object goes on by itself.
        let s_message = if stalled && !SELF_CLEARING.contains(&s_reason.as_str()) {
            format!("{s_message}{STALLED_HINT}")
        } else {
            s_message
        };
        self.set_condition(condition::STALLED, stalled, &s_reason, s_message);

        let rolled_back = phase == Phase::RolledBack;
        let rb_message = if rolled_back {
            format!(
                "{version} was rolled back to {}",
                stable.clone().unwrap_or_default()
            )
        } else {
            "no rollback in effect".to_owned()
        };
        self.set_condition(
            condition::ROLLED_BACK,
            rolled_back,
            if rolled_back {
                "RolledBack"
            } else {
                "NotRolledBack"
            },
            rb_message,
        );
        if conditions::get(&self.status.conditions, condition::DEGRADED).is_none() {
            self.set_condition(
                condition::DEGRADED,
                false,
                "NoFailure",
                "no release has failed",
            );
        }
        if conditions::get(&self.status.conditions, condition::MIGRATIONS_APPLIED).is_none() {
            self.set_condition(
                condition::MIGRATIONS_APPLIED,
                false,
                "NotMigrated",
                "no migration has run yet",
            );
        }

        if self.o.status.phase != self.status.phase {
            let warning = matches!(
                phase,
                Phase::RollingBack | Phase::RolledBack | Phase::Failed
            );
            let from = self.o.status.phase.map_or("none", phase_name);
            if !self.notes.iter().any(|n| n.reason == phase_name(phase)) {
                self.note(
                    warning,
                    phase_name(phase),
                    format!("{from} → {} ({version})", phase_name(phase)),
                );
            }
        }
        Decision {
            status: self.status,
            workload: self.workload,
            actions: self.actions,
            notes: self.notes,
            requeue_after: self.requeue_after,
            refusals: self.refusals,
            restore_waits: self.restore_waits,
            hold_traffic: self.traffic_held,
        }
    }
}

/// The version whose attempt failed (the spec's, for a status from before it was recorded).
fn failed_version<'s>(status: &'s ListaCompraReleaseStatus, version: &'s str) -> &'s str {
    status.failed_version.as_deref().unwrap_or(version)
}
