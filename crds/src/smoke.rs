//! The smoke-test gate: a Job that uses the API the way a user does, against the pods of the
//! version being released (after the rollout and the health gate, before the KPI analysis),
//! and against the stable version's pods after a rollback.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The smoke-test gate (the runbook's "smoke tests after deploy" and "rollback + re-run
/// smoke tests").
///
/// The operator runs `command` as a Job of the release's image, with `SMOKE_BASE_URL` set to
/// the release's Service (`http://<name>-api.<namespace>.svc:<port>`) and nothing else of the
/// API's environment: the smoke test is a client, it needs no Secret. The Job fails closed:
/// a non-zero exit, a crash, an image that cannot be pulled or a Job that outlives
/// `activeDeadlineSeconds` fails the gate, and the release rolls back. The default command,
/// `listacompra-api smoke`, checks health and readiness, registers a throwaway account, logs
/// in, creates a list, adds and reads back an item, waits for AI suggestions, and deletes the
/// list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTestSpec {
    /// Command of the smoke-test container.
    #[serde(default = "default_command")]
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Seconds the Job may take, pulling the image included, before it is stopped and the
    /// gate fails.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 10, max = 3600))]
    pub active_deadline_seconds: i64,
    /// After a rollback, run the smoke test again against the stable version. When it fails
    /// there too, the release ends Failed (nothing good is serving) instead of RolledBack.
    #[serde(default = "yes")]
    pub after_rollback: bool,
    /// Annotations of the smoke-test pod (for example to opt out of a service mesh's
    /// sidecar, which would keep the Job's pod from ending).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

impl Default for SmokeTestSpec {
    fn default() -> Self {
        Self {
            command: default_command(),
            active_deadline_seconds: default_active_deadline(),
            after_rollback: true,
            pod_annotations: BTreeMap::new(),
        }
    }
}

fn default_command() -> Vec<String> {
    vec!["listacompra-api".to_owned(), "smoke".to_owned()]
}

fn default_active_deadline() -> i64 {
    180
}

fn yes() -> bool {
    true
}
