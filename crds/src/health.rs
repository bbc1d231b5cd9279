//! The health gate: the new pods must answer their liveness and readiness endpoints.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::workload::SecretKeyRef;

/// How the operator checks the health of the rolled-out version. The gate runs first; once it
/// passed, it keeps checking at `intervalSeconds` (without the token) while the smoke test
/// and the analysis run, until the release's verdict, so a version that stops answering then
/// fails too; the verdict waits while such a failure streak is open. It cannot fail a release
/// whose smoke test and analysis end before `failureThreshold × intervalSeconds`; it does
/// not check while the release is paused or held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.timeoutSeconds <= self.intervalSeconds").message("health.timeoutSeconds must not exceed health.intervalSeconds").field_path(".timeoutSeconds"))]
pub struct HealthGateSpec {
    /// Liveness path, answered without touching dependencies.
    #[serde(default = "default_liveness")]
    #[schemars(regex(pattern = r"^/\S*$"))]
    pub liveness_path: String,
    /// Readiness path, answered only when PostgreSQL, Redis and RabbitMQ are reachable.
    #[serde(default = "default_readiness")]
    #[schemars(regex(pattern = r"^/\S*$"))]
    pub readiness_path: String,
    /// Secret key holding the health-check token. Defaults to `spec.env.healthcheckToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// HTTP header that carries the token.
    #[serde(default = "default_header")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub token_header: String,
    /// Seconds between two checks.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// Seconds before one check times out.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Consecutive passing checks that make the gate pass.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: i32,
    /// Consecutive failing checks that make the gate fail (and the release fail, rolling
    /// back when `rollback.automatic`), before or after the gate passed.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Base URL to check instead of the in-cluster Service, e.g. `https://api.staging.example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub base_url: Option<String>,
}

impl Default for HealthGateSpec {
    fn default() -> Self {
        Self {
            liveness_path: default_liveness(),
            readiness_path: default_readiness(),
            token_secret_ref: None,
            token_header: default_header(),
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            success_threshold: default_success_threshold(),
            failure_threshold: default_failure_threshold(),
            base_url: None,
        }
    }
}

fn default_liveness() -> String {
    "/health".to_owned()
}
fn default_readiness() -> String {
    "/ready".to_owned()
}
fn default_header() -> String {
    "X-Healthcheck-Token".to_owned()
}
fn default_interval() -> i32 {
    5
}
fn default_timeout() -> i32 {
    2
}
fn default_success_threshold() -> i32 {
    3
}
fn default_failure_threshold() -> i32 {
    3
}
