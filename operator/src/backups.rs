//! Scheduled backups (`spec.backups`): the release's two pgBackRest CronJobs, full and
//! incremental, held by server-side apply on every reconcile (deleted when the spec drops
//! them), and what they last did, for the status and the metrics.
//!
//! Backups run beside the release state machine, not inside it: a schedule never waits for a
//! release, and a release never waits for a schedule. Applying them never fails a reconcile;
//! what goes wrong is said in `status.backups.message`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use listacompra_crds::backups::{BackupSchedule, BackupSpec};
use listacompra_crds::restore::DataVolume;
use listacompra_crds::status::{BackupRuns, BackupsStatus};
use tracing::{info, warn};

use crate::controller::Context;
use crate::naming::{self, FIELD_MANAGER};
use crate::workload::{self, Owner};

/// `app.kubernetes.io/name` of the backup Jobs' pods: no Service selects them.
pub const BACKUP_APP: &str = "listacompra-backup";
/// Label key naming the kind of backup (`full`, `incr`) of a CronJob and its Jobs.
pub const BACKUP_LABEL: &str = "listacompra.app/backup";

/// Past Jobs each CronJob keeps, of each outcome, for `kubectl logs`.
const JOB_HISTORY: i32 = 3;
/// How late a missed run (kube-controller-manager down at the scheduled time) may still start.
const STARTING_DEADLINE_SECONDS: i64 = 3600;

/// The two kinds of backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    /// A full copy of the database.
    Full,
    /// The changes since the last backup of any kind.
    Incremental,
}

impl BackupKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::Full, Self::Incremental];

    /// pgBackRest's `--type`, also the metrics' `type` label.
    pub fn pgbackrest_type(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incr",
        }
    }

    /// Name of the CronJob of this kind for `release`: at most 52 characters, as CronJob
    /// names must be. A longer release name is cut and given a hash of the whole name, so
    /// two releases that share a beginning never share their CronJobs.
    pub fn cron_job_name(self, release: &str) -> String {
        let base = if release.len() <= 40 {
            release.to_owned()
        } else {
            let cut = naming::truncate(release, 31)
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            format!("{cut}-{:08x}", naming::fnv1a(release) as u32)
        };
        format!("{base}-backup-{}", self.pgbackrest_type())
    }

    fn schedule(self, spec: &BackupSpec) -> &BackupSchedule {
        match self {
            Self::Full => &spec.full,
            Self::Incremental => &spec.incremental,
        }
    }
}

/// Labels of the backup objects of the release `owner`: `backup` says which (`full`,
/// `incr`, `snapshot`).
fn labels(owner: &Owner, backup: &str) -> BTreeMap<String, String> {
    let mut labels = naming::app_selector(&owner.name, BACKUP_APP);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "listacompra-operator".to_owned(),
    );
    labels.insert(
        naming::RELEASE_LABEL.to_owned(),
        naming::label_value(&owner.name),
    );
    labels.insert(BACKUP_LABEL.to_owned(), backup.to_owned());
    labels
}

/// A Job that runs `pgbackrest --stanza=<stanza> --log-level-console=info <args...>` in
/// `spec`'s image, Pod Security "restricted", with the pgBackRest options of `spec.envFrom`
/// (and `data` mounted, for a restore), retried `backoff_limit` times. At level `info` its
/// log (`kubectl logs job/<name>`) says what it did; a backup's names the new set's label
/// ("new backup label = ..."), what `pgbackrest restore --set=` takes.
fn job_spec(
    spec: &BackupSpec,
    labels: BTreeMap<String, String>,
    args: Vec<String>,
    backoff_limit: i32,
    data: Option<&DataVolume>,
) -> JobSpec {
    let mut command = vec![
        "pgbackrest".to_owned(),
        format!("--stanza={}", spec.stanza),
        "--log-level-console=info".to_owned(),
    ];
    command.extend(args);
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    // pgBackRest's lock file (and any temporary file) under a read-only root filesystem.
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if let Some(data) = data {
        mounts.push(VolumeMount {
            name: "data".to_owned(),
            mount_path: data.mount_path.clone(),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data.claim_name.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        });
    }
    let mut security = workload::pod_security();
    security.run_as_user = spec.run_as_user;
    security.run_as_group = spec.run_as_group;
    JobSpec {
        backoff_limit: Some(backoff_limit),
        active_deadline_seconds: Some(spec.active_deadline_seconds),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                annotations: (!spec.pod_annotations.is_empty())
                    .then(|| spec.pod_annotations.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".to_owned()),
                containers: vec![Container {
                    name: "pgbackrest".to_owned(),
                    image: Some(spec.image.reference()),
                    command: Some(command),
                    env_from: Some(workload::env_from(&spec.env_from)),
                    resources: spec.resources.clone(),
                    volume_mounts: Some(mounts),
                    security_context: Some(workload::container_security()),
                    // pgBackRest's last lines become the termination message, which the
                    // release's conditions quote when a snapshot fails.
                    termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                    ..Container::default()
                }],
                automount_service_account_token: Some(false),
                volumes: Some(volumes),
                security_context: Some(security),
                ..PodSpec::default()
            }),
        },
        ..JobSpec::default()
    }
}

/// `--type=<kind> [--annotation=...] backup`.
fn backup_args(kind: BackupKind, annotation: Option<&str>) -> Vec<String> {
    let mut args = vec![format!("--type={}", kind.pgbackrest_type())];
    args.extend(annotation.map(|a| format!("--annotation={a}")));
    args.push("backup".to_owned());
    args
}

/// The Job `name` that restores the database of the release `owner` from the backup set
/// `set` (the newest when `None`) to the moment it became consistent, then promotes it:
/// `pgbackrest --delta [--set=<set>] --type=immediate --target-action=promote restore`, in
/// the release's backup image, with `data` (PostgreSQL's data folder) mounted. pgBackRest
/// refuses to run while PostgreSQL does. Not retried: a second try on a half-written data
/// folder is a person's call.
pub fn restore_job(owner: &Owner, spec: &BackupSpec, order: RestoreOrder<'_>) -> Job {
    let RestoreOrder {
        name,
        attempt,
        set,
        data,
    } = order;
    let mut args = vec!["--delta".to_owned()];
    args.extend(set.map(|s| format!("--set={s}")));
    args.extend([
        "--type=immediate".to_owned(),
        "--target-action=promote".to_owned(),
        "restore".to_owned(),
    ]);
    attempt_job(owner, name, RESTORE, attempt, |labels| {
        job_spec(spec, labels, args, 0, data)
    })
}

/// The Job `name` of the release `owner` that does `what` (`snapshot`, `restore`) for attempt
/// `attempt`: labelled with both (and kept, for `kubectl logs`, as long as the attempt's other
/// Jobs are), its spec made from those labels.
fn attempt_job(
    owner: &Owner,
    name: &str,
    what: &str,
    attempt: i64,
    spec: impl FnOnce(BTreeMap<String, String>) -> JobSpec,
) -> Job {
    let mut labels = labels(owner, what);
    labels.insert("listacompra.app/job".to_owned(), what.to_owned());
    labels.insert(naming::ATTEMPT_LABEL.to_owned(), attempt.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.reference.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec(labels)),
        status: None,
    }
}

/// What a restore Job restores, and where.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOrder<'a> {
    /// The Job's name.
    pub name: &'a str,
    /// The release's attempt when the restore runs.
    pub attempt: i64,
    /// The backup set (`None`: the newest).
    pub set: Option<&'a str>,
    /// The data folder's claim, mounted.
    pub data: Option<&'a DataVolume>,
}

/// The `listacompra.app/backup` label value of restore Jobs (and their pods).
pub const RESTORE: &str = "restore";

/// The CronJob that runs `kind` backups of `spec` for the release `owner`.
pub fn cron_job(owner: &Owner, spec: &BackupSpec, kind: BackupKind) -> CronJob {
    let schedule = kind.schedule(spec);
    let labels = labels(owner, kind.pgbackrest_type());
    CronJob {
        metadata: ObjectMeta {
            name: Some(kind.cron_job_name(&owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.reference.clone()]),
            ..ObjectMeta::default()
        },
        spec: CronJobSpec {
            schedule: schedule.schedule.clone(),
            time_zone: spec.time_zone.clone(),
            suspend: Some(schedule.suspend),
            // pgBackRest locks the stanza: a second backup while one runs would only fail.
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(JOB_HISTORY),
            failed_jobs_history_limit: Some(JOB_HISTORY),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                // A failed backup is not retried in a loop: the next run comes at the next
                // scheduled time, and the age alert says when that is too late.
                spec: Some(job_spec(spec, labels, backup_args(kind, None), 0, None)),
            },
        },
        status: None,
    }
}

/// Retries of a snapshot Job: a scheduled backup that holds the stanza's lock makes it fail
/// at once, and the Job's backoff (10 s, 20 s, 40 s, ...) lets it take its turn, within the
/// release's deadline.
const SNAPSHOT_RETRIES: i32 = 6;

/// The Job `name` that backs the database up before attempt `attempt`'s migration: an
/// incremental backup (a full one when none exists yet), annotated so that `pgbackrest
/// info` names the attempt's snapshot (see [`crate::decide::snapshot_annotation`]).
pub fn snapshot_job(owner: &Owner, spec: &BackupSpec, name: &str, attempt: i64) -> Job {
    let annotation = crate::decide::snapshot_annotation(name);
    attempt_job(owner, name, naming::SNAPSHOT, attempt, |labels| {
        job_spec(
            spec,
            labels,
            backup_args(BackupKind::Incremental, Some(&annotation)),
            SNAPSHOT_RETRIES,
            None,
        )
    })
}

/// What the CronJobs report, as `status.backups`: `None` without backups in the spec.
pub fn status(
    spec: Option<&BackupSpec>,
    release: &str,
    live: &[(BackupKind, Option<&CronJob>)],
    message: Option<String>,
) -> Option<BackupsStatus> {
    spec?;
    let runs = |kind: BackupKind| {
        let cron_job = live
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, c)| *c)?;
        let status = cron_job.status.as_ref();
        Some(BackupRuns {
            cron_job: kind.cron_job_name(release),
            last_schedule_time: status.and_then(|s| s.last_schedule_time.clone()),
            last_successful_time: status.and_then(|s| s.last_successful_time.clone()),
        })
    };
    let (full, incremental) = (runs(BackupKind::Full), runs(BackupKind::Incremental));
    let last_successful_time = [&full, &incremental]
        .into_iter()
        .flatten()
        .filter_map(|r| r.last_successful_time.clone())
        .max_by_key(|t| t.0);
    Some(BackupsStatus {
        last_successful_time,
        full,
        incremental,
        message,
    })
}

/// Holds the backup CronJobs of `spec` (applies them, or deletes this release's when the
/// spec has no backups) and returns their status. `live` are the CronJobs as the cache has
/// them; one of that name that this release does not control is never touched. `since` is
/// when the release was created.
pub async fn hold(
    owner: &Owner,
    since: Option<&Time>,
    spec: Option<&BackupSpec>,
    live: Vec<(BackupKind, Option<CronJob>)>,
    ctx: &Context,
) -> Option<BackupsStatus> {
    let api = Api::<CronJob>::namespaced(ctx.client.clone(), &owner.namespace);
    let mut problems = Vec::new();
    let mut held: Vec<(BackupKind, Option<CronJob>)> = Vec::new();
    for (kind, current) in live {
        let name = kind.cron_job_name(&owner.name);
        if let Some(c) = &current
            && !workload::is_ours(&c.metadata, owner)
        {
            problems.push(format!(
                "CronJob {name} exists and is not this release's: the operator does not take it \
                 over; delete or rename it"
            ));
            held.push((kind, None));
            continue;
        }
        match spec {
            Some(spec) => {
                let desired = cron_job(owner, spec, kind);
                let ssa = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch(&name, &ssa, &Patch::Apply(&desired)).await {
                    Ok(applied) => {
                        if current.as_ref().is_none_or(|c| {
                            c.metadata.resource_version != applied.metadata.resource_version
                        }) {
                            ctx.metrics.api_writes.with_label_values(&["cronjob"]).inc();
                            info!(cron_job = %name, "applied the backup CronJob");
                        }
                        held.push((kind, Some(applied)));
                    }
                    Err(e) => {
                        warn!(cron_job = %name, error = %e, "could not apply the backup CronJob");
                        problems.push(format!("applying CronJob {name}: {}", short(&e)));
                        held.push((kind, current));
                    }
                }
            }
            None if current.is_some() => {
                ctx.metrics.api_writes.with_label_values(&["cronjob"]).inc();
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {
                        info!(cron_job = %name, "deleted the backup CronJob (spec.backups is gone)")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        warn!(cron_job = %name, error = %e, "could not delete the backup CronJob")
                    }
                }
            }
            None => {}
        }
    }
    let message = (!problems.is_empty()).then(|| problems.join("; "));
    let live: Vec<(BackupKind, Option<&CronJob>)> =
        held.iter().map(|(k, c)| (*k, c.as_ref())).collect();
    let status = status(spec, &owner.name, &live, message);
    ctx.metrics.set_backups(
        &owner.namespace,
        &owner.name,
        spec.map(|spec| metrics_of(spec, &live, since))
            .unwrap_or_default(),
    );
    status
}

/// The API server's own words for a refused apply.
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// One kind of backup, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupSeries {
    /// pgBackRest's type (`full`, `incr`).
    pub kind: &'static str,
    /// Seconds after which its newest success is too old.
    pub max_age_seconds: f64,
    /// When its CronJob was created: the age of a schedule that never succeeded counts from
    /// here.
    pub scheduled_since: Option<f64>,
    /// When it last succeeded.
    pub last_success: Option<f64>,
}

/// The series of each kind `spec` schedules. A suspended kind has none (no alert for a pause
/// asked for); a kind whose CronJob could not be held counts from `since` (the release's
/// creation), so its age alert fires instead of staying silent.
fn metrics_of(
    spec: &BackupSpec,
    live: &[(BackupKind, Option<&CronJob>)],
    since: Option<&Time>,
) -> Vec<BackupSeries> {
    let seconds = |t: &Time| t.0.as_millisecond() as f64 / 1000.0;
    live.iter()
        .filter(|(kind, _)| !kind.schedule(spec).suspend)
        .map(|(kind, cron_job)| BackupSeries {
            kind: kind.pgbackrest_type(),
            max_age_seconds: kind.schedule(spec).max_age_seconds as f64,
            scheduled_since: cron_job
                .and_then(|c| c.metadata.creation_timestamp.as_ref())
                .or(since)
                .map(seconds),
            last_success: cron_job
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.last_successful_time.as_ref())
                .map(seconds),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::CronJobStatus;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn owner() -> Owner {
        Owner {
            name: "lc".into(),
            namespace: "shop".into(),
            reference: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference::default(),
        }
    }

    fn spec() -> BackupSpec {
        serde_json::from_value(serde_json::json!({
            "image": {"repository": "ghcr.io/listacompra/pgbackrest", "tag": "2.45"},
            "envFrom": [{"configMapName": "pgbackrest"}, {"secretName": "pgbackrest-cipher"}],
            "full": {"schedule": "0 1 * * *", "maxAgeSeconds": 93600},
            "incremental": {"schedule": "0 */6 * * *", "maxAgeSeconds": 25200, "suspend": true},
            "runAsUser": 999,
            "podAnnotations": {"listacompra.test/runner": "true"}
        }))
        .unwrap()
    }

    #[test]
    fn each_kind_runs_pgbackrest_on_its_own_schedule_one_at_a_time() {
        let spec = spec();
        let full = cron_job(&owner(), &spec, BackupKind::Full);
        let incr = cron_job(&owner(), &spec, BackupKind::Incremental);
        assert_eq!(full.metadata.name.as_deref(), Some("lc-backup-full"));
        assert_eq!(incr.metadata.name.as_deref(), Some("lc-backup-incr"));
        let (f, i) = (full.spec, incr.spec);
        assert_eq!((f.schedule.as_str(), f.suspend), ("0 1 * * *", Some(false)));
        assert_eq!(
            (i.schedule.as_str(), i.suspend),
            ("0 */6 * * *", Some(true))
        );
        assert_eq!(f.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = f.job_template.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_deref().unwrap(),
            [
                "pgbackrest",
                "--stanza=listacompra",
                "--log-level-console=info",
                "--type=full",
                "backup"
            ]
        );
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/listacompra/pgbackrest:2.45")
        );
        let sources = container.env_from.as_ref().unwrap();
        assert_eq!(
            sources[0].config_map_ref.as_ref().map(|r| r.name.as_str()),
            Some("pgbackrest")
        );
        assert_eq!(
            sources[1].secret_ref.as_ref().map(|r| r.name.as_str()),
            Some("pgbackrest-cipher")
        );
        // Secrets only by reference: no value of any variable is in the object.
        assert!(container.env.is_none());
        let security = pod.security_context.unwrap();
        assert_eq!(security.run_as_user, Some(999));
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn a_restore_job_restores_the_set_once_into_the_mounted_data_folder() {
        let data = DataVolume {
            claim_name: "data-postgres-0".into(),
            mount_path: "/var/lib/postgresql/data".into(),
        };
        let order = RestoreOrder {
            name: "r1-restore-0badcafe",
            attempt: 3,
            set: Some("20261203-101500F"),
            data: Some(&data),
        };
        let job = restore_job(&owner(), &spec(), order);
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(
            labels.get(naming::ATTEMPT_LABEL).map(String::as_str),
            Some("3")
        );
        let job = job.spec.unwrap();
        assert_eq!(
            job.backoff_limit,
            Some(0),
            "never retried on a half-written folder"
        );
        let pod = job.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_deref().unwrap(),
            [
                "pgbackrest",
                "--stanza=listacompra",
                "--log-level-console=info",
                "--delta",
                "--set=20261203-101500F",
                "--type=immediate",
                "--target-action=promote",
                "restore",
            ]
        );
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "data")
            .expect("the data folder is mounted");
        assert_eq!(mount.mount_path, "/var/lib/postgresql/data");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            volume
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-postgres-0")
        );
        // The newest set, without a claim: no `--set`, nothing mounted but /tmp.
        let newest = restore_job(
            &owner(),
            &spec(),
            RestoreOrder {
                set: None,
                data: None,
                ..order
            },
        );
        let pod = newest.spec.unwrap().template.spec.unwrap();
        let command = pod.containers[0].command.clone().unwrap();
        assert!(
            !command.iter().any(|a| a.starts_with("--set")),
            "{command:?}"
        );
        assert_eq!(pod.volumes.map(|v| v.len()), Some(1));
    }

    #[test]
    fn backup_pods_are_never_selected_by_the_api_service() {
        let job = cron_job(&owner(), &spec(), BackupKind::Full);
        let labels = job
            .spec
            .job_template
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        let selector = naming::selector_labels("lc");
        assert!(
            !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{labels:?}"
        );
    }

    #[test]
    fn the_status_has_the_newest_success_of_either_kind() {
        let at = |s: &str| Time(s.parse::<Timestamp>().unwrap());
        let with = |last: Option<&str>| CronJob {
            status: Some(CronJobStatus {
                last_schedule_time: last.map(at),
                last_successful_time: last.map(at),
                ..CronJobStatus::default()
            }),
            ..CronJob::default()
        };
        let full = with(Some("2026-12-01T01:00:05Z"));
        let incr = with(Some("2026-12-01T06:00:03Z"));
        let status = status(
            Some(&spec()),
            "lc",
            &[
                (BackupKind::Full, Some(&full)),
                (BackupKind::Incremental, Some(&incr)),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            status.last_successful_time,
            Some(at("2026-12-01T06:00:03Z"))
        );
        assert_eq!(status.full.unwrap().cron_job, "lc-backup-full");
        let never = with(None);
        let status = super::status(
            Some(&spec()),
            "lc",
            &[
                (BackupKind::Full, Some(&never)),
                (BackupKind::Incremental, None),
            ],
            Some("why".to_owned()),
        )
        .unwrap();
        assert_eq!(status.last_successful_time, None);
        assert!(status.incremental.is_none());
        assert_eq!(status.message.as_deref(), Some("why"));
        assert_eq!(super::status(None, "lc", &[], None), None);
    }

    #[test]
    fn long_release_names_give_distinct_cron_job_names_kubernetes_takes() {
        let one = format!("{}.one", "a".repeat(30));
        let other = format!("{}.other-one-with-more", "a".repeat(30));
        let (a, b) = (
            BackupKind::Incremental.cron_job_name(&format!("{one}{}", "x".repeat(20))),
            BackupKind::Incremental.cron_job_name(&format!("{other}{}", "x".repeat(20))),
        );
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= 52, "{name}");
            assert!(!name.contains(".-") && !name.contains("--"), "{name}");
        }
        assert_eq!(BackupKind::Full.cron_job_name("lc"), "lc-backup-full");
    }

    #[test]
    fn a_schedule_that_cannot_be_held_still_ages_and_a_suspended_one_does_not() {
        let created = Time("2026-12-01T00:00:00Z".parse::<Timestamp>().unwrap());
        let series = metrics_of(
            &spec(),
            &[(BackupKind::Full, None), (BackupKind::Incremental, None)],
            Some(&created),
        );
        // The incremental schedule of `spec()` is suspended: no series, no alert.
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(series[0].kind, "full");
        assert_eq!(series[0].scheduled_since, Some(1_796_083_200.0));
        assert_eq!(series[0].last_success, None);
    }
}
