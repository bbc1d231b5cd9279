//! Restores (`ListaCompraRestore`): read for the release they name, refused, or carried out
//! step by step ([`steps`]) by the reconcile of the release that took one up. The release
//! decides whether it takes a restore up (`decide::restoring`); this module does the
//! restore's own work: it observes the StatefulSet, the pods and the step's Job, writes the
//! restore's status (with optimistic concurrency), then acts.

pub mod steps;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use listacompra_crds::approval::ApprovalRecord;
use listacompra_crds::backups::DatabaseTarget;
use listacompra_crds::restore::{ListaCompraRestoreStatus, RestorePhase};
use listacompra_crds::status::ActiveRestore;
use listacompra_crds::{ListaCompraReleaseSpec, ListaCompraRestore};
use serde_json::json;
use tracing::info;

use crate::backups::{self, RestoreOrder};
use crate::controller::{Context, job_state};
use crate::decide::{self, Observed, Refusal, RestoreSeen};
use crate::error::{Result, kube as kube_err};
use crate::events::Note;
use crate::naming::{self, JobPurpose};
use crate::workload::{self, Owner, Workload};

/// The restores of `namespace` naming `release`, oldest first: from the watch cache, or
/// (before it has listed, or in a test without caches) from the API server, which selects
/// them on `spec.release`.
pub async fn read(
    ctx: &Context,
    namespace: &str,
    release: &str,
) -> Result<Vec<ListaCompraRestore>> {
    let cached = ctx
        .caches
        .get()
        .and_then(|caches| caches.restores(namespace, release));
    let mut found = match cached {
        Some(found) => found,
        None => {
            ctx.metrics.api_reads.with_label_values(&["restore"]).inc();
            Api::<ListaCompraRestore>::namespaced(ctx.client.clone(), namespace)
                .list(&ListParams::default().fields(&format!("spec.release={release}")))
                .await
                .map_err(kube_err("listing the release's restores"))?
                .items
        }
    };
    found.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    Ok(found)
}

/// What the release decides about: the pending restores, and the one it carries out.
pub fn seen(restores: &[ListaCompraRestore], active: Option<&ActiveRestore>) -> Vec<RestoreSeen> {
    restores
        .iter()
        .filter_map(|r| {
            let uid = r.metadata.uid.clone()?;
            let status = r.status.clone().unwrap_or_default();
            let seen = RestoreSeen {
                name: r.name_any(),
                uid,
                phase: status.phase,
                step: status.step,
                message: status.message,
                schema_version: status.schema_version,
                backup_set: r.spec.backup_set.clone(),
                created: r
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            };
            // One being deleted is not taken up.
            let pending = seen.pending() && r.metadata.deletion_timestamp.is_none();
            (pending || active.is_some_and(|a| a.uid == seen.uid)).then_some(seen)
        })
        .collect()
}

/// Writes a refusal to the restore it names (if it is still that one).
pub async fn refuse(
    ctx: &Context,
    restores: &[ListaCompraRestore],
    refusal: &Refusal,
) -> Result<()> {
    let Some(restore) = restores
        .iter()
        .find(|r| r.metadata.uid.as_deref() == Some(refusal.uid.as_str()))
    else {
        return Ok(());
    };
    let status = steps::refused(
        &restore.status.clone().unwrap_or_default(),
        restore.metadata.generation.unwrap_or_default(),
        &refusal.message,
        Timestamp::now(),
    );
    write_status(ctx, restore, &status).await?;
    ctx.metrics.restores.with_label_values(&["refused"]).inc();
    publish(
        ctx,
        restore,
        &[steps::Note {
            warning: true,
            reason: "Refused".to_owned(),
            message: refusal.message.clone(),
        }],
    )
    .await;
    Ok(())
}

/// Writes to the restore it names that it waits for approvals (its status says for which),
/// when that is news.
pub async fn wait(ctx: &Context, restores: &[ListaCompraRestore], wait: &Refusal) -> Result<()> {
    let Some(restore) = restores
        .iter()
        .find(|r| r.metadata.uid.as_deref() == Some(wait.uid.as_str()))
    else {
        return Ok(());
    };
    let before = restore.status.clone().unwrap_or_default();
    let status = steps::waiting(
        &before,
        restore.metadata.generation.unwrap_or_default(),
        &wait.message,
        Timestamp::now(),
    );
    if status != before {
        write_status(ctx, restore, &status).await?;
    }
    Ok(())
}

/// What the release's reconcile hands the restore it carries out.
#[derive(Debug)]
pub struct Carry<'o, 'a> {
    /// The release, as the owner of the Jobs.
    pub owner: &'o Owner,
    /// What the release's reconcile observed (the Jobs are built from its specs).
    pub observed: &'o Observed<'a>,
    /// The workload that serves (the migration and the smoke test run its image).
    pub serving: &'o Workload,
    /// It runs with all its replicas available.
    pub traffic_serving: bool,
    /// The release's attempt (the Jobs carry it).
    pub attempt: i64,
    /// The approvals the release took the restore up with.
    pub approvals: &'o [ApprovalRecord],
}

/// Carries out the next step of `restore`: observes, decides ([`steps::decide`]), writes the
/// status, acts. When to look again.
pub async fn carry_out(
    ctx: &Context,
    restore: &ListaCompraRestore,
    carry: Carry<'_, '_>,
) -> Result<Duration> {
    let namespace = carry.owner.namespace.as_str();
    let name = restore.name_any();
    let uid = restore.metadata.uid.clone().unwrap_or_default();
    let status = restore.status.clone().unwrap_or_default();
    let running = status.phase == Some(RestorePhase::Restoring);
    let job = |verb: &str| naming::restore_job_name(&name, &uid, verb);
    let smoke_purpose = match carry.serving.spec {
        workload::SpecSource::Current => JobPurpose::Smoke,
        workload::SpecSource::Stable => JobPurpose::SmokeStable,
    };
    let smoke_spec = decide::job_spec(carry.observed, smoke_purpose, carry.serving);
    let target = carry
        .observed
        .spec
        .backups
        .as_ref()
        .and_then(|b| b.database.clone());
    // Taken up only with spec.backups.database; removed since, the restore waits at its step.
    let set = target.as_ref().map_or("", |t| t.stateful_set.as_str());
    let database = match target {
        Some(_) => database(ctx, namespace, set).await?,
        None => None,
    };
    let traffic_pods = traffic_pods(ctx, namespace, &carry.owner.name).await?;
    let restore_pods = count_pods(
        ctx,
        namespace,
        &format!(
            "{}={},{}={}",
            naming::RELEASE_LABEL,
            naming::label_value(&carry.owner.name),
            backups::BACKUP_LABEL,
            backups::RESTORE
        ),
    )
    .await?;
    let observed = steps::Observed {
        stateful_set: set,
        generation: restore.metadata.generation.unwrap_or_default(),
        status: &status,
        schema_version: carry.observed.status.stable_schema_version,
        smoke_test: smoke_spec.smoke_test.is_some(),
        traffic_pods,
        traffic_serving: carry.traffic_serving,
        database,
        restore_pods,
        restore_job: job_state(ctx, namespace, Some(&job("restore")), running).await?,
        migration_job: job_state(ctx, namespace, Some(&job("migrate")), running).await?,
        smoke_job: job_state(ctx, namespace, Some(&job("smoke")), running).await?,
        step_deadline_seconds: carry.observed.spec.progress_deadline_seconds,
        approvals: carry.approvals,
        now: Timestamp::now(),
    };
    let decision = steps::decide(&observed);
    // Record, then act. A pass that writes nothing acts on a copy of the restore read from
    // the cache, which may lag: confirm it first (one GET, only when there is something to
    // do), so that a stale step never scales PostgreSQL or creates a Job. A pass that ends
    // the restore acts first: its actions undo (PostgreSQL started again, a restore Job
    // stopped), and nothing carries out an ended restore afterwards, so a crash between the
    // two must find them still to do.
    let ending = decision.status.completion_time.is_some() && status.completion_time.is_none();
    let act = Act {
        ctx,
        carry: &carry,
        restore,
        target: target.as_ref(),
        database,
        job: &job,
        smoke_spec: &smoke_spec,
        smoke_purpose,
    };
    if decision.status != status && !ending {
        write_status(ctx, restore, &decision.status).await?;
        count(ctx, &status, &decision.status);
    } else if !decision.actions.is_empty() && is_outdated(ctx, restore).await? {
        return Ok(Duration::from_secs(1));
    }
    act.run(&decision.actions).await?;
    if ending {
        write_status(ctx, restore, &decision.status).await?;
        count(ctx, &status, &decision.status);
    }
    publish(ctx, restore, &decision.notes).await;
    Ok(decision.requeue_after)
}

/// Carries out a restore step's actions.
struct Act<'a, 'o, 'b> {
    ctx: &'a Context,
    carry: &'a Carry<'o, 'b>,
    restore: &'a ListaCompraRestore,
    target: Option<&'a DatabaseTarget>,
    database: Option<steps::Database>,
    job: &'a (dyn Fn(&str) -> String + Sync),
    smoke_spec: &'a ListaCompraReleaseSpec,
    smoke_purpose: JobPurpose,
}

impl Act<'_, '_, '_> {
    async fn run(&self, actions: &[steps::Action]) -> Result<()> {
        let (ctx, carry, namespace) = (self.ctx, self.carry, self.carry.owner.namespace.as_str());
        let job = self.job;
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
        for action in actions {
            let created = match *action {
                steps::Action::ScaleDatabase(replicas) => {
                    if let (Some(d), Some(t)) = (self.database, self.target)
                        && d.replicas != replicas
                    {
                        scale(ctx, namespace, &t.stateful_set, replicas).await?;
                    }
                    continue;
                }
                steps::Action::DeleteRestoreJob => {
                    let job_name = job("restore");
                    ctx.metrics.api_writes.with_label_values(&["job"]).inc();
                    match jobs
                        .delete(&job_name, &kube::api::DeleteParams::foreground())
                        .await
                    {
                        Ok(_) => info!(job = %job_name, "deleted the restore Job"),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(kube_err(format!("deleting Job {job_name}"))(e)),
                    }
                    continue;
                }
                steps::Action::CreateRestoreJob => {
                    // `spec.backups` was taken away meanwhile: the step waits for it.
                    let Some(backups) = &carry.observed.spec.backups else {
                        continue;
                    };
                    backups::restore_job(
                        carry.owner,
                        backups,
                        RestoreOrder {
                            name: &job("restore"),
                            attempt: carry.attempt,
                            set: self.restore.spec.backup_set.as_deref(),
                            data: self.target.and_then(|t| t.data_volume.as_ref()),
                        },
                    )
                }
                steps::Action::CreateMigrationJob(revision) => workload::job(
                    carry.owner,
                    &decide::job_spec(carry.observed, JobPurpose::Migrate, carry.serving),
                    workload::JobOrder {
                        name: job("migrate"),
                        attempt: carry.attempt,
                        purpose: JobPurpose::Migrate,
                        revision,
                    },
                    carry.serving,
                ),
                steps::Action::CreateSmokeJob => workload::job(
                    carry.owner,
                    self.smoke_spec,
                    workload::JobOrder {
                        name: job("smoke"),
                        attempt: carry.attempt,
                        purpose: self.smoke_purpose,
                        revision: 0,
                    },
                    carry.serving,
                ),
            };
            let job_name = created.name_any();
            match jobs.create(&PostParams::default(), &created).await {
                Ok(_) => {
                    ctx.metrics.api_writes.with_label_values(&["job"]).inc();
                    info!(job = %job_name, restore = %self.restore.name_any(), "created a restore step's Job");
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(kube_err(format!("creating Job {job_name}"))(e)),
            }
        }
        Ok(())
    }
}

/// The metrics of what a written status ended: steps (their durations) and the restore.
fn count(ctx: &Context, before: &ListaCompraRestoreStatus, after: &ListaCompraRestoreStatus) {
    for step in &after.steps {
        let newly_ended = step.completion_time.is_some()
            && !before
                .steps
                .iter()
                .any(|s| s.step == step.step && s.completion_time.is_some());
        if let (true, Some(end)) = (newly_ended, &step.completion_time) {
            let seconds = end.0.duration_since(step.start_time.0).as_secs_f64();
            ctx.metrics
                .restore_steps
                .with_label_values(&[&format!("{:?}", step.step)])
                .observe(seconds);
        }
    }
    let outcome = match after.phase {
        _ if before.completion_time.is_some() => None,
        Some(RestorePhase::Succeeded) => Some("succeeded"),
        Some(RestorePhase::Failed) => Some("failed"),
        _ => None,
    };
    if let Some(outcome) = outcome {
        ctx.metrics.restores.with_label_values(&[outcome]).inc();
    }
}

/// The StatefulSet `name`: its replicas, its pods and how many are ready.
async fn database(ctx: &Context, namespace: &str, name: &str) -> Result<Option<steps::Database>> {
    ctx.metrics
        .api_reads
        .with_label_values(&["statefulset"])
        .inc();
    let Some(set) = Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading StatefulSet {name}")))?
    else {
        return Ok(None);
    };
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or_default()
        >= set.metadata.generation.unwrap_or_default();
    let selector = spec
        .selector
        .match_labels
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    // An empty selector would count every pod of the namespace: none is a StatefulSet's.
    let pods = if selector.is_empty() {
        0
    } else {
        count_pods(ctx, namespace, &selector).await?
    };
    Ok(Some(steps::Database {
        replicas: spec.replicas.unwrap_or(1),
        pods,
        ready: if current {
            status.ready_replicas.unwrap_or_default()
        } else {
            0
        },
    }))
}

/// Whether the cached copy of `restore` is older than the API server's.
async fn is_outdated(ctx: &Context, restore: &ListaCompraRestore) -> Result<bool> {
    ctx.metrics.api_reads.with_label_values(&["restore"]).inc();
    let live = Api::<ListaCompraRestore>::namespaced(
        ctx.client.clone(),
        &restore.namespace().unwrap_or_default(),
    )
    .get_opt(&restore.name_any())
    .await
    .map_err(kube_err("reading the restore"))?;
    Ok(live.is_none_or(|live| live.metadata.resource_version != restore.metadata.resource_version))
}

/// Pods of the release's API and worker, terminating ones too.
async fn traffic_pods(ctx: &Context, namespace: &str, release: &str) -> Result<usize> {
    let selector = format!(
        "app.kubernetes.io/instance={release},app.kubernetes.io/name in ({},{})",
        naming::API_APP,
        naming::WORKER_APP
    );
    count_pods(ctx, namespace, &selector).await
}

/// Pods matching `selector` that may still run a process: terminating ones count, ended ones
/// (Succeeded, Failed: evicted, say, which no controller deletes) do not.
async fn count_pods(ctx: &Context, namespace: &str, selector: &str) -> Result<usize> {
    ctx.metrics.api_reads.with_label_values(&["pod"]).inc();
    Ok(Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .list_metadata(
            &ListParams::default()
                .labels(selector)
                .fields("status.phase!=Succeeded,status.phase!=Failed"),
        )
        .await
        .map_err(kube_err("listing pods"))?
        .items
        .len())
}

/// Sets the StatefulSet's replicas through its scale subresource (all the operator may
/// change of it).
async fn scale(ctx: &Context, namespace: &str, name: &str, replicas: i32) -> Result<()> {
    ctx.metrics
        .api_writes
        .with_label_values(&["statefulset"])
        .inc();
    Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .map_err(kube_err(format!("scaling StatefulSet {name}")))?;
    info!(stateful_set = %name, replicas, "scaled the database");
    Ok(())
}

/// Writes the restore's status, on the condition that it is still the copy read.
async fn write_status(
    ctx: &Context,
    restore: &ListaCompraRestore,
    status: &ListaCompraRestoreStatus,
) -> Result<()> {
    crate::controller::write_status(ctx, restore, status).await
}

/// Events about the restore (and log lines).
async fn publish(ctx: &Context, restore: &ListaCompraRestore, notes: &[steps::Note]) {
    let reference = restore.object_ref(&());
    for note in notes {
        if note.warning {
            tracing::warn!(restore = %restore.name_any(), reason = %note.reason, "{}", note.message);
        } else {
            info!(restore = %restore.name_any(), reason = %note.reason, "{}", note.message);
        }
        ctx.metrics.api_writes.with_label_values(&["event"]).inc();
        let event = Note {
            regarding: reference.clone(),
            warning: note.warning,
            reason: note.reason.clone(),
            message: note.message.clone(),
            related: None,
        };
        if let Err(e) = ctx.events.publish(&event).await {
            tracing::warn!(error = %e, "could not publish Event");
        }
    }
}
