//! An abort requested by a person (`kubectl listacompra abort`): the attempt in flight
//! stops where it stands and rolls back, as when a gate fails.

use listacompra_crds::release::ABORT_ANNOTATION;

use super::machine::Machine;
use super::*;

/// Whether an abort annotation naming `abort` ends the attempt of `status`: it names the
/// attempt in flight, moving forward (a rollback in progress, or a settled release, has
/// nothing to abort). The controller runs no gate check for an attempt about to be aborted.
pub fn honoured(abort: Option<i64>, status: &ListaCompraReleaseStatus) -> bool {
    abort.is_some_and(|n| n == status.attempt.unwrap_or(0)) && advancing(status.phase)
}

impl Machine<'_, '_> {
    /// The abort annotation names the attempt in flight.
    pub(super) fn abort_requested(&self) -> bool {
        honoured(self.o.abort, &self.status)
    }

    /// Stops a running migration and the smoke test, then rolls back, whatever
    /// `rollback.automatic` says (a person asked for it). A pause or a held analysis does not
    /// delay it: aborting is how a person ends them.
    pub(super) fn abort(&mut self) {
        if self.status.phase == Some(Phase::Migrating) {
            // Where the schema stands now: a finished Job moved it to the target (the
            // reconcile that would have recorded it never came); a running one is stopped
            // part of the way, and a failed or vanished one may have moved it part of the way
            // too: unknown, so the revert runs (the migration tool is idempotent).
            match &self.o.migration_job {
                JobState::Succeeded => self.status.schema_version = self.schema_target(),
                JobState::Running => {
                    if let Some(name) = self.status.migration_job.clone() {
                        self.actions.push(Action::DeleteJob { name });
                    }
                    self.status.schema_version = None;
                }
                JobState::Failed(_) => {
                    if self.status.migration_job.is_some() {
                        self.status.schema_version = None;
                    }
                }
                // Deleted by hand, or created by the last reconcile and not in the cache yet:
                // deleted (a no-op when gone) so that it cannot start running now.
                JobState::Absent => {
                    if let Some(name) = self.status.migration_job.clone() {
                        self.actions.push(Action::DeleteJob { name });
                        self.status.schema_version = None;
                    }
                }
            }
        }
        self.stop_snapshot();
        self.stop_smoke_test("the attempt was aborted");
        self.hold = None;
        let message = format!(
            "attempt {} of {} aborted on request (annotation {ABORT_ANNOTATION})",
            self.attempt(),
            self.attempted().version
        );
        self.end_attempt("Aborted", message, true);
    }
}
