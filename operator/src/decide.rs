//! The release state machine: a pure function from what the operator observed to what it
//! should do next. No I/O here; `controller` gathers [`Observed`] and carries out the
//! [`Decision`].
//!
//! ```text
//! Pending → Migrating → RollingOut → Verifying → Succeeded
//!              │            │            │
//!              └────────────┴────────────┴──▶ RollingBack → RolledBack
//!                                                 └──────▶ Failed
//! ```
//!
//! Every step is idempotent and all progress lives in the status and the child objects, so
//! a restarted operator resumes where the last one stood.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::status::{
    AnalysisReport, HistoryEntry, KpiResult, MAX_HISTORY, Outcome, condition,
};
use listacompra_crds::{
    InconclusivePolicy, ListaCompraReleaseSpec, ListaCompraReleaseStatus, Phase,
};

use crate::conditions;
use crate::gates::analysis::Measurement;
use crate::gates::health::{self, HealthVerdict};
use crate::naming::{self, JobPurpose};
use crate::workload::{SpecSource, Workload, image_ref};

/// State of one Job the operator created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not found (not created yet, or deleted).
    Absent,
    /// Created and not finished.
    Running,
    /// Complete.
    Succeeded,
    /// Failed, with the reason from its conditions.
    Failed(String),
}

/// State of the API Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadState {
    /// Hash of what the operator last applied (annotation), if the Deployment exists.
    pub hash: Option<String>,
    /// The Deployment has rolled out its current template: all replicas updated and
    /// available, none of an older template left.
    pub available: bool,
    /// The Deployment reported `ProgressDeadlineExceeded`, with its message.
    pub stalled: Option<String>,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// Name of the release.
    pub release: &'a str,
    /// `metadata.generation` of the release.
    pub generation: i64,
    /// The spec.
    pub spec: &'a ListaCompraReleaseSpec,
    /// The spec recorded when the stable version succeeded, if found.
    pub stable_spec: Option<&'a ListaCompraReleaseSpec>,
    /// The status as read.
    pub status: &'a ListaCompraReleaseStatus,
    /// The migration Job named in the status.
    pub migration_job: JobState,
    /// The schema revert Job named in the status.
    pub revert_job: JobState,
    /// The API Deployment.
    pub workload: WorkloadState,
    /// A health check performed for this reconcile (see [`gate_due`]).
    pub health_check: Option<Result<(), String>>,
    /// A KPI measurement performed for this reconcile (see [`gate_due`]).
    pub measurement: Option<Vec<KpiResult>>,
    /// The time of this reconcile.
    pub now: Timestamp,
}

/// A change to make to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a migration or revert Job (its name is deterministic).
    CreateJob {
        /// Job name.
        name: String,
        /// The release attempt the Job belongs to.
        attempt: i64,
        /// Migrate forward or revert.
        purpose: JobPurpose,
        /// Image and version that run it.
        workload: Workload,
        /// Schema revision to move to.
        revision: i64,
    },
    /// Record the current spec as the stable one (a ControllerRevision named after the
    /// version), so that a later rollback restores exactly this pod template.
    RecordStable {
        /// The version that became stable.
        version: String,
    },
    /// Delete a Job that must not go on (deadline passed).
    DeleteJob {
        /// Job name.
        name: String,
    },
}

/// A Kubernetes Event to emit.
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
    pub status: ListaCompraReleaseStatus,
    /// The workload that must be serving: the controller applies it when the live
    /// Deployment differs. `None` leaves the Deployment alone.
    pub workload: Option<Workload>,
    /// Jobs to create or delete.
    pub actions: Vec<Action>,
    /// Events to emit.
    pub notes: Vec<Note>,
    /// When to look again, at the latest (watches on children wake the operator earlier).
    pub requeue_after: Duration,
}

/// Which gate check is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDue {
    /// Nothing to check now.
    Nothing,
    /// Run one health check.
    Health,
    /// Take one KPI measurement.
    Measurement,
}

/// How long to wait when waiting on a Job or a rollout (their watches usually wake us first).
const WAIT: Duration = Duration::from_secs(5);
/// How often to look at a settled release, to repair drift.
const SETTLED: Duration = Duration::from_secs(300);

/// Progressing reasons that hold a release until its target changes.
const HOLD_REASONS: [&str; 2] = ["AnalysisPaused", "AnalysisInconclusive"];

fn seconds(n: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(n))
}

fn held(status: &ListaCompraReleaseStatus) -> bool {
    conditions::get(&status.conditions, condition::PROGRESSING)
        .is_some_and(|c| c.status == "False" && HOLD_REASONS.contains(&c.reason.as_str()))
}

/// Which gate check the controller should run before calling [`decide`].
pub fn gate_due(
    spec: &ListaCompraReleaseSpec,
    status: &ListaCompraReleaseStatus,
    now: Timestamp,
) -> GateDue {
    if status.phase != Some(Phase::Verifying)
        || spec.paused
        || held(status)
        || is_new_target(spec, status)
    {
        return GateDue::Nothing;
    }
    let health = status.health.clone().unwrap_or_default();
    if !health.passed {
        let next = health.last_check_time.map_or(Timestamp::UNIX_EPOCH, |t| {
            t.0 + seconds(spec.health.interval_seconds)
        });
        return if now >= next {
            GateDue::Health
        } else {
            GateDue::Nothing
        };
    }
    match (&spec.analysis, &status.verification_start_time) {
        (Some(analysis), Some(start)) => {
            let taken = status.last_analysis.as_ref().map_or(0, |a| a.measurement);
            if taken >= analysis.measurements {
                return GateDue::Nothing;
            }
            let next = start.0
                + seconds(analysis.initial_delay_seconds)
                + seconds(analysis.interval_seconds * taken);
            if now >= next {
                GateDue::Measurement
            } else {
                GateDue::Nothing
            }
        }
        _ => GateDue::Nothing,
    }
}

/// A release starts when the version or the retry token changes, or when the image of a
/// settled version changes under it.
fn is_new_target(spec: &ListaCompraReleaseSpec, status: &ListaCompraReleaseStatus) -> bool {
    status.current_version.as_deref() != Some(spec.version.as_str())
        || status.observed_retry_token != spec.retry_token
        || (status.phase == Some(Phase::Succeeded)
            && status.stable_image.as_deref()
                != Some(image_ref(&spec.image, &spec.version).as_str()))
}

/// Decides the next step of a release.
pub fn decide(o: &Observed<'_>) -> Decision {
    let mut m = Machine::new(o);
    if is_new_target(o.spec, o.status) && o.status.phase != Some(Phase::RollingBack) {
        m.start_release();
    }
    m.stop_the_clock_while_paused();
    match m.status.phase {
        None | Some(Phase::Pending) => m.pending(),
        Some(Phase::Migrating) => m.migrating(),
        Some(Phase::RollingOut) => m.rolling_out(),
        Some(Phase::Verifying) => m.verifying(),
        Some(Phase::RollingBack) => m.rolling_back(),
        Some(Phase::Succeeded) => {
            // The stable record is written after the status says Succeeded: put it back if
            // that write was lost.
            if o.stable_spec.is_none()
                && let Some(version) = m.status.stable_version.clone()
            {
                m.actions.push(Action::RecordStable { version });
            }
            m.settled(Some(m.target()));
        }
        Some(Phase::RolledBack) => m.settled(m.stable()),
        Some(Phase::Failed) => m.settled(None),
    }
    m.finish()
}

/// One run of the state machine over a copy of the status.
struct Machine<'o, 'a> {
    o: &'o Observed<'a>,
    now: Time,
    status: ListaCompraReleaseStatus,
    workload: Option<Workload>,
    actions: Vec<Action>,
    notes: Vec<Note>,
    requeue_after: Duration,
    /// Why the release is held (Progressing=False with this reason), if it is.
    hold: Option<(&'static str, String)>,
}

impl<'o, 'a> Machine<'o, 'a> {
    fn new(o: &'o Observed<'a>) -> Self {
        let mut status = o.status.clone();
        status.observed_generation = Some(o.generation);
        let hold = conditions::get(&status.conditions, condition::PROGRESSING)
            .filter(|c| c.status == "False")
            .and_then(|c| {
                HOLD_REASONS
                    .iter()
                    .find(|r| **r == c.reason)
                    .map(|r| (*r, c.message.clone()))
            });
        Self {
            o,
            now: Time(o.now),
            status,
            workload: None,
            actions: Vec::new(),
            notes: Vec::new(),
            requeue_after: SETTLED,
            hold,
        }
    }

    fn spec(&self) -> &ListaCompraReleaseSpec {
        self.o.spec
    }

    fn version(&self) -> &str {
        &self.o.spec.version
    }

    fn target(&self) -> Workload {
        Workload {
            version: self.o.spec.version.clone(),
            image: image_ref(&self.o.spec.image, &self.o.spec.version),
            spec: SpecSource::Current,
        }
    }

    /// The current attempt's number (0 before the first release started).
    fn attempt(&self) -> i64 {
        self.status.attempt.unwrap_or(0)
    }

    /// The version and image the current attempt started with (recorded in status; the
    /// spec's for a status written before attempts were recorded).
    fn attempted(&self) -> Workload {
        let target = self.target();
        Workload {
            version: self
                .status
                .current_version
                .clone()
                .unwrap_or(target.version),
            image: self.status.current_image.clone().unwrap_or(target.image),
            spec: SpecSource::Current,
        }
    }

    fn stable(&self) -> Option<Workload> {
        match (&self.status.stable_version, &self.status.stable_image) {
            (Some(version), Some(image)) => Some(Workload {
                version: version.clone(),
                image: image.clone(),
                spec: SpecSource::Stable,
            }),
            _ => None,
        }
    }

    fn note(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        self.notes.push(Note {
            warning,
            reason: reason.to_owned(),
            message: message.into(),
        });
    }

    fn set_condition(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message,
            self.o.generation,
            &self.now,
        );
    }

    fn wait(&mut self) {
        self.requeue_after = self.requeue_after.min(WAIT);
    }

    fn schema_target(&self) -> Option<i64> {
        let m = &self.spec().migrations;
        if m.enabled { m.schema_version } else { None }
    }

    fn deadline_passed(&self) -> bool {
        self.status
            .release_start_time
            .as_ref()
            .is_some_and(|start| {
                self.o.now >= start.0 + seconds(self.spec().progress_deadline_seconds)
            })
    }

    fn push_history(&mut self, outcome: Outcome, reason: Option<String>, message: Option<String>) {
        let Some(version) = self.status.current_version.clone() else {
            return;
        };
        let start_time = self
            .status
            .release_start_time
            .clone()
            .unwrap_or_else(|| self.now.clone());
        self.status.history.insert(
            0,
            HistoryEntry {
                version,
                schema_version: self.schema_target(),
                start_time,
                end_time: Some(self.now.clone()),
                outcome,
                reason,
                message,
            },
        );
        self.status.history.truncate(MAX_HISTORY);
    }

    // ----- transitions ------------------------------------------------------------------

    fn start_release(&mut self) {
        if matches!(
            self.status.phase,
            Some(Phase::Pending | Phase::Migrating | Phase::RollingOut | Phase::Verifying)
        ) {
            let superseded = self.status.current_version.clone().unwrap_or_default();
            let message = format!("superseded by {}", self.version());
            self.push_history(
                Outcome::Superseded,
                Some("Superseded".to_owned()),
                Some(message.clone()),
            );
            self.note(
                false,
                "Superseded",
                format!("release of {superseded} {message}"),
            );
            if let (Some(name), JobState::Running) =
                (self.status.migration_job.clone(), &self.o.migration_job)
            {
                self.actions.push(Action::DeleteJob { name });
            }
        }
        let s = &mut self.status;
        s.phase = Some(Phase::Pending);
        s.attempt = Some(s.attempt.unwrap_or(0) + 1);
        s.current_version = Some(self.o.spec.version.clone());
        s.current_image = Some(image_ref(&self.o.spec.image, &self.o.spec.version));
        s.observed_retry_token = self.o.spec.retry_token.clone();
        s.release_start_time = Some(self.now.clone());
        s.paused_since = None;
        s.migration_job = None;
        s.revert_job = None;
        s.verification_start_time = None;
        s.health = None;
        s.last_analysis = None;
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

    fn pending(&mut self) {
        self.status.phase = Some(Phase::Pending);
        if self.spec().paused {
            return self.pause();
        }
        match self.schema_target() {
            Some(revision) => {
                let name = naming::job_name(
                    self.o.release,
                    JobPurpose::Migrate,
                    self.version(),
                    revision,
                    self.attempt(),
                );
                self.status.migration_job = Some(name.clone());
                self.status.phase = Some(Phase::Migrating);
                self.set_condition(
                    condition::MIGRATIONS_APPLIED,
                    false,
                    "Migrating",
                    format!("migration Job {name} moves the schema to revision {revision}"),
                );
                self.create_migration_job(name, revision);
            }
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

    fn create_migration_job(&mut self, name: String, revision: i64) {
        self.actions.push(Action::CreateJob {
            name,
            attempt: self.attempt(),
            purpose: JobPurpose::Migrate,
            workload: self.target(),
            revision,
        });
        self.wait();
    }

    fn migrating(&mut self) {
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

    fn start_rollout(&mut self) {
        self.status.phase = Some(Phase::RollingOut);
        self.workload = Some(self.target());
        self.wait();
    }

    fn rolling_out(&mut self) {
        let target = self.target();
        self.workload = Some(target.clone());
        if self.deadline_passed() && !self.spec().paused {
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "{} did not become available within {}s",
                    self.version(),
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        if let Some(message) = self.o.workload.stalled.clone() {
            return self.fail(
                "RolloutFailed",
                format!("the Deployment of {} stalled: {message}", self.version()),
            );
        }
        if self.is_serving(&target) {
            if self.spec().paused {
                return self.pause();
            }
            self.status.phase = Some(Phase::Verifying);
            self.status.verification_start_time = Some(self.now.clone());
            self.status.health = None;
            self.note(
                false,
                "RolloutAvailable",
                format!("{} is available; running the gates", self.version()),
            );
            self.requeue_after = Duration::ZERO;
        } else {
            self.wait();
        }
    }

    fn is_serving(&self, workload: &Workload) -> bool {
        self.o.workload.available
            && self.o.workload.hash.as_deref() == Some(desired_hash(self.o, workload).as_str())
    }

    fn verifying(&mut self) {
        self.workload = Some(self.target());
        if let Some((reason, message)) = self.hold.clone() {
            return self.set_hold(reason, message);
        }
        if self.spec().paused {
            return self.pause();
        }
        if self.deadline_passed() {
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "{} was not verified within {}s",
                    self.version(),
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        let mut health = self.status.health.clone().unwrap_or_default();
        if let (false, Some(outcome)) = (health.passed, &self.o.health_check) {
            let (next, verdict) =
                health::record(&health, outcome, &self.spec().health, self.now.clone());
            let message = next.message.clone().unwrap_or_default();
            self.status.health = Some(next.clone());
            health = next;
            match verdict {
                HealthVerdict::Failed => {
                    return self.fail(
                        "HealthCheckFailed",
                        format!("health gate failed: {message}"),
                    );
                }
                HealthVerdict::Passed => self.note(false, "HealthGatePassed", message),
                HealthVerdict::Pending => {}
            }
        }
        if !health.passed {
            return self.requeue_in(seconds(self.spec().health.interval_seconds));
        }
        let Some(analysis) = self.spec().analysis.clone() else {
            return self.succeed();
        };
        if let Some(results) = &self.o.measurement {
            let previous = self.status.last_analysis.clone();
            let measurement = Measurement::classify(&analysis.kpis, results);
            let report = AnalysisReport {
                measured_at: self.now.clone(),
                measurement: previous.as_ref().map_or(0, |p| p.measurement) + 1,
                failures: previous.as_ref().map_or(0, |p| p.failures)
                    + i32::from(measurement.is_failure()),
                inconclusives: previous.as_ref().map_or(0, |p| p.inconclusives)
                    + i32::from(measurement.is_inconclusive()),
                kpis: results.clone(),
            };
            let summary = summarize(results);
            let n = report.measurement;
            self.status.last_analysis = Some(report.clone());
            if measurement.is_failure() {
                self.note(
                    true,
                    "KpiBreached",
                    format!("measurement {n} of {}: {summary}", analysis.measurements),
                );
            } else {
                self.note(
                    false,
                    "KpiMeasured",
                    format!("measurement {n} of {}: {summary}", analysis.measurements),
                );
            }
            if report.failures > analysis.failure_limit {
                let breached = describe(results, &measurement.failed);
                return self.fail(
                    "KpiBreached",
                    format!(
                        "KPI {breached} (measurement {n} of {}, failure limit {})",
                        analysis.measurements, analysis.failure_limit
                    ),
                );
            }
            if !measurement.paused.is_empty() {
                let message = format!(
                    "KPI {} breached with enforcement Pause; change the version or the retry token to go on",
                    describe(results, &measurement.paused)
                );
                self.note(true, "AnalysisPaused", message.clone());
                return self.set_hold("AnalysisPaused", message);
            }
            if report.inconclusives > analysis.inconclusive_limit {
                let message = format!(
                    "{} inconclusive measurements (limit {}): {}",
                    report.inconclusives,
                    analysis.inconclusive_limit,
                    describe(results, &measurement.inconclusive)
                );
                return match self.spec().rollback.on_inconclusive {
                    InconclusivePolicy::Rollback => self.fail("AnalysisInconclusive", message),
                    InconclusivePolicy::Pause => {
                        self.note(true, "AnalysisInconclusive", message.clone());
                        self.set_hold(
                            "AnalysisInconclusive",
                            format!("{message}; change the version or the retry token to go on"),
                        )
                    }
                };
            }
            if n >= analysis.measurements {
                return self.succeed();
            }
        }
        let taken = self
            .status
            .last_analysis
            .as_ref()
            .map_or(0, |a| a.measurement);
        let start = self
            .status
            .verification_start_time
            .clone()
            .unwrap_or_else(|| self.now.clone());
        let next = start.0
            + seconds(analysis.initial_delay_seconds)
            + seconds(analysis.interval_seconds * taken);
        self.requeue_in(next.duration_since(self.o.now));
    }

    fn requeue_in(&mut self, wait: SignedDuration) {
        let wait = Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1));
        self.requeue_after = self.requeue_after.min(wait);
    }

    fn succeed(&mut self) {
        let target = self.target();
        self.status.phase = Some(Phase::Succeeded);
        self.status.stable_version = Some(target.version.clone());
        self.status.stable_image = Some(target.image.clone());
        if let Some(revision) = self.schema_target() {
            self.status.stable_schema_version = Some(revision);
        }
        self.status.failed_version = None;
        self.actions.push(Action::RecordStable {
            version: target.version.clone(),
        });
        self.push_history(
            Outcome::Succeeded,
            Some("ReleaseSucceeded".to_owned()),
            None,
        );
        self.set_condition(
            condition::DEGRADED,
            false,
            "ReleaseSucceeded",
            format!("{} passed every gate", target.version),
        );
        self.note(
            false,
            "ReleaseSucceeded",
            format!("{} passed every gate and is stable", target.version),
        );
        self.workload = Some(target);
    }

    /// The release failed for `reason`: roll back when allowed and possible, else stop.
    fn fail(&mut self, reason: &str, message: String) {
        self.status.failed_version = Some(self.version().to_owned());
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        let stable = self.status.stable_version.clone();
        if let (true, Some(stable)) = (self.spec().rollback.automatic, &stable) {
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
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        self.note(true, reason, message.clone());
        self.push_history(Outcome::Failed, Some(reason.to_owned()), Some(message));
        self.status.phase = Some(Phase::Failed);
        // Leave the Deployment as it is for a person to act on.
        self.workload = None;
    }

    fn rolling_back(&mut self) {
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
            && self.status.schema_version != stable_schema;
        // The rollback's own deadline applies only while it still waits: a reconcile that
        // comes late (after a restart or a backoff) and finds it complete finishes it.
        let revert_done =
            self.status.revert_job.is_some() && self.o.revert_job == JobState::Succeeded;
        let complete = self.is_serving(&stable) && (!revert_needed || revert_done);
        if !complete && self.rollback_deadline_passed() {
            let waiting = if self.status.revert_job.is_some() {
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
        let reason = conditions::get(&self.status.conditions, condition::DEGRADED)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        self.status.phase = Some(Phase::RolledBack);
        if self.spec().migrations.enabled && self.status.schema_version == stable_schema {
            let revision = stable_schema.map_or_else(|| "?".to_owned(), |r| r.to_string());
            self.set_condition(
                condition::MIGRATIONS_APPLIED,
                true,
                "SchemaAtRevision",
                format!("schema at revision {revision}, as {} needs", stable.version),
            );
        }
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
    fn revert_schema(&mut self, revision: i64) -> bool {
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

    /// The rollback has a deadline of its own: `progressDeadlineSeconds` from the failure
    /// that started it (when Degraded turned True).
    fn rollback_deadline_passed(&self) -> bool {
        conditions::get(&self.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .is_some_and(|c| {
                self.o.now
                    >= c.last_transition_time.0 + seconds(self.spec().progress_deadline_seconds)
            })
    }

    /// Ends a rollback that cannot finish: Failed, with the reason and what it waited for.
    fn abort_rollback(&mut self, reason: &str, message: String) {
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        self.note(true, reason, message.clone());
        self.push_history(Outcome::Failed, Some(reason.to_owned()), Some(message));
        self.status.phase = Some(Phase::Failed);
    }

    fn settled(&mut self, serving: Option<Workload>) {
        self.workload = serving;
    }

    /// Time paused does not count toward the release deadline: a pause is recorded when
    /// it begins, and on unpause the start time moves forward by its length.
    fn stop_the_clock_while_paused(&mut self) {
        let in_flight = matches!(
            self.status.phase,
            Some(Phase::Pending | Phase::Migrating | Phase::RollingOut | Phase::Verifying)
        );
        if self.spec().paused && in_flight {
            if self.status.paused_since.is_none() {
                self.status.paused_since = Some(self.now.clone());
            }
        } else if let Some(since) = self.status.paused_since.take()
            && let Some(start) = self.status.release_start_time.as_mut()
        {
            let paused = self.now.0.duration_since(since.0);
            start.0 += paused;
        }
    }

    fn pause(&mut self) {
        self.set_hold(
            "Paused",
            "spec.paused is true; the release waits at this step".to_owned(),
        );
    }

    fn set_hold(&mut self, reason: &'static str, message: String) {
        self.hold = Some((reason, message));
        self.requeue_after = SETTLED;
    }

    // ----- conditions and events from the outcome -----------------------------------------

    fn finish(mut self) -> Decision {
        let phase = self.status.phase.unwrap_or(Phase::Pending);
        let version = self.version().to_owned();
        let stable = self.status.stable_version.clone();
        let (progressing, p_reason, p_message) = match (&self.hold, phase) {
            (Some((reason, message)), _) => (false, *reason, message.clone()),
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
        let in_flight = matches!(
            phase,
            Phase::Pending
                | Phase::Migrating
                | Phase::RollingOut
                | Phase::Verifying
                | Phase::RollingBack
        );
        let (ready, r_reason, r_message) = match phase {
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
            _ => (false, "Releasing", format!("{version} is not released yet")),
        };
        self.set_condition(condition::READY, ready, r_reason, r_message);

        // Available: some version serves, the desired one or the stable one.
        let (available, a_reason, a_message) = match (phase, &stable) {
            (Phase::Succeeded, _) => (true, "Serving", format!("{version} serves")),
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
            None if in_flight => (true, phase_name(phase), format!("releasing {version}")),
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
            (Phase::RolledBack | Phase::Failed, _, Some((reason, message))) => {
                (true, reason, message)
            }
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
        let s_message = if stalled {
            format!("{s_message}; change spec.version or spec.retryToken to go on")
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
        }
    }
}

/// The spec a workload's pod template is built from.
pub fn spec_for<'a>(o: &Observed<'a>, workload: &Workload) -> &'a ListaCompraReleaseSpec {
    match workload.spec {
        SpecSource::Current => o.spec,
        SpecSource::Stable => o.stable_spec.unwrap_or(o.spec),
    }
}

/// The hash of the Deployment that runs `workload`.
pub fn desired_hash(o: &Observed<'_>, workload: &Workload) -> String {
    crate::workload::deployment_hash(o.release, spec_for(o, workload), workload)
}

/// CamelCase name of a phase (also the Event reason of a phase change).
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Migrating => "Migrating",
        Phase::RollingOut => "RollingOut",
        Phase::Verifying => "Verifying",
        Phase::Succeeded => "Succeeded",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
    }
}

fn summarize(results: &[KpiResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{} {:?}: {}",
                r.name,
                r.verdict,
                r.message.clone().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe(results: &[KpiResult], names: &[String]) -> String {
    results
        .iter()
        .filter(|r| names.contains(&r.name))
        .map(|r| format!("{} ({})", r.name, r.message.clone().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
