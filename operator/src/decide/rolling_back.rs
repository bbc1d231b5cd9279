//! Failure and RollingBack: the workload goes back to the stable version and the schema to
//! the revision it needs, each with a deadline; without a stable version the release fails.

use listacompra_crds::Phase;
use listacompra_crds::status::{Outcome, condition};

use super::machine::Machine;
use super::smoke::SmokeGate;
use super::*;
use crate::conditions;
use crate::naming::{self, JobPurpose};

/// What the migration tool's refusal of an irreversible down step starts with (the API
/// server's `Error::IrreversibleMigration`).
pub const IRREVERSIBLE: &str = "IrreversibleMigration:";
/// MigrationsApplied reason while the schema stays at a revision that cannot be reverted.
pub(super) const SCHEMA_KEPT: &str = "IrreversibleSchemaKept";

/// The migration tool's refusal, from a failed Job's reason: its first sentence (the
/// revision and what reverting it loses; the rest is advice the release says in its terms).
pub(super) fn refusal(why: &str) -> String {
    why.lines()
        .rev()
        .find_map(|l| l.find(IRREVERSIBLE).map(|at| &l[at..]))
        .map_or(why, |l| l.split_once(". ").map_or(l, |(first, _)| first))
        .to_owned()
}

impl Machine<'_, '_> {
    /// The release failed for `reason`: roll back when allowed and possible, else stop.
    pub(super) fn fail(&mut self, reason: &str, message: String) {
        let automatic = self.spec().rollback.automatic;
        self.end_attempt(reason, message, automatic);
    }

    /// Ends the attempt for `reason`: rolls back when `roll_back` and there is a stable
    /// version, else stops (Failed). A gate's failure rolls back when `rollback.automatic`;
    /// an abort always does (a person asked for it).
    pub(super) fn end_attempt(&mut self, reason: &str, message: String, roll_back: bool) {
        self.status.failed_version = Some(self.version().to_owned());
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        let stable = self.status.stable_version.clone();
        if let (true, Some(stable)) = (roll_back, &stable) {
            self.note(true, reason, format!("{message}; rolling back to {stable}"));
            self.status.phase = Some(Phase::RollingBack);
            return self.rolling_back();
        }
        let why = if stable.is_none() {
            "no stable version to roll back to"
        } else {
            "automatic rollback is off"
        };
        let message = format!("{message}; {why}");
        self.stop_smoke_test("the release failed");
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        self.note(true, reason, message.clone());
        self.push_history(Outcome::Failed, Some(reason.to_owned()), Some(message));
        self.status.phase = Some(Phase::Failed);
        // Leave the Deployment as it is for a person to act on.
        self.workload = None;
    }

    pub(super) fn rolling_back(&mut self) {
        let Some(stable) = self.stable() else {
            return self.fail(
                "NoStableVersion",
                "rollback started without a stable version".to_owned(),
            );
        };
        let stable_schema = self.status.stable_schema_version;
        let revert_needed = self.spec().rollback.revert_schema
            && self.status.migration_job.is_some()
            && stable_schema.is_some()
            && self.status.schema_version != stable_schema
            && !self.schema_kept();
        // The rollback's own deadline applies only while it still waits: a reconcile that
        // comes late (after a restart or a backoff) and finds it complete finishes it.
        let revert_done =
            self.status.revert_job.is_some() && self.o.revert_job == JobState::Succeeded;
        let smoke_needed = self
            .spec()
            .smoke_test
            .as_ref()
            .is_some_and(|s| s.after_rollback);
        let smoke_done = self.smoke_test_ended(&stable, JobPurpose::SmokeStable);
        let complete = self.is_serving(&stable)
            && (!revert_needed || revert_done)
            && (!smoke_needed || smoke_done);
        if !smoke_needed {
            self.stop_smoke_test("no smoke test after this rollback (smokeTest.afterRollback)");
        }
        if !complete && self.rollback_deadline_passed() {
            self.stop_smoke_test("the rollback deadline passed");
            let waiting = if self.is_serving(&stable) && (!revert_needed || revert_done) {
                format!("the smoke test of {} had not finished", stable.version)
            } else if let (None, Some(job), JobState::Running) = (
                &self.status.revert_job,
                &self.status.migration_job,
                &self.o.migration_job,
            ) {
                format!("the stopped migration Job {job} and its pods were still being deleted")
            } else if self.status.revert_job.is_some() {
                format!(
                    "the schema revert Job {} had not finished",
                    self.status.revert_job.clone().unwrap_or_default()
                )
            } else {
                format!("{} did not become available", stable.version)
            };
            return self.abort_rollback(
                "RollbackTimedOut",
                format!(
                    "the rollback to {} did not finish within {}s: {waiting}",
                    stable.version,
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        // When the failing version declares it runs on the stable schema, revert the schema
        // while it still serves, then roll the workload back; otherwise the other way round.
        let schema_first = revert_needed
            && stable_schema.is_some_and(|s| {
                self.spec()
                    .migrations
                    .min_schema_version
                    .or(self.schema_target())
                    .is_some_and(|min| min <= s)
            });
        if schema_first {
            if !self.revert_schema(stable_schema.unwrap_or_default()) {
                return;
            }
            self.workload = Some(stable.clone());
        } else {
            self.workload = Some(stable.clone());
            if !self.is_serving(&stable) {
                return self.wait();
            }
            if revert_needed && !self.revert_schema(stable_schema.unwrap_or_default()) {
                return;
            }
        }
        self.workload = Some(stable.clone());
        if !self.is_serving(&stable) {
            return self.wait();
        }
        if self.spec().migrations.enabled && self.status.schema_version == stable_schema {
            let revision = stable_schema.map_or_else(|| "?".to_owned(), |r| r.to_string());
            self.set_condition(
                condition::MIGRATIONS_APPLIED,
                true,
                "SchemaAtRevision",
                format!("schema at revision {revision}, as {} needs", stable.version),
            );
        }
        // The runbook's "rollback + re-run smoke tests": the stable version must pass too.
        if smoke_needed {
            match self.smoke_test(stable.clone(), JobPurpose::SmokeStable) {
                SmokeGate::Waiting => return,
                SmokeGate::Failed(message) => {
                    return self.abort_rollback(
                        SMOKE_FAILED_AFTER_ROLLBACK,
                        format!(
                            "{} serves again but failed its smoke test: {message}",
                            stable.version
                        ),
                    );
                }
                SmokeGate::Passed => {}
            }
        }
        let reason = conditions::get(&self.status.conditions, condition::DEGRADED)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        self.status.phase = Some(Phase::RolledBack);
        let failed = self.status.current_version.clone().unwrap_or_default();
        self.push_history(
            Outcome::RolledBack,
            Some(reason.0.clone()),
            Some(reason.1.clone()),
        );
        self.note(
            true,
            "RolledBack",
            format!(
                "rolled back from {failed} to {}: {}",
                stable.version, reason.1
            ),
        );
    }

    /// Runs (or waits for) the schema revert Job. True once the schema is back.
    pub(super) fn revert_schema(&mut self, revision: i64) -> bool {
        // A migration Job stopped by the deadline or an abort is deleted with its pods first
        // (foreground): until it is gone its migration may still run, and two migrations
        // never run at once. (Deleting it again is a no-op; it covers a delete that failed.)
        if let Some(name) = self.status.migration_job.clone() {
            let deleting_now = self
                .actions
                .iter()
                .any(|a| matches!(a, Action::DeleteJob { name: n } if *n == name));
            if deleting_now || self.o.migration_job == JobState::Running {
                if !deleting_now {
                    self.actions.push(Action::DeleteJob { name });
                }
                self.wait();
                return false;
            }
        }
        // The failing attempt's image knows the down migrations from its revision: the one
        // recorded when the attempt started, not whatever the spec says now (a GitOps revert
        // of `version` during the rollback must not run an image that lacks them).
        let failing = self.attempted();
        let name = self.status.revert_job.clone().unwrap_or_else(|| {
            naming::job_name(
                self.o.release,
                JobPurpose::Revert,
                &failing.version,
                revision,
                self.attempt(),
            )
        });
        let first_look = self.status.revert_job.is_none();
        self.status.revert_job = Some(name.clone());
        match (&self.o.revert_job, first_look) {
            (_, true) | (JobState::Absent, false) => {
                self.actions.push(Action::CreateJob {
                    name,
                    attempt: self.attempt(),
                    purpose: JobPurpose::Revert,
                    workload: failing,
                    revision,
                });
                self.wait();
                false
            }
            (JobState::Running, false) => {
                self.wait();
                false
            }
            (JobState::Succeeded, false) => {
                self.status.schema_version = Some(revision);
                self.note(
                    false,
                    "SchemaReverted",
                    format!("revert Job {name} moved the schema back to revision {revision}"),
                );
                true
            }
            // The migration tool refused before it changed anything: a revision on the way
            // down loses data when reverted. The schema stays; the stable version runs on it.
            (JobState::Failed(why), false) if why.contains(IRREVERSIBLE) => {
                self.keep_schema(&name, why);
                true
            }
            (JobState::Failed(why), false) => {
                let message = format!(
                    "schema revert Job {name} failed: {why}; the schema may be between revisions"
                );
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    false,
                    "SchemaRevertFailed",
                    message.clone(),
                );
                self.abort_rollback("SchemaRevertFailed", message);
                false
            }
        }
    }

    /// Whether this attempt's rollback keeps the schema because a revision on the way down
    /// cannot be reverted (see [`Self::keep_schema`]).
    pub(super) fn schema_kept(&self) -> bool {
        conditions::get(&self.status.conditions, condition::MIGRATIONS_APPLIED)
            .is_some_and(|c| c.status == "True" && c.reason == SCHEMA_KEPT)
    }

    /// The revert Job `job` was refused (`why`, the migration tool's words, name the
    /// revision): the schema stays at the failed version's revision, which the rollback
    /// keeps, and the way back to the stable revision is a restore of the snapshot taken
    /// before the migration. Said in MigrationsApplied, Degraded (so Stalled) and an Event.
    fn keep_schema(&mut self, job: &str, why: &str) {
        let kept = self.status.schema_version.map_or_else(
            || "the failed version's revision".to_owned(),
            |r| format!("revision {r}"),
        );
        let stable = self.status.stable_schema_version.map_or_else(
            || "the stable revision".to_owned(),
            |r| format!("revision {r}"),
        );
        let refusal = refusal(why);
        let snapshot = self
            .status
            .snapshot
            .as_ref()
            .filter(|s| s.attempt == self.attempt() && s.completion_time.is_some())
            .map_or_else(
                || {
                    "no snapshot was taken before the migration (spec.backups is not set): restore \
                    from a backup taken before it"
                        .to_owned()
                },
                |s| {
                    let holds = s.schema_version.map_or_else(
                        || "an unrecorded revision".to_owned(),
                        |r| format!("revision {r}"),
                    );
                    format!(
                        "restore the snapshot {} taken before the migration (pgBackRest \
                         annotation {}; it holds {holds}; its set's label, for `pgbackrest \
                         restore --set=`, is in `pgbackrest info` under that annotation and in \
                         the Job's log as \"new backup label\"), which loses the writes made \
                         since",
                        s.job, s.annotation
                    )
                },
            );
        let message = format!(
            "revert Job {job} refused: {refusal}; the schema stays at {kept}, on which the stable \
             version runs. To return to {stable}, {snapshot}"
        );
        self.set_condition(
            condition::MIGRATIONS_APPLIED,
            true,
            SCHEMA_KEPT,
            message.clone(),
        );
        if let Some(degraded) = conditions::get(&self.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .cloned()
        {
            self.set_condition(
                condition::DEGRADED,
                true,
                &degraded.reason,
                format!("{}; {message}", degraded.message),
            );
        }
        self.note(true, "IrreversibleMigration", message);
    }

    /// The rollback has a deadline of its own: `progressDeadlineSeconds` from the failure
    /// that started it (when Degraded turned True).
    pub(super) fn rollback_deadline_passed(&self) -> bool {
        conditions::get(&self.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .is_some_and(|c| {
                self.o.now
                    >= c.last_transition_time.0 + seconds(self.spec().progress_deadline_seconds)
            })
    }

    /// Ends a rollback that cannot finish: Failed, with the reason and what it waited for.
    pub(super) fn abort_rollback(&mut self, reason: &str, message: String) {
        self.stop_smoke_test("the rollback ended");
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        self.note(true, reason, message.clone());
        self.push_history(Outcome::Failed, Some(reason.to_owned()), Some(message));
        self.status.phase = Some(Phase::Failed);
    }
}
