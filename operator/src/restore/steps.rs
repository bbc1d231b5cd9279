//! The steps of a restore its release has taken up: a pure function from what the operator
//! observed to the restore's next status and what to do. No I/O here; [`super`] gathers
//! [`Observed`] and carries out the [`Decision`].
//!
//! ```text
//! StoppingTraffic → StoppingDatabase → Restoring → StartingDatabase → Migrating
//!     → StartingTraffic → SmokeTesting → Succeeded        (any step can end Failed)
//! ```
//!
//! Each step is entered once (recorded with its start time before its first action) and
//! every action is idempotent (a scale to the same replicas, a Job created under a name
//! derived from the restore), so a restarted operator resumes at the recorded step.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::approval::ApprovalRecord;
use listacompra_crds::restore::{ListaCompraRestoreStatus, RestorePhase, RestoreStep, StepRecord};

use crate::conditions;
use crate::decide::JobState;

/// What the database's StatefulSet looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Database {
    /// Its `spec.replicas`.
    pub replicas: i32,
    /// Its pods that exist (terminating ones too).
    pub pods: usize,
    /// Its ready replicas, as its status counts them for its current generation.
    pub ready: i32,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// Name of the StatefulSet (for messages).
    pub stateful_set: &'a str,
    /// `metadata.generation` of the restore.
    pub generation: i64,
    /// Its status as read.
    pub status: &'a ListaCompraRestoreStatus,
    /// The schema revision the serving version needs (none without migrations).
    pub schema_version: Option<i64>,
    /// Whether the release runs a smoke test.
    pub smoke_test: bool,
    /// Pods of the release's API and worker that exist (terminating ones too).
    pub traffic_pods: usize,
    /// The release's API and worker run the serving version with all their replicas
    /// available.
    pub traffic_serving: bool,
    /// The StatefulSet, `None` when it does not exist.
    pub database: Option<Database>,
    /// Pods of the release's restore Jobs that still run (a deleted restore's Job, or one
    /// whose deadline passed, may still be writing the data folder).
    pub restore_pods: usize,
    /// The restore Job.
    pub restore_job: JobState,
    /// The migration Job.
    pub migration_job: JobState,
    /// The smoke-test Job.
    pub smoke_job: JobState,
    /// Seconds a step other than the restore Job may take (the release's
    /// `progressDeadlineSeconds`; the restore Job has its own `activeDeadlineSeconds`).
    pub step_deadline_seconds: i32,
    /// The approvals the release took the restore up with (recorded when it begins).
    pub approvals: &'a [ApprovalRecord],
    /// The time of this pass.
    pub now: Timestamp,
}

/// A change to make to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set the StatefulSet's replicas (its scale subresource).
    ScaleDatabase(i32),
    /// Create the restore Job.
    CreateRestoreJob,
    /// Create the migration Job, to this revision.
    CreateMigrationJob(i64),
    /// Create the smoke-test Job.
    CreateSmokeJob,
    /// Delete the restore Job (and, foreground, its pod): PostgreSQL came back under it.
    DeleteRestoreJob,
}

/// An Event about the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Message for people.
    pub message: String,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write (written only when it differs from the one read).
    pub status: ListaCompraRestoreStatus,
    /// What to do, after the status is written.
    pub actions: Vec<Action>,
    /// Events to emit.
    pub notes: Vec<Note>,
    /// When to look again at the latest.
    pub requeue_after: Duration,
}

/// How often a running restore looks again (no watch wakes it on the StatefulSet's pods).
const POLL: Duration = Duration::from_secs(2);

/// The next step of a restore its release carries out.
pub fn decide(o: &Observed<'_>) -> Decision {
    let mut r = Run {
        o,
        now: Time(o.now),
        status: o.status.clone(),
        actions: Vec::new(),
        notes: Vec::new(),
    };
    r.status.observed_generation = Some(o.generation);
    match r.status.phase {
        Some(RestorePhase::Succeeded | RestorePhase::Failed | RestorePhase::Refused) => {}
        Some(RestorePhase::Restoring) => r.step(),
        None | Some(RestorePhase::Pending) => r.begin(),
    }
    r.finish()
}

/// The status of a restore its release refused: nothing was touched.
pub fn refused(
    status: &ListaCompraRestoreStatus,
    generation: i64,
    message: &str,
    now: Timestamp,
) -> ListaCompraRestoreStatus {
    let mut status = said(status, generation, RestorePhase::Refused, message, now);
    status.completion_time = Some(Time(now));
    set_conditions(&mut status, generation, &Time(now));
    status
}

/// The status of a restore that waits for its approvals (`message` says for which).
pub fn waiting(
    status: &ListaCompraRestoreStatus,
    generation: i64,
    message: &str,
    now: Timestamp,
) -> ListaCompraRestoreStatus {
    said(status, generation, RestorePhase::Pending, message, now)
}

/// `status` in `phase`, saying `message`, with its conditions.
fn said(
    status: &ListaCompraRestoreStatus,
    generation: i64,
    phase: RestorePhase,
    message: &str,
    now: Timestamp,
) -> ListaCompraRestoreStatus {
    let mut status = status.clone();
    status.observed_generation = Some(generation);
    status.phase = Some(phase);
    status.message = Some(message.to_owned());
    set_conditions(&mut status, generation, &Time(now));
    status
}

struct Run<'o, 'a> {
    o: &'o Observed<'a>,
    now: Time,
    status: ListaCompraRestoreStatus,
    actions: Vec<Action>,
    notes: Vec<Note>,
}

impl Run<'_, '_> {
    fn begin(&mut self) {
        self.status.approvals = self.o.approvals.to_vec();
        self.status.phase = Some(RestorePhase::Restoring);
        self.status.start_time = Some(self.now.clone());
        self.status.schema_version = self.o.schema_version;
        self.status.message = None;
        self.enter(RestoreStep::StoppingTraffic);
    }

    fn step(&mut self) {
        let Some(step) = self.status.step else {
            return self.enter(RestoreStep::StoppingTraffic);
        };
        // The restore Job has a deadline of its own (`activeDeadlineSeconds`), once it exists.
        let bounded_by_job =
            step == RestoreStep::Restoring && self.o.restore_job != JobState::Absent;
        if !bounded_by_job && self.step_overdue(step) {
            return self.fail(format!(
                "step {step:?} did not end within {}s (the release's progressDeadlineSeconds)",
                self.o.step_deadline_seconds
            ));
        }
        match step {
            RestoreStep::StoppingTraffic => self.stopping_traffic(),
            RestoreStep::StoppingDatabase => self.stopping_database(),
            RestoreStep::Restoring => self.restoring(),
            RestoreStep::StartingDatabase => self.starting_database(),
            RestoreStep::Migrating => self.migrating(),
            RestoreStep::StartingTraffic => self.starting_traffic(),
            RestoreStep::SmokeTesting => self.smoke_testing(),
        }
    }

    fn stopping_traffic(&mut self) {
        let Some(database) = self.o.database else {
            return self.fail(format!(
                "StatefulSet {} (the release's spec.backups.database.statefulSet) does not exist",
                self.o.stateful_set
            ));
        };
        if database.replicas > 1 {
            return self.fail(format!(
                "StatefulSet {} runs {} replicas: a restore writes one data folder, and the \
                 others would start on the old data. Restore a single PostgreSQL (replicas: \
                 1) and let it rebuild its standbys",
                self.o.stateful_set, database.replicas
            ));
        }
        if self.o.traffic_pods > 0 {
            return;
        }
        // Scaled back to one replica afterwards, also if someone had stopped it.
        self.status.database_replicas = Some(1);
        self.enter(RestoreStep::StoppingDatabase);
    }

    fn stopping_database(&mut self) {
        self.scale(0);
        match self.o.database {
            None => self.fail(format!(
                "StatefulSet {} was deleted during the restore",
                self.o.stateful_set
            )),
            Some(d) if d.replicas == 0 && d.pods == 0 => self.enter(RestoreStep::Restoring),
            Some(_) => {}
        }
    }

    fn restoring(&mut self) {
        // Held at 0 while pgBackRest writes the data folder (someone may scale it by hand).
        self.scale(0);
        let database_pods = self.o.database.map_or(0, |d| d.pods);
        let stopped = self.o.database.is_some_and(|d| d.replicas == 0)
            && database_pods == 0
            && self.o.traffic_pods == 0
            && self.o.restore_pods == 0;
        match &self.o.restore_job {
            // Created only on a stopped database with no other restore's pod left (again,
            // after a crash between the step's record and its Job, or a hand scale).
            JobState::Absent if stopped => self.actions.push(Action::CreateRestoreJob),
            JobState::Absent => {}
            // PostgreSQL came back while pgBackRest writes its folder: stop pgBackRest, and
            // let no one take that folder for a restored database.
            JobState::Running if database_pods > 0 => {
                self.actions.push(Action::DeleteRestoreJob);
                self.fail(format!(
                    "PostgreSQL was started (StatefulSet {} scaled up by someone else) while \
                     pgBackRest wrote its data folder; the restore Job was stopped and the \
                     data folder is not known good",
                    self.o.stateful_set
                ));
            }
            JobState::Running => {}
            JobState::Succeeded => self.enter(RestoreStep::StartingDatabase),
            JobState::Failed(why) => self.fail(format!("pgbackrest restore failed: {why}")),
        }
    }

    fn starting_database(&mut self) {
        let replicas = self.status.database_replicas.unwrap_or(1);
        self.scale(replicas);
        match self.o.database {
            None => self.fail(format!(
                "StatefulSet {} was deleted during the restore",
                self.o.stateful_set
            )),
            Some(d) if d.replicas == replicas && d.ready >= replicas => {
                match self.status.schema_version {
                    Some(_) => self.enter(RestoreStep::Migrating),
                    None => self.enter(RestoreStep::StartingTraffic),
                }
            }
            Some(_) => {}
        }
    }

    fn migrating(&mut self) {
        let Some(revision) = self.status.schema_version else {
            return self.enter(RestoreStep::StartingTraffic);
        };
        match &self.o.migration_job {
            JobState::Absent => self.actions.push(Action::CreateMigrationJob(revision)),
            JobState::Running => {}
            JobState::Succeeded => self.enter(RestoreStep::StartingTraffic),
            JobState::Failed(why) => self.fail(format!(
                "the migration to revision {revision} failed: {why}"
            )),
        }
    }

    fn starting_traffic(&mut self) {
        if !self.o.traffic_serving {
            return;
        }
        if self.o.smoke_test {
            self.enter(RestoreStep::SmokeTesting);
        } else {
            self.succeed();
        }
    }

    fn smoke_testing(&mut self) {
        match &self.o.smoke_job {
            JobState::Absent => self.actions.push(Action::CreateSmokeJob),
            JobState::Running => {}
            JobState::Succeeded => self.succeed(),
            JobState::Failed(why) => self.fail(format!("the smoke test failed: {why}")),
        }
    }

    /// Sets the StatefulSet's replicas: the last word of this pass (a step that ends and
    /// the next one's both say one).
    fn scale(&mut self, replicas: i32) {
        self.actions
            .retain(|a| !matches!(a, Action::ScaleDatabase(_)));
        self.actions.push(Action::ScaleDatabase(replicas));
    }

    /// Ends the current step and begins `step` (its first action comes with it).
    fn enter(&mut self, step: RestoreStep) {
        self.complete_step();
        self.status.step = Some(step);
        self.status.steps.push(StepRecord {
            step,
            start_time: self.now.clone(),
            completion_time: None,
        });
        self.notes.push(Note {
            warning: false,
            reason: format!("{step:?}"),
            message: describe(step, &self.status),
        });
        // The step's first look (and action) is in the same pass: a step already done (no
        // pods to stop) moves on at once.
        self.step();
    }

    fn complete_step(&mut self) {
        if let Some(last) = self
            .status
            .steps
            .last_mut()
            .filter(|s| s.completion_time.is_none())
        {
            last.completion_time = Some(self.now.clone());
        }
    }

    fn succeed(&mut self) {
        self.complete_step();
        self.status.phase = Some(RestorePhase::Succeeded);
        self.status.completion_time = Some(self.now.clone());
        let took = self
            .status
            .start_time
            .as_ref()
            .map(|start| self.o.now.duration_since(start.0).as_secs())
            .unwrap_or_default();
        self.notes.push(Note {
            warning: false,
            reason: "Restored".to_owned(),
            message: format!("restored, migrated and serving again after {took}s"),
        });
    }

    fn fail(&mut self, message: String) {
        // Nothing was written yet: PostgreSQL runs again, as it did.
        if self.status.step == Some(RestoreStep::StoppingDatabase) {
            self.scale(self.status.database_replicas.unwrap_or(1));
        }
        self.status.phase = Some(RestorePhase::Failed);
        self.status.completion_time = Some(self.now.clone());
        self.status.message = Some(message.clone());
        self.notes.push(Note {
            warning: true,
            reason: "RestoreFailed".to_owned(),
            message: format!(
                "step {}: {message}",
                self.status
                    .step
                    .map_or("?".to_owned(), |s| format!("{s:?}"))
            ),
        });
    }

    fn step_overdue(&self, step: RestoreStep) -> bool {
        self.status
            .steps
            .iter()
            .rev()
            .find(|s| s.step == step)
            .is_some_and(|s| {
                self.o.now
                    >= s.start_time.0
                        + SignedDuration::from_secs(i64::from(self.o.step_deadline_seconds))
            })
    }

    fn finish(mut self) -> Decision {
        set_conditions(&mut self.status, self.o.generation, &self.now);
        let done = self.status.completion_time.is_some();
        Decision {
            status: self.status,
            actions: self.actions,
            notes: self.notes,
            requeue_after: if done { Duration::from_secs(300) } else { POLL },
        }
    }
}

/// What a step does, for its Event.
fn describe(step: RestoreStep, status: &ListaCompraRestoreStatus) -> String {
    match step {
        RestoreStep::StoppingTraffic => "stopping the API and the worker".to_owned(),
        RestoreStep::StoppingDatabase => "stopping PostgreSQL (StatefulSet scaled to 0)".to_owned(),
        RestoreStep::Restoring => "running pgbackrest restore".to_owned(),
        RestoreStep::StartingDatabase => format!(
            "starting PostgreSQL ({} replicas)",
            status.database_replicas.unwrap_or(1)
        ),
        RestoreStep::Migrating => format!(
            "migrating the restored database to revision {}",
            status.schema_version.unwrap_or_default()
        ),
        RestoreStep::StartingTraffic => "starting the API and the worker".to_owned(),
        RestoreStep::SmokeTesting => "running the release's smoke test".to_owned(),
    }
}

/// Ready (restored and serving), Reconciling (not done) and Stalled (refused or failed),
/// for kstatus.
fn set_conditions(status: &mut ListaCompraRestoreStatus, generation: i64, now: &Time) {
    let phase = status.phase.unwrap_or(RestorePhase::Pending);
    let message = status.message.clone().unwrap_or_default();
    let step = status.step.map_or("none".to_owned(), |s| format!("{s:?}"));
    let (ready, reconciling, stalled, reason, text) = match phase {
        // Only the wait for approvals writes a message on a pending restore.
        RestorePhase::Pending if status.message.is_some() => (
            false,
            true,
            false,
            "AwaitingApproval",
            status.message.clone().unwrap_or_default(),
        ),
        RestorePhase::Pending => (
            false,
            true,
            false,
            "Pending",
            status
                .message
                .clone()
                .unwrap_or_else(|| "waiting for the release to take it up".to_owned()),
        ),
        RestorePhase::Restoring => (false, true, false, "Restoring", format!("step {step}")),
        RestorePhase::Succeeded => (
            true,
            false,
            false,
            "Restored",
            "restored, migrated and serving".to_owned(),
        ),
        RestorePhase::Refused => (false, false, true, "Refused", message),
        RestorePhase::Failed => (
            false,
            false,
            true,
            "RestoreFailed",
            format!("step {step}: {message}"),
        ),
    };
    let c = &mut status.conditions;
    conditions::set(c, "Ready", ready, reason, text.clone(), generation, now);
    conditions::set(
        c,
        "Reconciling",
        reconciling,
        reason,
        text.clone(),
        generation,
        now,
    );
    conditions::set(c, "Stalled", stalled, reason, text, generation, now);
}

#[cfg(test)]
mod tests;
