//! Scheduled pgBackRest backups of the release's database: the runbook's "incremental backups
//! every 6 h and a full one daily with pgBackRest", as CronJobs the operator owns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::restore::{DNS_LABEL_PATTERN, DataVolume};
use crate::workload::{EnvFromRef, IMAGE_REPOSITORY_PATTERN, RESOURCES_ARE_QUANTITIES};

/// A cron schedule as a CronJob takes it: five fields (each `*`, a number, a range or a name
/// such as `MON`, with an optional step, in a comma list), or a macro such as `@daily`.
pub const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*( +(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*){4})$";

/// The pgBackRest stanza name: letters, digits, `-`, `_` and `.`.
pub const STANZA_PATTERN: &str = r"^[A-Za-z0-9][-_.A-Za-z0-9]*$";

/// Scheduled backups of the release's database with pgBackRest.
///
/// The operator keeps two CronJobs, `<release>-backup-full` and `<release>-backup-incr`, that
/// run `pgbackrest --stanza=<stanza> --type=full|incr backup` in `image`. pgBackRest reads its
/// options (repository, `pg1-host` or `pg1-path`, encryption passphrase) from the
/// environment, `PGBACKREST_<OPTION>`, taken from the ConfigMaps and Secrets `envFrom` names;
/// the stanza must have been created (`pgbackrest stanza-create`) and PostgreSQL must archive
/// its WAL to the same repository (`archive_command = 'pgbackrest ... archive-push %p'`). A
/// backup Job succeeds only when pgBackRest has the backup and the WAL that makes it
/// consistent. The last success of each kind is in `status.backups` and in the metric
/// `listacompra_backup_last_success_timestamp_seconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(RESOURCES_ARE_QUANTITIES).message("backups.resources: cpu, memory and ephemeral-storage requests and limits must be quantities such as 500m, 0.5, 256Mi or 1Gi").field_path(".resources"))]
pub struct BackupSpec {
    /// The image with pgBackRest (its `pgbackrest` program on the `PATH`), for example a
    /// Debian image with the `pgbackrest` package. Its `/tmp` is an empty folder of the pod's
    /// own (the root filesystem is read-only): pgBackRest's default lock path is there.
    pub image: BackupImage,
    /// The pgBackRest stanza of the release's database.
    #[serde(default = "default_stanza")]
    #[schemars(length(min = 1, max = 63), regex(pattern = STANZA_PATTERN))]
    pub stanza: String,
    /// ConfigMaps and Secrets whose keys become the backup container's environment: the
    /// pgBackRest options as `PGBACKREST_<OPTION>` variables (`PGBACKREST_REPO1_PATH`,
    /// `PGBACKREST_PG1_HOST`, `PGBACKREST_REPO1_CIPHER_PASS` from a Secret, ...). At least one.
    #[schemars(length(min = 1, max = 16))]
    pub env_from: Vec<EnvFromRef>,
    /// The full backup: daily at 01:00 by default.
    #[serde(default = "default_full")]
    pub full: BackupSchedule,
    /// The incremental backup (changes since the last backup of any kind): every 6 hours by
    /// default.
    #[serde(default = "default_incremental")]
    pub incremental: BackupSchedule,
    /// Time zone of the schedules, as a tz database name (`Europe/Madrid`). Default: the
    /// time zone of kube-controller-manager (UTC on most clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][-+_/A-Za-z0-9]*$")
    )]
    pub time_zone: Option<String>,
    /// Seconds a backup may run before its Job is stopped and counts as failed.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 60, max = 172800))]
    pub active_deadline_seconds: i64,
    /// The user id the backup container runs as: the owner of the repository's files (and,
    /// with a local `pg1-path`, of the data folder). Default: the image's user. Never 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// The group id of the backup container. Default: the image's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_group: Option<i64>,
    /// CPU and memory requests and limits of the backup container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Annotations of the backup pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_annotations: BTreeMap<String, String>,
    /// Where the PostgreSQL these backups are of runs, for a `ListaCompraRestore` to stop it
    /// and restore into it. Without it, restores of this release are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseTarget>,
}

/// The PostgreSQL a restore stops, restores into and starts again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseTarget {
    /// The StatefulSet (in this namespace) that runs PostgreSQL, with one replica. A restore
    /// scales it to 0 before pgBackRest writes its data folder, and back to 1 afterwards; a
    /// GitOps tool must not put its `replicas` back meanwhile (Argo CD: `ignoreDifferences`
    /// on `/spec/replicas`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub stateful_set: String,
    /// The PersistentVolumeClaim with PostgreSQL's data folder (for the StatefulSet's pod,
    /// `<claim template>-<statefulset>-0`), mounted into the restore Job. The pgBackRest
    /// options (`envFrom`) must point `PGBACKREST_PG1_PATH` at the data folder inside it.
    /// Without it, the restore Job mounts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<DataVolume>,
}

/// The pgBackRest image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupImage {
    /// Image repository without tag or digest.
    #[schemars(length(min = 1, max = 255), regex(pattern = IMAGE_REPOSITORY_PATTERN))]
    pub repository: String,
    /// Image tag.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w][\w.-]{0,127}$"))]
    pub tag: String,
}

impl BackupImage {
    /// The image reference: `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// When one kind of backup runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// Cron schedule (five fields, or `@daily`, `@hourly`, ...), in `timeZone`.
    #[schemars(length(min = 1, max = 128), regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// Seconds after which the newest successful backup of this kind is too old: the alert
    /// `ListaCompraBackupTooOld` fires (metric `listacompra_backup_max_age_seconds`).
    #[schemars(range(min = 60))]
    pub max_age_seconds: i64,
    /// Stop scheduling this kind of backup (a running one finishes).
    #[serde(default)]
    pub suspend: bool,
}

fn default_stanza() -> String {
    "listacompra".to_owned()
}

fn default_full() -> BackupSchedule {
    BackupSchedule {
        schedule: "0 1 * * *".to_owned(),
        max_age_seconds: 26 * 3600,
        suspend: false,
    }
}

fn default_incremental() -> BackupSchedule {
    BackupSchedule {
        schedule: "0 */6 * * *".to_owned(),
        max_age_seconds: 7 * 3600,
        suspend: false,
    }
}

fn default_active_deadline() -> i64 {
    6 * 3600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cron_pattern_takes_what_a_cron_job_takes_and_refuses_the_rest() {
        let pattern = regex::Regex::new(CRON_PATTERN).unwrap();
        for good in [
            "0 1 * * *",
            "0 */6 * * *",
            "*/2 * * * *",
            "1-59/2 * * * *",
            "0 3 * * MON-FRI",
            "0 0 1,15 JAN *",
            "@daily",
            "@hourly",
        ] {
            assert!(pattern.is_match(good), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "every day",
            "@often",
            "0 1 * * *; rm",
            "0  1 * * *\n",
        ] {
            assert!(!pattern.is_match(bad), "{bad:?} should be refused");
        }
    }
}
