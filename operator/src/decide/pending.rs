//! Starting an attempt (a new version, a new retry token, or a return to an earlier
//! version) and the Pending phase, which (once approved, see `approving`) launches the
//! migration or the rollout.

use listacompra_crds::Phase;
use listacompra_crds::status::{Outcome, condition};

use super::machine::Machine;
use super::*;
use crate::conditions;

impl Machine<'_, '_> {
    /// Starts a new attempt; one in flight is superseded (by a new target, or `restarted`
    /// with a reason and a message when its spec changed before it launched).
    pub(super) fn start_release(&mut self, restarted: Option<(&str, String)>) {
        if advancing(self.status.phase) {
            let superseded = self.status.current_version.clone().unwrap_or_default();
            let (reason, message) = restarted.map_or_else(
                || ("Superseded", format!("superseded by {}", self.version())),
                |(reason, message)| (reason, message),
            );
            self.push_history(
                Outcome::Superseded,
                Some(reason.to_owned()),
                Some(message.clone()),
            );
            self.note(
                false,
                reason,
                format!(
                    "release of {superseded} (attempt {}) {message}",
                    self.attempt()
                ),
            );
            if let (Some(name), JobState::Running) =
                (self.status.migration_job.clone(), &self.o.migration_job)
            {
                self.actions.push(Action::DeleteJob { name });
            }
            self.stop_snapshot();
            self.stop_smoke_test(&format!("superseded by {}", self.version()));
        }
        let s = &mut self.status;
        s.phase = Some(Phase::Pending);
        s.attempt = Some(s.attempt.unwrap_or(0) + 1);
        s.current_version = Some(self.o.spec.version.clone());
        s.current_image = Some(self.o.spec.image.reference(&self.o.spec.version));
        s.observed_retry_token = self.o.spec.retry_token.clone();
        s.attempt_start_time = Some(self.now.clone());
        s.release_start_time = Some(self.now.clone());
        s.paused_since = None;
        s.migration_job = None;
        s.revert_job = None;
        s.verification_start_time = None;
        s.approvals = Vec::new();
        s.health = None;
        s.smoke_test = None;
        s.last_analysis = None;
        // A rotation is part of a settled release: a new attempt rolls out every Secret anew.
        s.rotation = None;
        self.hold = None;
        let stable = self
            .status
            .stable_version
            .clone()
            .unwrap_or_else(|| "none".to_owned());
        self.set_condition(
            condition::DEGRADED,
            false,
            "Releasing",
            format!("releasing {}", self.version()),
        );
        self.note(
            false,
            "ReleaseStarted",
            format!("releasing {} (stable: {stable})", self.version()),
        );
    }

    pub(super) fn pending(&mut self) {
        // A pause before the approvals are complete leaves the release where it waits.
        if self.status.phase != Some(Phase::AwaitingApproval) {
            self.status.phase = Some(Phase::Pending);
        }
        if self.spec().paused {
            return self.pause();
        }
        if !self.approved() {
            return;
        }
        if self.status.phase == Some(Phase::AwaitingApproval) {
            // Approved now: what comes next (waiting for references included) is timed from
            // here, not from the start of a wait that may have taken days.
            self.status.phase = Some(Phase::Pending);
            self.status.release_start_time = Some(self.now.clone());
        }
        if !self.o.missing.is_empty() {
            return self.wait_for_references();
        }
        if !self.preflight_clear() {
            return;
        }
        // Something is launched now: the deadline counts from here, not from the time spent
        // waiting for references or for alerts to resolve.
        self.status.release_start_time = Some(self.now.clone());
        match self.schema_target() {
            Some(revision) => self.launch_migration(revision),
            None => {
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    true,
                    "MigrationsDisabled",
                    "migrations are disabled for this release",
                );
                self.start_rollout();
            }
        }
    }

    /// Launches nothing while something the spec names is missing: Reconciling says what,
    /// an Event tells it once, and the release polls until it appears. Past the deadline it
    /// is Stalled (so Flux or Helm `--wait` stop waiting), and it still starts by itself.
    fn wait_for_references(&mut self) {
        let what = self
            .o
            .missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.wait_outside(
            WAITING_FOR_REFERENCES,
            REFERENCES_MISSING,
            format!("waiting for {what} to exist before launching anything"),
        );
    }

    /// Waits for something outside the release's control, launching nothing: Reconciling
    /// (reason `waiting`) says what, and past the deadline Stalled (reason `stalled`, which
    /// clears by itself: see `SELF_CLEARING`). A warning Event with reason `stalled` tells each
    /// new message once; the release looks again every `RECHECK`.
    pub(super) fn wait_outside(
        &mut self,
        waiting: &'static str,
        stalled: &'static str,
        message: String,
    ) {
        let before = |type_: &str| {
            conditions::get(&self.o.status.conditions, type_)
                .map(|c| (c.reason.clone(), c.message.clone()))
        };
        if self.deadline_passed() {
            let message = format!(
                "{message}; for more than {}s, the release goes on by itself once this clears",
                self.spec().progress_deadline_seconds
            );
            if before(condition::STALLED) != Some((stalled.to_owned(), message.clone())) {
                self.note(true, stalled, message.clone());
            }
            self.set_hold(stalled, message);
        } else {
            if before(condition::RECONCILING) != Some((waiting.to_owned(), message.clone())) {
                self.note(true, stalled, message.clone());
            }
            self.waiting = Some((waiting, message));
        }
        self.hold_stable_while_waiting();
        self.requeue_in(RECHECK);
    }
}
