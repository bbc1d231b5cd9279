//! What the operator reports: phase, conditions, versions, the last analysis and history.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRecord;

/// Condition types the operator sets.
pub mod condition {
    /// The desired version (`spec.version`) serves and passed every gate. False while a
    /// release is in flight, after a rollback and after a failure (kstatus: not Current).
    pub const READY: &str = "Ready";
    /// A version serves traffic: the desired one, or the stable one after a rollback or
    /// while a release is in flight.
    pub const AVAILABLE: &str = "Available";
    /// kstatus: an attempt is in flight and moving (pending, migrating, rolling out,
    /// verifying, rolling back).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the attempt ended rolled back or failed, or waits for a person; nothing
    /// moves until `spec.version` or `spec.retryToken` changes.
    pub const STALLED: &str = "Stalled";
    /// A release is moving (migrating, rolling out, verifying or rolling back).
    pub const PROGRESSING: &str = "Progressing";
    /// The last release failed; the reason names the gate and the KPI.
    pub const DEGRADED: &str = "Degraded";
    /// The workload (and schema, when allowed) was rolled back to the stable version.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The schema is at the revision the current version needs.
    pub const MIGRATIONS_APPLIED: &str = "MigrationsApplied";
}

/// Most history entries kept in status; older ones are dropped.
pub const MAX_HISTORY: usize = 10;

/// Observed state of a `ListaCompraRelease`, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListaCompraReleaseStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the release stands, for people. Conditions are the machine-readable truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Conditions following the Kubernetes API conventions: Ready, Available, Progressing,
    /// Reconciling, Stalled, Degraded, RolledBack, MigrationsApplied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The number of the current (or last) release attempt. It grows by one each time a
    /// release starts: a new version, a new retry token, or a return to a version that ran
    /// before. The attempt's Jobs carry it in their name and in the label
    /// `listacompra.app/attempt`; a Job of another attempt is never taken for this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    /// The version the current (or last) release is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// The image of the current (or last) release, recorded when it started. A schema revert
    /// runs this image (it knows the down migrations), whatever the spec says meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
    /// The last version that passed every gate; what a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// The last version that failed; it is not retried until the version or the retry token
    /// changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<String>,
    /// Image of the stable version; a rollback runs it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_image: Option<String>,
    /// The schema revision the stable version needs; a schema revert goes back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_schema_version: Option<i64>,
    /// The schema revision applied to the database by the last migration Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// The `spec.retryToken` the current release started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_retry_token: Option<String>,
    /// When the current attempt began (its approvals must be given after this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_start_time: Option<Time>,
    /// When the current release started (the deadline counts from here; time spent paused
    /// moves it forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_start_time: Option<Time>,
    /// Since when the current release is paused (`spec.paused`). Time paused does not count
    /// toward the deadline: on unpause `releaseStartTime` moves forward by it, so a long
    /// pause never makes the release fail (or kill the Job it starts) right after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Time>,
    /// The backup taken right before the latest migration (with `spec.backups`), while it
    /// is taken and once complete: the point a restore returns the database to. One that is
    /// stopped (abort, new target, deadline) or fails is removed; a new attempt without a
    /// migration leaves the last one here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    /// Name of the migration Job of the current release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_job: Option<String>,
    /// Name of the schema revert Job of the current rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_job: Option<String>,
    /// When the rollout became available and the gates started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_start_time: Option<Time>,
    /// The approvals the current attempt counted, one per required role (while it waits in
    /// `AwaitingApproval`, those given so far).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRecord>,
    /// Progress of the health gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthProgress>,
    /// The smoke test of the current attempt: of the new version while it is verified, then
    /// of the stable version after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeTestProgress>,
    /// The latest KPI measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisReport>,
    /// Past releases, newest first, at most ten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<HistoryEntry>,
    /// Fingerprint of the Secrets the API pods consume (their names and resourceVersions),
    /// stamped on the pod template: when a Secret changes, the pods are rolled with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_version: Option<String>,
    /// The latest rotation: the pods of the serving version rolled because a Secret they
    /// consume changed, verified by the health gate alone (no migration, no smoke test, no
    /// KPI analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<SecretsRotation>,
    /// The `ListaCompraRestore` the release carries out, taken up while no attempt was in
    /// flight; unset once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<ActiveRestore>,
    /// The scheduled backups (`spec.backups`): the last run and the last success of each kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
}

/// A pgBackRest backup taken by one attempt before its migration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The Job that takes it.
    pub job: String,
    /// The attempt it belongs to.
    pub attempt: i64,
    /// The schema revision of the database it holds (the one before the migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// The pgBackRest annotation that marks its backup set (`pgbackrest info` lists it):
    /// `listacompra-snapshot=<job>`.
    pub annotation: String,
    /// When the Job was created.
    pub start_time: Time,
    /// When the backup was complete; unset while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// The restore a release carries out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRestore {
    /// Name of the `ListaCompraRestore`.
    pub name: String,
    /// Its uid: a restore deleted and created again under the same name is another one.
    pub uid: String,
    /// The phase the release was in when it took the restore up, and returns to after it.
    pub return_phase: Phase,
    /// When the release took it up.
    pub start_time: Time,
    /// The approvals it was taken up with (with `spec.approvals`), one per required role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRecord>,
    /// The step the restore was last seen at, and whether it had failed there: what the
    /// release knows of it if the restore is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<crate::restore::RestoreStep>,
    /// The restore was last seen failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// The scheduled backups, as their CronJobs report them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupsStatus {
    /// The newest successful backup of either kind (the `Backup` column of `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The full backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<BackupRuns>,
    /// The incremental backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<BackupRuns>,
    /// Why the schedules could not be applied, when they could not (for example a schedule
    /// the API server refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One kind of backup: its CronJob and what it last did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRuns {
    /// The CronJob that runs them.
    pub cron_job: String,
    /// When a backup was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a backup last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
}

/// The pods of the serving version rolled with changed Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsRotation {
    /// The version whose pods were rolled.
    pub version: String,
    /// The Secrets' fingerprint the pods were rolled with (see `secretsVersion`).
    pub secrets_version: String,
    /// When the change was seen and the roll began.
    pub start_time: Time,
    /// The health gate of the rolled pods (from when every pod was updated and available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthProgress>,
    /// When it ended: passed, or failed (see `failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why it failed, when it did. The old values are gone, so nothing is rolled back: the
    /// release is Stalled until the Secret changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl ListaCompraReleaseStatus {
    /// Whether this status is about the attempt for `spec`: its version, its retry token and
    /// its image. When it is not, a new attempt starts (a changed version or retry token, or
    /// a new tag or digest under the same version: a new build passes every gate again, and
    /// an attempt never ends Succeeded with an image its gates did not see), and whatever the
    /// status says is about an earlier one.
    pub fn describes(&self, spec: &crate::ListaCompraReleaseSpec) -> bool {
        let image = spec.image.reference(&spec.version);
        // The image the attempt started with (a status written before attempts recorded it:
        // the stable image of a settled release).
        let attempted = self
            .current_image
            .as_deref()
            .or(if self.phase == Some(Phase::Succeeded) {
                self.stable_image.as_deref()
            } else {
                None
            });
        self.current_version.as_deref() == Some(spec.version.as_str())
            && self.observed_retry_token == spec.retry_token
            && attempted.is_none_or(|a| a == image)
    }
}

/// Where a release stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing done yet.
    Pending,
    /// Waits for the approvals `spec.approvals` requires; the Reconciling condition names
    /// the roles still missing. Nothing is launched and the deadline does not run.
    AwaitingApproval,
    /// The migration Job runs.
    Migrating,
    /// The Deployment rolls to the new version.
    RollingOut,
    /// The health and KPI gates run.
    Verifying,
    /// The version passed every gate and is stable.
    Succeeded,
    /// The workload (and schema) return to the stable version.
    RollingBack,
    /// The stable version serves again; the new version failed.
    RolledBack,
    /// The release cannot proceed and cannot roll back; see the Degraded condition.
    Failed,
    /// A `ListaCompraRestore` of its database runs (see `status.restore`); no attempt starts
    /// until it ends. Then the release returns to the phase it was in, or is Failed when
    /// the restore failed after it stopped PostgreSQL.
    Restoring,
}

impl Phase {
    /// An attempt is in flight and moving forward (Pending to Verifying): a new target
    /// supersedes it, a pause stops its clock, an abort ends it. RollingBack is not.
    pub fn advancing(self) -> bool {
        matches!(
            self,
            Self::Pending
                | Self::AwaitingApproval
                | Self::Migrating
                | Self::RollingOut
                | Self::Verifying
        )
    }
}

/// Progress of the health gate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthProgress {
    /// Checks in a row that passed, until the gate passed.
    pub consecutive_successes: i32,
    /// Checks in a row that failed, before or after the gate passed.
    pub consecutive_failures: i32,
    /// When the last written check ran. After the gate passed, the watch writes only
    /// failures and the check that ends them: passing checks change nothing here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
    /// What the last written check found, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The gate passed; it is then watched until the verdict (stays true if the watch
    /// fails the release: the Degraded condition says so).
    #[serde(default)]
    pub passed: bool,
}

/// Progress of one smoke-test Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTestProgress {
    /// Name of the Job.
    pub job: String,
    /// The version it tests.
    pub version: String,
    /// When the operator created the Job.
    pub start_time: Time,
    /// When it ended (passed or failed); unset while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// It passed.
    #[serde(default)]
    pub passed: bool,
    /// Why it failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One KPI measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisReport {
    /// When the measurement was taken.
    pub measured_at: Time,
    /// Number of this measurement (from 1).
    pub measurement: i32,
    /// Failed measurements so far in this release.
    pub failures: i32,
    /// Inconclusive measurements so far in this release.
    pub inconclusives: i32,
    /// Value and verdict per KPI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kpis: Vec<KpiResult>,
}

/// The measured value of one KPI and its verdict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KpiResult {
    /// The KPI's name.
    pub name: String,
    /// The value the query returned, when it returned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, for people (for example `412.3 > max 350`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The verdict on a KPI, a measurement or a gate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// Within bounds.
    Pass,
    /// Out of bounds.
    Fail,
    /// Could not be judged.
    Inconclusive,
}

/// One past release.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The version released.
    pub version: String,
    /// The schema revision it needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// When it started.
    pub start_time: Time,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// How it ended.
    pub outcome: Outcome,
    /// CamelCase reason, e.g. `KpiBreached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who approved it, as which role, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRecord>,
}

/// How a release ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Outcome {
    /// Passed every gate.
    Succeeded,
    /// Failed and was rolled back.
    RolledBack,
    /// Failed and could not be rolled back.
    Failed,
    /// Replaced by a newer version before it ended.
    Superseded,
}
