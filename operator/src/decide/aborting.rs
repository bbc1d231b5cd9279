//! An abort requested by a person (`kubectl listacompra abort`): the attempt in flight
//! stops where it stands and rolls back, as when a gate fails.

use listacompra_crds::release::ABORT_ANNOTATION;

use super::machine::Machine;
use super::*;

impl Machine<'_, '_> {
    /// The abort annotation names the attempt in flight (moving forward: a rollback in
    /// progress, or a settled release, has nothing to abort).
    pub(super) fn abort_requested(&self) -> bool {
        self.o.abort.is_some_and(|n| n == self.attempt()) && advancing(self.status.phase)
    }

    /// Stops a running migration (the schema may be anywhere between the two revisions, so
    /// it is no longer recorded) and the smoke test, then rolls back. A pause or a held
    /// analysis does not delay it: aborting is how a person ends them.
    pub(super) fn abort(&mut self) {
        if self.status.phase == Some(Phase::Migrating) && self.o.migration_job == JobState::Running
        {
            if let Some(name) = self.status.migration_job.clone() {
                self.actions.push(Action::DeleteJob { name });
            }
            self.status.schema_version = None;
        }
        self.stop_smoke_test("the attempt was aborted");
        self.hold = None;
        let message = format!(
            "attempt {} of {} aborted on request (annotation {ABORT_ANNOTATION})",
            self.attempt(),
            self.attempted().version
        );
        self.fail("Aborted", message);
    }
}
