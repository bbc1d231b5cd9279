//! The release state machine: a pure function from what the operator observed to what it
//! should do next. No I/O here; `controller` gathers [`Observed`] and carries out the
//! [`Decision`].
//!
//! ```text
//! Pending ⇄ AwaitingApproval      (Pending also waits for references and pre-flight alerts)
//!    └→ Migrating (snapshot, then migration) → RollingOut → Verifying (health, smoke test,
//!          │                                   KPIs) → Succeeded
//!          │            │            │
//!          └────────────┴────────────┴──▶ RollingBack → RolledBack
//!                                              └──────▶ Failed
//!
//! Succeeded | RolledBack | Failed → Restoring (a ListaCompraRestore) → back, or Failed
//! ```
//!
//! Every step is idempotent and all progress lives in the status and the child objects, so
//! a restarted operator resumes where the last one stood.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::status::{KpiResult, condition};
use listacompra_crds::{ListaCompraReleaseSpec, ListaCompraReleaseStatus, Phase};

mod aborting;
mod approving;
mod machine;
mod migrating;
mod pending;
mod preflight;
mod report;
mod restoring;
mod rolling_back;
mod rolling_out;
mod rotating;
mod smoke;
mod verifying;

pub use aborting::honoured as abort_honoured;
pub use approving::Approval;
use machine::Machine;
pub use migrating::snapshot_annotation;
pub use preflight::FiringAlert;
pub use restoring::{Refusal, RestoreSeen, holds_traffic};

use crate::conditions;
use crate::naming::JobPurpose;
use crate::references::Reference;
use crate::workload::{SpecSource, Workload};

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

/// State of the release's workload: its API and worker Deployments (see
/// [`crate::rollout::workload_state`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadState {
    /// Hash of what the operator last applied (the API Deployment's annotation), if it
    /// exists.
    pub hash: Option<String>,
    /// Both Deployments have rolled out that workload (the worker's only when it exists or
    /// is wanted: see [`crate::rollout::workload_state`]): all replicas updated and
    /// available, none of an older template left.
    pub available: bool,
    /// A Deployment reported `ProgressDeadlineExceeded`, with its message.
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
    /// The smoke-test Job named in the status.
    pub smoke_job: JobState,
    /// The snapshot Job named in the status (see [`ListaCompraReleaseStatus::snapshot`]).
    pub snapshot_job: JobState,
    /// The API and worker Deployments.
    pub workload: WorkloadState,
    /// A health check performed for this reconcile (see [`gate_due`]).
    pub health_check: Option<Result<(), String>>,
    /// A KPI measurement performed for this reconcile (see [`gate_due`]).
    pub measurement: Option<Vec<KpiResult>>,
    /// When the controller last ran a watch check of the passed health gate (see
    /// [`health_watching`]): passing watch checks are not written to status, so their
    /// schedule lives in the controller's memory (after a restart the first one runs at once).
    pub last_health_watch: Option<Timestamp>,
    /// The approvals naming this release (read only when [`awaits_approval`]).
    pub approvals: Vec<Approval>,
    /// What the spec names that does not exist (checked only when [`may_launch`]): the
    /// release launches nothing until it is empty.
    pub missing: Vec<Reference>,
    /// Fingerprint of the Secrets the current spec's API pods consume (names and
    /// resourceVersions), when the controller watches Secrets and all of them exist.
    pub secrets_version: Option<String>,
    /// The alerts matching `spec.preflight.firingAlerts` that fire, or why Prometheus could
    /// not say (checked only when [`checks_alerts`]; `None` when not checked).
    pub firing_alerts: Option<Result<Vec<FiringAlert>, String>>,
    /// A child the operator would apply exists and is not controlled by this release (its
    /// kind and name, e.g. `Service lc-api`): it is never taken over.
    pub foreign: Option<String>,
    /// The attempt the release's abort annotation names, if it carries one (see
    /// [`listacompra_crds::release::ABORT_ANNOTATION`]).
    pub abort: Option<i64>,
    /// The `ListaCompraRestore`s naming this release that are pending, and the one it
    /// carries out (`status.restore`), oldest first.
    pub restores: Vec<RestoreSeen>,
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
    /// Create the Job that backs the database up before the migration (with
    /// `spec.backups`; its name is deterministic).
    TakeSnapshot {
        /// Job name.
        name: String,
        /// The release attempt the Job belongs to.
        attempt: i64,
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
    /// The `ListaCompraApproval` the Event is about (its `related` object), if any: two
    /// approvals are two Events, not one counted twice.
    pub approval: Option<String>,
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
    /// Restores refused (their status says why).
    pub refusals: Vec<Refusal>,
    /// Restores that wait for their approvals (their status says for which).
    pub restore_waits: Vec<Refusal>,
    /// A restore stops the API and the worker: `workload` is applied with no replicas.
    pub hold_traffic: bool,
}

/// Which gate checks are due now (both may be: the health gate keeps watching while the KPIs
/// are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateDue {
    /// Run one health check.
    pub health: bool,
    /// Take one KPI measurement.
    pub measurement: bool,
}

impl GateDue {
    /// Nothing to check now.
    pub const NOTHING: Self = Self {
        health: false,
        measurement: false,
    };
    /// One health check only.
    pub const HEALTH: Self = Self {
        health: true,
        measurement: false,
    };
    /// One KPI measurement only.
    pub const MEASUREMENT: Self = Self {
        health: false,
        measurement: true,
    };
}

/// How long to wait on a Job or a rollout at most: their watches wake the release on every
/// change, so this is a safety net (a watch that failed, say), not a poll.
const WAIT: Duration = Duration::from_secs(60);
/// How often to look at a settled release, to repair drift.
const SETTLED: Duration = Duration::from_secs(300);

/// Reconciling reason while a release waits for what its spec names.
const WAITING_FOR_REFERENCES: &str = "WaitingForReferences";
/// Stalled reason (and Event reason) once it has waited past its deadline.
const REFERENCES_MISSING: &str = "ReferencesMissing";
/// How often a release that waits for something outside its control looks again.
const RECHECK: SignedDuration = SignedDuration::from_secs(10);
/// Stalled reason (and Event reason) while a child it would apply belongs to someone else.
const OBJECT_NOT_OWNED: &str = "ObjectNotOwned";
/// Stalled reasons that clear by themselves once the cause is gone (no retry token needed).
const SELF_CLEARING: [&str; 4] = [
    REFERENCES_MISSING,
    OBJECT_NOT_OWNED,
    preflight::SELF_CLEARING[0],
    preflight::SELF_CLEARING[1],
];
/// Appended to a Stalled message that a person must act on.
const STALLED_HINT: &str = "; change spec.version or spec.retryToken to go on";

/// Degraded reason (and Event reason) when the stable version fails its smoke test after a
/// rollback: it serves, but the release ends Failed for a person to look at.
const SMOKE_FAILED_AFTER_ROLLBACK: &str = "SmokeTestFailedAfterRollback";
/// Event reasons of smoke-test verdicts (the controller counts them).
pub const SMOKE_VERDICTS: [(&str, &str); 3] = [
    ("SmokeTestPassed", "pass"),
    ("SmokeTestFailed", "fail"),
    (SMOKE_FAILED_AFTER_ROLLBACK, "fail"),
];

/// Progressing reasons that hold a release until its target changes.
const HOLD_REASONS: [&str; 2] = ["AnalysisPaused", "AnalysisInconclusive"];

fn seconds(n: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(n))
}

/// An attempt in flight that is moving forward (not rolling back): a new target supersedes
/// it, and a pause stops its clock.
fn advancing(phase: Option<Phase>) -> bool {
    phase.is_some_and(Phase::advancing)
}

fn held(status: &ListaCompraReleaseStatus) -> bool {
    conditions::get(&status.conditions, condition::PROGRESSING)
        .is_some_and(|c| c.status == "False" && HOLD_REASONS.contains(&c.reason.as_str()))
}

/// Which gate check the controller should run before calling [`decide`].
pub fn gate_due(
    spec: &ListaCompraReleaseSpec,
    status: &ListaCompraReleaseStatus,
    last_watch: Option<Timestamp>,
    now: Timestamp,
) -> GateDue {
    if status.phase == Some(Phase::Succeeded) && !is_new_target(spec, status) {
        return GateDue {
            health: rotating::health_due(spec, status, now),
            measurement: false,
        };
    }
    if status.phase != Some(Phase::Verifying)
        || spec.paused
        || held(status)
        || is_new_target(spec, status)
    {
        return GateDue::NOTHING;
    }
    let health = status.health.clone().unwrap_or_default();
    // Before it passes, the health gate alone runs; after, it keeps watching (at its
    // interval) while the smoke test and the analysis run, until the verdict.
    let health_due = crate::gates::health::watch_due(&health, &spec.health, last_watch, now);
    if !health.passed {
        return GateDue {
            health: health_due,
            measurement: false,
        };
    }
    let measurement = match (&spec.analysis, smoke::analysis_start(spec, status)) {
        (Some(analysis), Some(start)) => {
            let taken = status.last_analysis.as_ref().map_or(0, |a| a.measurement);
            let next = start.0
                + seconds(analysis.initial_delay_seconds)
                + seconds(analysis.interval_seconds * taken);
            taken < analysis.measurements && now >= next
        }
        _ => false,
    };
    GateDue {
        health: health_due,
        measurement,
    }
}

/// Whether a health check now is a watch check: the release is verified and its health gate
/// passed (see [`Observed::last_health_watch`]).
pub fn health_watching(status: &ListaCompraReleaseStatus) -> bool {
    status.phase == Some(Phase::Verifying) && status.health.as_ref().is_some_and(|h| h.passed)
}

/// A release starts when the version, the retry token or the image under the version
/// changes (see [`ListaCompraReleaseStatus::describes`]).
fn is_new_target(spec: &ListaCompraReleaseSpec, status: &ListaCompraReleaseStatus) -> bool {
    !status.describes(spec)
}

/// Whether this reconcile may launch an attempt's first Job or rollout, so the controller
/// must check that what the spec names exists (see [`Observed::missing`]).
pub fn may_launch(spec: &ListaCompraReleaseSpec, status: &ListaCompraReleaseStatus) -> bool {
    matches!(
        status.phase,
        None | Some(Phase::Pending | Phase::AwaitingApproval)
    ) || (is_new_target(spec, status) && status.phase != Some(Phase::RollingBack))
}

/// Whether this reconcile may count approvals, so the controller must read them (see
/// [`Observed::approvals`]).
pub fn awaits_approval(spec: &ListaCompraReleaseSpec, status: &ListaCompraReleaseStatus) -> bool {
    spec.approvals.is_some() && may_launch(spec, status)
}

/// Whether this reconcile may launch an attempt with a pre-flight check, so the controller
/// must ask Prometheus for the firing alerts (see [`Observed::firing_alerts`]).
pub fn checks_alerts(spec: &ListaCompraReleaseSpec, status: &ListaCompraReleaseStatus) -> bool {
    spec.preflight.is_some() && may_launch(spec, status)
}

/// Decides the next step of a release.
pub fn decide(o: &Observed<'_>) -> Decision {
    let mut m = Machine::new(o);
    // A restore is taken up only while nothing else moves, and holds the release until it
    // ends: no attempt starts meanwhile, whatever the spec says.
    m.take_up_restores();
    if m.status.phase == Some(Phase::Restoring) {
        // Only a restore that broke gives way, to a new version or retry token.
        if !(m.restore_broken() && is_new_target(o.spec, &m.status)) {
            m.restoring();
            return m.finish();
        }
        if let Some(broken) = m.status.restore.take() {
            m.stop_restore_job(&broken);
        }
    }
    if is_new_target(o.spec, o.status) && o.status.phase != Some(Phase::RollingBack) {
        m.start_release(None);
    } else if let Some(restart) = approving::restart_unlaunched(o) {
        m.start_release(Some(restart));
    }
    m.stop_the_clock_while_paused();
    if m.abort_requested() {
        m.abort();
    } else {
        m.step();
    }
    if let (Some(object), Some(_)) = (&o.foreign, &m.workload) {
        m.refuse_takeover(object);
    }
    m.finish()
}

impl Machine<'_, '_> {
    /// One step of the phase the release is in.
    fn step(&mut self) {
        match self.status.phase {
            None | Some(Phase::Pending | Phase::AwaitingApproval) => self.pending(),
            Some(Phase::Migrating) => self.migrating(),
            Some(Phase::RollingOut) => self.rolling_out(),
            Some(Phase::Verifying) => self.verifying(),
            Some(Phase::RollingBack) => self.rolling_back(),
            Some(Phase::Succeeded) => {
                // The stable record is written after the status says Succeeded: put it back if
                // that write was lost.
                if self.o.stable_spec.is_none()
                    && let Some(version) = self.status.stable_version.clone()
                {
                    self.actions.push(Action::RecordStable { version });
                }
                self.serving_target();
            }
            Some(Phase::RolledBack) => self.serving_stable(),
            Some(Phase::Failed) => self.settled(None),
            Some(Phase::Restoring) => self.restoring(),
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

/// The spec a Job of `purpose` that runs `workload` is built from. The stable version's
/// smoke test after a rollback uses the stable spec (its Service port and, when it had one,
/// its smoke-test settings: the stable image may not know a newer command); every other Job
/// the current spec.
pub fn job_spec<'a>(
    o: &Observed<'a>,
    purpose: JobPurpose,
    workload: &Workload,
) -> std::borrow::Cow<'a, ListaCompraReleaseSpec> {
    use std::borrow::Cow;
    if purpose != JobPurpose::SmokeStable {
        return Cow::Borrowed(o.spec);
    }
    let stable = spec_for(o, workload);
    if stable.smoke_test.is_some() {
        return Cow::Borrowed(stable);
    }
    let mut spec = stable.clone();
    spec.smoke_test.clone_from(&o.spec.smoke_test);
    Cow::Owned(spec)
}

/// The spec the Deployments of `workload` are built from: [`spec_for`]'s, except the
/// worker's replicas, which are always the current spec's. They are capacity for the AI
/// queue, not part of a version: `spec.worker.replicas` scales the worker whichever version
/// serves (after a rollback, or while a new attempt waits days for its approvals), and the
/// smoke test after a rollback finds the worker the current spec asks for.
pub fn deployments_spec<'a>(
    o: &Observed<'a>,
    workload: &Workload,
) -> std::borrow::Cow<'a, ListaCompraReleaseSpec> {
    use std::borrow::Cow;
    let base = spec_for(o, workload);
    if base.worker.replicas == o.spec.worker.replicas {
        return Cow::Borrowed(base);
    }
    let mut spec = base.clone();
    spec.worker.replicas = o.spec.worker.replicas;
    Cow::Owned(spec)
}

/// The hash of the Deployments that run `workload`.
pub fn desired_hash(o: &Observed<'_>, workload: &Workload) -> String {
    crate::workload::deployment_hash(o.release, &deployments_spec(o, workload), workload)
}

/// CamelCase name of a phase (also the Event reason of a phase change).
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::AwaitingApproval => "AwaitingApproval",
        Phase::Migrating => "Migrating",
        Phase::RollingOut => "RollingOut",
        Phase::Verifying => "Verifying",
        Phase::Succeeded => "Succeeded",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
        Phase::Restoring => "Restoring",
    }
}

#[cfg(test)]
mod tests;
