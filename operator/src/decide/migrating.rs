//! Migrating: the attempt's migration Job moves the schema to the target revision.

use listacompra_crds::status::condition;

use super::machine::Machine;
use super::*;
use crate::naming::JobPurpose;

impl Machine<'_, '_> {
    pub(super) fn create_migration_job(&mut self, name: String, revision: i64) {
        self.actions.push(Action::CreateJob {
            name,
            attempt: self.attempt(),
            purpose: JobPurpose::Migrate,
            workload: self.target(),
            revision,
        });
        self.wait();
    }

    pub(super) fn migrating(&mut self) {
        let name = self.status.migration_job.clone().unwrap_or_default();
        if self.deadline_passed() && !self.spec().paused {
            if self.o.migration_job == JobState::Running {
                self.actions.push(Action::DeleteJob { name: name.clone() });
            }
            self.status.schema_version = None; // the Job may have moved it part of the way
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "the release did not finish within {}s; migration Job {name} was still running",
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        match &self.o.migration_job {
            JobState::Absent | JobState::Running if self.status.migration_job.is_none() => {
                self.pending()
            }
            JobState::Absent => {
                // Created by an earlier reconcile and gone (deleted by hand): create it again.
                let revision = self.schema_target().unwrap_or_default();
                self.create_migration_job(name, revision);
            }
            JobState::Running => self.wait(),
            JobState::Failed(reason) => {
                self.status.schema_version = None;
                let message = format!("migration Job {name} failed: {reason}");
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    false,
                    "MigrationFailed",
                    message.clone(),
                );
                self.fail("MigrationFailed", message);
            }
            JobState::Succeeded => {
                let revision = self.schema_target();
                self.status.schema_version = revision;
                let revision = revision.map_or_else(|| "?".to_owned(), |r| r.to_string());
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    true,
                    "SchemaAtRevision",
                    format!("schema at revision {revision} (Job {name})"),
                );
                self.note(
                    false,
                    "MigrationSucceeded",
                    format!("migration Job {name} moved the schema to revision {revision}"),
                );
                if self.spec().paused {
                    return self.pause();
                }
                self.start_rollout();
            }
        }
    }
}
