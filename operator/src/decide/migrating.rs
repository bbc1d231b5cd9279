//! Migrating: with `spec.backups`, a pgBackRest backup of the database first (the snapshot a
//! restore returns to); then the attempt's migration Job moves the schema to the target
//! revision.

use listacompra_crds::status::{Snapshot, condition};

use super::machine::Machine;
use super::rolling_back;
use super::*;
use crate::naming::{self, JobPurpose};

/// The pgBackRest annotation that marks the backup set the snapshot Job `job` takes.
pub fn snapshot_annotation(job: &str) -> String {
    format!("listacompra-snapshot={job}")
}

impl Machine<'_, '_> {
    /// Launches the attempt's move of the schema to `revision`: with `spec.backups`, the
    /// snapshot Job first, the migration once it has succeeded.
    pub(super) fn launch_migration(&mut self, revision: i64) {
        self.status.phase = Some(Phase::Migrating);
        if self.spec().backups.is_none() {
            return self.start_migration(revision);
        }
        let job =
            naming::snapshot_job_name(self.o.release, self.version(), revision, self.attempt());
        self.status.snapshot = Some(Snapshot {
            job: job.clone(),
            attempt: self.attempt(),
            schema_version: self.status.schema_version,
            annotation: snapshot_annotation(&job),
            start_time: self.now.clone(),
            completion_time: None,
        });
        self.set_condition(
            condition::MIGRATIONS_APPLIED,
            false,
            "TakingSnapshot",
            format!(
                "backup Job {job} takes a snapshot of the database before the migration to \
                 revision {revision}"
            ),
        );
        self.actions.push(Action::TakeSnapshot {
            name: job,
            attempt: self.attempt(),
        });
        self.wait();
    }

    fn start_migration(&mut self, revision: i64) {
        let name = naming::job_name(
            self.o.release,
            JobPurpose::Migrate,
            self.version(),
            revision,
            self.attempt(),
        );
        self.status.migration_job = Some(name.clone());
        self.set_condition(
            condition::MIGRATIONS_APPLIED,
            false,
            "Migrating",
            format!("migration Job {name} moves the schema to revision {revision}"),
        );
        self.create_migration_job(name, revision);
    }

    /// The current attempt's snapshot, while it is being taken.
    fn snapshot_in_progress(&self) -> Option<Snapshot> {
        self.status.snapshot.clone().filter(|s| {
            s.attempt == self.attempt()
                && s.completion_time.is_none()
                && self.status.migration_job.is_none()
        })
    }

    /// Stops the current attempt's snapshot Job if it may still run (superseded, aborted,
    /// out of time): deleting one already gone is a no-op.
    pub(super) fn stop_snapshot(&mut self) {
        if let Some(snapshot) = self.snapshot_in_progress() {
            if matches!(self.o.snapshot_job, JobState::Running | JobState::Absent) {
                self.actions.push(Action::DeleteJob { name: snapshot.job });
            }
            // Not a restore point: it never completed.
            self.status.snapshot = None;
        }
    }

    /// Waits for the snapshot; the migration starts once it is complete. A failed snapshot
    /// ends the attempt before the schema is touched.
    fn snapshotting(&mut self, mut snapshot: Snapshot) {
        let revision = self.schema_target().unwrap_or_default();
        if self.deadline_passed() && !self.spec().paused {
            self.stop_snapshot();
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "the release did not finish within {}s; snapshot Job {} was still running \
                     (the schema was not touched)",
                    self.spec().progress_deadline_seconds,
                    snapshot.job
                ),
            );
        }
        match &self.o.snapshot_job {
            // `spec.backups` removed before the Job was made: nothing to wait for.
            // (Deleted too, in case it exists and the cache has not shown it yet.)
            JobState::Absent if self.spec().backups.is_none() => {
                self.stop_snapshot();
                self.start_migration(revision);
            }
            // Created by an earlier reconcile and gone (deleted by hand): create it again.
            JobState::Absent => {
                self.actions.push(Action::TakeSnapshot {
                    name: snapshot.job,
                    attempt: self.attempt(),
                });
                self.wait();
            }
            JobState::Running => self.wait(),
            JobState::Failed(reason) => {
                let message = format!(
                    "snapshot Job {} failed: {reason}; the schema was not touched",
                    snapshot.job
                );
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    false,
                    "SnapshotFailed",
                    message.clone(),
                );
                self.status.snapshot = None;
                self.fail("SnapshotFailed", message);
            }
            JobState::Succeeded => {
                snapshot.completion_time = Some(self.now.clone());
                self.note(
                    false,
                    "SnapshotTaken",
                    format!(
                        "snapshot Job {} backed the database up at {} (pgBackRest \
                         annotation {})",
                        snapshot.job,
                        snapshot.schema_version.map_or_else(
                            || "an unrecorded schema revision".to_owned(),
                            |r| format!("schema revision {r}")
                        ),
                        snapshot.annotation
                    ),
                );
                self.status.snapshot = Some(snapshot);
                if self.spec().paused {
                    return self.pause();
                }
                self.start_migration(revision);
            }
        }
    }

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
        if let Some(snapshot) = self.snapshot_in_progress() {
            return self.snapshotting(snapshot);
        }
        if self.status.migration_job.is_none()
            && self
                .status
                .snapshot
                .as_ref()
                .is_some_and(|s| s.attempt == self.attempt() && s.completion_time.is_some())
        {
            // The snapshot was taken, and the release paused before the migration started.
            if self.spec().paused {
                return self.pause();
            }
            return self.start_migration(self.schema_target().unwrap_or_default());
        }
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
            // The version asks for an older revision than the database has, across a step that
            // loses data: the tool refused before changing anything. The schema stays, and the
            // version rolls out on it; its pods' readiness and the gates decide whether it
            // runs there (builds run on newer revisions).
            JobState::Failed(reason) if reason.contains(rolling_back::IRREVERSIBLE) => {
                let kept = self
                    .status
                    .schema_version
                    .map_or_else(|| "its revision".to_owned(), |r| format!("revision {r}"));
                let message = format!(
                    "migration Job {name} refused: {}; the schema stays at {kept}, and {} rolls \
                     out on it",
                    rolling_back::refusal(reason),
                    self.version()
                );
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    true,
                    rolling_back::SCHEMA_KEPT,
                    message.clone(),
                );
                self.note(true, "IrreversibleMigration", message);
                if self.spec().paused {
                    return self.pause();
                }
                self.start_rollout();
            }
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
