//! Restores: the runbook's corrupt-database procedure ("stop traffic, restore the last
//! snapshot with pgBackRest, run the pending migrations") as a resource of its own, and the
//! way back from a rollback that kept an irreversible schema.
//!
//! A `ListaCompraRestore` asks that one release's database be restored from a pgBackRest
//! backup set. The release's operator carries it out, one step after another, each recorded
//! with its times in the restore's status and as Events: it stops the API and the worker,
//! stops PostgreSQL (the StatefulSet, scaled to 0), runs `pgbackrest restore` in the
//! release's backup image, starts PostgreSQL, migrates the schema up to the revision the
//! serving version needs, brings the API and the worker back and waits for them to be
//! available, and runs the release's smoke test. A restore asked for while an attempt of the
//! release is in flight is refused, and no attempt starts while a restore runs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRecord;
use crate::workload::DNS_SUBDOMAIN_PATTERN;

/// A pgBackRest backup set label: a full backup (`20261203-101500F`), or a differential or
/// incremental one on top of it (`20261203-101500F_20261203-111500I`).
pub const BACKUP_SET_PATTERN: &str = r"^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$";

/// A DNS label (the name of a StatefulSet or a PersistentVolumeClaim).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A restore of one release's database from a pgBackRest backup set.
///
/// It cannot be changed once created; create another one to restore again. The writes made
/// after the backup are lost: that is what a restore is for.
// Each `printcolumn(...)` repeats `type_ = "string"`: clippy reads that as duplication.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "listacompra.app",
    version = "v1alpha1",
    kind = "ListaCompraRestore",
    plural = "listacomprarestores",
    singular = "listacomprarestore",
    shortname = "lcrestore",
    category = "listacompra",
    namespaced,
    status = "ListaCompraRestoreStatus",
    selectable = ".spec.release",
    doc = "A restore of a ListaCompraRelease's database from a pgBackRest backup set: traffic and PostgreSQL stopped, pgbackrest restore, PostgreSQL started, migrations up, traffic back behind the health and smoke gates.",
    printcolumn(
        name = "Release",
        type_ = "string",
        description = "The release whose database is restored",
        json_path = ".spec.release"
    ),
    printcolumn(
        name = "Set",
        type_ = "string",
        description = "The backup set (empty: the newest)",
        json_path = ".spec.backupSet"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "Where the restore stands",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Step",
        type_ = "string",
        description = "The step it is at (or ended at)",
        json_path = ".status.step"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a restore cannot be changed: delete it and create a new one"))]
pub struct ListaCompraRestoreSpec {
    /// Name of the `ListaCompraRelease` (in this namespace) whose database is restored. The
    /// restore runs pgBackRest with its `spec.backups` (image, stanza, options, user) on the
    /// PostgreSQL its `spec.backups.database` names, so the release must have both: who may
    /// create a restore chooses a set, not which database is stopped or overwritten.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub release: String,
    /// The pgBackRest backup set to restore (`pgbackrest restore --set=`), as `pgbackrest
    /// info` lists it, e.g. `20261203-101500F` or `20261203-101500F_20261203-111500I`. The
    /// set of the snapshot taken before a migration is in that snapshot Job's log ("new
    /// backup label = ...") and in `pgbackrest info` under its annotation. Default: the
    /// newest set. The database is restored to the moment that set became consistent
    /// (`--type=immediate`): later writes are lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = BACKUP_SET_PATTERN))]
    pub backup_set: Option<String>,
}

/// A PersistentVolumeClaim mounted into the restore Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolume {
    /// Name of the PersistentVolumeClaim.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub claim_name: String,
    /// Where it is mounted in the restore container, e.g. `/var/lib/postgresql/data`.
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/[^:]+$"))]
    pub mount_path: String,
}

/// Observed state of a `ListaCompraRestore`, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListaCompraRestoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the restore stands, for people. Conditions are the machine-readable truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The step it is at, or the one it failed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RestoreStep>,
    /// Every step begun, in order, with its times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub steps: Vec<StepRecord>,
    /// Why it was refused or failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions following the Kubernetes API conventions, for kstatus: Ready (restored,
    /// and the release serves again), Reconciling (not done yet), Stalled (refused or failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The StatefulSet's replicas before it was scaled to 0: what it is scaled back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_replicas: Option<i32>,
    /// The schema revision the migrations move the restored database to: the one the
    /// serving version needs. Unset when the release runs no migrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// When the release took it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it succeeded, failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The approvals it was carried out with, one per role the release's `spec.approvals`
    /// requires (a restore loses the writes made since its set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub approvals: Vec<ApprovalRecord>,
}

/// Where a restore stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Not taken up by its release yet (or waiting for its approvals: see `message`).
    Pending,
    /// Not carried out: an attempt of the release was in flight, or the release cannot run
    /// it (see `message`). Nothing was touched.
    Refused,
    /// The steps run; the release starts no attempt meanwhile.
    Restoring,
    /// Restored, migrated, and the release serves again behind its gates.
    Succeeded,
    /// A step failed (see `step` and `message`). Before pgBackRest ran, the release returns
    /// to its phase; after, it stays Restoring (Stalled) for a person.
    Failed,
}

/// One step of a restore, in the order they run.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RestoreStep {
    /// The API and the worker are scaled to 0; the step ends when their pods are gone.
    StoppingTraffic,
    /// PostgreSQL's StatefulSet is scaled to 0; the step ends when its pods are gone.
    StoppingDatabase,
    /// The restore Job runs `pgbackrest restore`.
    Restoring,
    /// The StatefulSet is scaled back; the step ends when its pods are ready.
    StartingDatabase,
    /// A migration Job of the serving version moves the schema to its revision.
    Migrating,
    /// The API and the worker are scaled back; the step ends when they are available.
    StartingTraffic,
    /// The release's smoke test runs against the serving version.
    SmokeTesting,
}

impl RestoreStep {
    /// Every step, in the order they run.
    pub const ORDER: [Self; 7] = [
        Self::StoppingTraffic,
        Self::StoppingDatabase,
        Self::Restoring,
        Self::StartingDatabase,
        Self::Migrating,
        Self::StartingTraffic,
        Self::SmokeTesting,
    ];
}

/// One step's times.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step.
    pub step: RestoreStep,
    /// When it began.
    pub start_time: Time,
    /// When it ended; unset while it runs (or when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_set_pattern_takes_pgbackrest_labels_only() {
        let pattern = regex::Regex::new(BACKUP_SET_PATTERN).unwrap();
        for good in [
            "20261203-101500F",
            "20261203-101500F_20261203-111500I",
            "20261203-101500F_20261204-000000D",
        ] {
            assert!(pattern.is_match(good), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "latest",
            "20261203-101500I",
            "20261203-101500F_",
            "20261203-101500F --type=time",
        ] {
            assert!(!pattern.is_match(bad), "{bad:?} should be refused");
        }
    }
}
