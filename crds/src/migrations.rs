//! The migration Job that moves the database schema before the new pods roll out.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How the release migrates the database schema.
///
/// Schema revisions are the numbers of the API's migrations (`api-server/migrations`). The
/// operator runs `<command> --to <schemaVersion>` as a Job with the release's image and
/// environment, and on rollback `<command> --to <the stable version's schemaVersion>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.schemaVersion)").message("migrations.schemaVersion is required when migrations are enabled").field_path(".schemaVersion"))]
#[x_kube(validation = Rule::new("!has(self.minSchemaVersion) || !has(self.schemaVersion) || self.minSchemaVersion <= self.schemaVersion").message("migrations.minSchemaVersion must not be greater than migrations.schemaVersion").field_path(".minSchemaVersion"))]
pub struct MigrationSpec {
    /// Run migrations for this release. When false, no Job runs and the schema is not tracked.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Command of the migration container; the operator appends `--to <revision>`.
    #[serde(default = "default_command")]
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// The schema revision this version needs (its newest migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub schema_version: Option<i64>,
    /// The oldest schema revision this version still runs on. Defaults to `schemaVersion`.
    /// A rollback to a version whose range excludes the current schema reverts the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_schema_version: Option<i64>,
    /// Retries of the migration pod before the Job counts as failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// Seconds the Job may run before it is stopped and counts as failed.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: i64,
    /// Annotations of the migration pod (for example to opt out of a service mesh).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

impl Default for MigrationSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            command: default_command(),
            schema_version: None,
            min_schema_version: None,
            backoff_limit: default_backoff_limit(),
            active_deadline_seconds: default_active_deadline(),
            pod_annotations: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_command() -> Vec<String> {
    vec!["listacompra-api".to_owned(), "migrate".to_owned()]
}

fn default_backoff_limit() -> i32 {
    1
}

fn default_active_deadline() -> i64 {
    600
}
