//! The `ListaCompraRelease` resource and its spec.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisSpec;
use crate::approval::ApprovalPolicy;
use crate::backups::BackupSpec;
use crate::health::HealthGateSpec;
use crate::migrations::MigrationSpec;
use crate::preflight::PreflightSpec;
use crate::smoke::SmokeTestSpec;
use crate::status::ListaCompraReleaseStatus;
use crate::workload::{ApiEnvironment, ImageSpec, PodSettings, ServiceSpec, WorkerSpec};

/// Semantic version 2.0.0, as published at semver.org (without a leading `v`).
pub const SEMVER_PATTERN: &str = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$";

/// Annotation that aborts one attempt of a release: its value is the attempt's number
/// (`status.attempt`). The operator stops the attempt where it stands (deleting a running
/// migration Job, and reverting the schema once it is gone) and rolls back to the stable
/// version, with reason `Aborted`, whatever `rollback.automatic` says (without a stable
/// version it ends Failed). It is metadata, not spec, so a GitOps tool that owns the spec does not revert
/// it; naming the attempt means an abort left on the object never touches a later attempt.
/// `kubectl listacompra abort` sets it.
pub const ABORT_ANNOTATION: &str = "listacompra.app/abort";

/// A release of the ListaCompra API: which version to run, and how to release it safely.
///
/// When `version` (or `retryToken`) changes, the operator migrates the schema, rolls out the
/// Deployment, checks health and KPIs, and either marks the version stable or rolls back to
/// the stable one. The spec is never written by the operator.
// Each `printcolumn(...)` repeats `type_ = "string"`: clippy reads that as duplication.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "listacompra.app",
    version = "v1alpha1",
    kind = "ListaCompraRelease",
    plural = "listacomprareleases",
    singular = "listacomprarelease",
    shortname = "lcr",
    category = "listacompra",
    namespaced,
    status = "ListaCompraReleaseStatus",
    doc = "A release of the ListaCompra API: which version to run, and how to release it safely (migrations, rollout, health and KPI gates, rollback).",
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "Version in the spec",
        json_path = ".spec.version"
    ),
    printcolumn(
        name = "Stable",
        type_ = "string",
        description = "Last version that passed every gate",
        json_path = ".status.stableVersion"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "Where the release stands",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Ready condition",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Backup",
        type_ = "date",
        description = "Newest successful backup (spec.backups)",
        json_path = ".status.backups.lastSuccessfulTime",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.version.contains('+') || has(self.image.tag) || has(self.image.digest)").message("spec.version has build metadata ('+...'), which an image tag cannot carry: set spec.image.tag (or spec.image.digest) explicitly").field_path(".version"))]
#[x_kube(validation = Rule::new("!has(self.smokeTest) || !has(self.worker) || self.worker.replicas > 0").message("spec.smokeTest asks for AI suggestions, which only a worker answers: set spec.worker.replicas to 1 or more, or remove spec.smokeTest").field_path(".worker.replicas"))]
#[x_kube(validation = Rule::new("!has(self.preflight) || has(self.preflight.firingAlerts.prometheus) || has(self.analysis)").message("spec.preflight.firingAlerts.prometheus is required when spec.analysis is not set (there is no Prometheus to default to)").field_path(".preflight.firingAlerts"))]
pub struct ListaCompraReleaseSpec {
    /// The semantic version being released, e.g. `1.4.0`. Changing it starts a release. With
    /// build metadata (`1.4.0+build.5`), `image.tag` or `image.digest` must be set, since a
    /// tag cannot contain `+`.
    #[schemars(length(max = 128), regex(pattern = SEMVER_PATTERN))]
    pub version: String,
    /// The API server image. Its tag defaults to `version`.
    pub image: ImageSpec,
    /// Number of API pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// The Service in front of the API pods.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Labels, annotations, ServiceAccount and resources of the API pods (labels,
    /// annotations and ServiceAccount also of the worker pods).
    #[serde(default)]
    pub pod: PodSettings,
    /// The AI worker and outbox relay (`<name>-worker`): replicas and resources. They run
    /// the released version with the API and roll back with it.
    #[serde(default)]
    pub worker: WorkerSpec,
    /// The API server's environment, by Secret and ConfigMap reference.
    pub env: ApiEnvironment,
    /// Approvals each attempt needs before it launches anything (the runbook's "approval
    /// of QA + Product Owner"): the release waits in phase `AwaitingApproval`, naming the
    /// roles still missing, until a `ListaCompraApproval` for this release, version and
    /// attempt exists for every required role. The progress deadline starts once it
    /// launches. Without `approvals`, a release starts at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalPolicy>,
    /// What must hold right before an attempt launches (after its approvals): no matching
    /// alert firing in Prometheus. Without `preflight`, nothing is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightSpec>,
    /// The schema migration Job. Required, so that every release states the schema revision
    /// it needs (or says `enabled: false`).
    pub migrations: MigrationSpec,
    /// The health gate: after the rollout, the operator calls the liveness and readiness paths
    /// (with the health-check token) until `successThreshold` checks in a row pass, or
    /// `failureThreshold` checks in a row fail.
    #[serde(default)]
    pub health: HealthGateSpec,
    /// The smoke-test gate: after the health gate, a Job of the new image uses the API as a
    /// user would against the new pods; the KPI analysis starts once it passed. Without
    /// `smokeTest`, no smoke test runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeTestSpec>,
    /// The KPI gate: Prometheus queries the new version must keep within bounds. After
    /// `initialDelaySeconds`, every `intervalSeconds` each KPI is measured once, `measurements`
    /// times in all. A measurement fails when an enforced KPI is out of bounds and is
    /// inconclusive when a KPI cannot be judged (no data, too few samples, Prometheus
    /// unreachable). More failures than `failureLimit` fail the gate; more inconclusive
    /// measurements than `inconclusiveLimit` make it inconclusive (see
    /// `rollback.onInconclusive`). Without `analysis`, a release is judged on health alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// What happens when a gate fails: automatic rollback of the workload and, when the schema
    /// moved, of the schema.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// Seconds the whole release (migration, rollout, health and analysis) may take before
    /// it counts as failed.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 30, max = 86400))]
    pub progress_deadline_seconds: i32,
    /// Stop at the next step boundary and wait until unpaused.
    #[serde(default)]
    pub paused: bool,
    /// Scheduled pgBackRest backups of the database (full and incremental CronJobs). Without
    /// `backups`, the operator schedules none (and deletes the CronJobs it made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupSpec>,
    /// Change this value to retry a version that failed, without changing `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub retry_token: Option<String>,
}

/// What the operator does when a gate fails.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// Roll back automatically. When false, a failed release stays in place for a person.
    #[serde(default = "yes")]
    pub automatic: bool,
    /// Also revert the schema to the stable version's revision (runs a revert Job).
    #[serde(default = "yes")]
    pub revert_schema: bool,
    /// What an inconclusive KPI analysis does.
    #[serde(default)]
    pub on_inconclusive: InconclusivePolicy,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self {
            automatic: true,
            revert_schema: true,
            on_inconclusive: InconclusivePolicy::default(),
        }
    }
}

/// What an inconclusive analysis does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum InconclusivePolicy {
    /// Pause the release for a person to decide.
    #[default]
    Pause,
    /// Treat it as a failure and roll back.
    Rollback,
}

fn yes() -> bool {
    true
}

fn default_replicas() -> i32 {
    2
}

fn default_progress_deadline() -> i32 {
    1800
}
