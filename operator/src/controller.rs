//! The controller: observe the release and its children, run a due gate check, call
//! [`decide`], and carry out the decision. All I/O of a reconcile lives here.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use listacompra_crds::status::{Verdict, condition};
use listacompra_crds::{
    ListaCompraApproval, ListaCompraRelease, ListaCompraReleaseSpec, ListaCompraReleaseStatus,
    Phase,
};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::applied::{self, Applied};
use crate::backups::{self, BackupKind};
use crate::cache::{self, Caches};
use crate::cleanup;
use crate::decide::{self, GateDue, JobState, Observed, decide};
use crate::error::{Error, Result, kube as kube_err};
use crate::events::{Note, Publisher};
use crate::gates::checks;
use crate::jobs;
use crate::naming::{self, FIELD_MANAGER};
use crate::packed::{Pack, Packed};
use crate::references;
use crate::restore;
use crate::shutdown::{self, InFlight, Stop};
use crate::telemetry::Metrics;
use crate::workload::{self, Owner};

/// Shared state of every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// HTTP client for the gates.
    pub http: reqwest::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Records Events.
    pub events: Publisher,
    /// Consecutive failed reconciles per release (`namespace/name`), for the backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// When each verified release's passed health gate was last watched (`namespace/name`;
    /// see [`decide::Observed::last_health_watch`]).
    pub health_watches: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
    /// Hosts besides a release's own Service that the gates may send credentials to
    /// ([`crate::gates::egress::check`]), from the operator's configuration.
    pub allowed_hosts: Vec<String>,
    /// Watch caches of the children, set by [`run`] (absent: reads go to the API server).
    pub caches: std::sync::OnceLock<Caches>,
    /// Watch the metadata of Secrets, so that a changed Secret rolls the pods consuming it
    /// (see `decide::rotating`).
    pub watch_secrets: bool,
    /// What this process last applied to each Deployment and Service, to skip applies that
    /// would change nothing.
    pub applied: Applied,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context reporting Events as `listacompra-operator` from `instance`.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        Self {
            events: Publisher::new(client.clone(), "listacompra-operator", instance),
            client,
            // Gate requests carry credentials: never follow a redirect with them.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            metrics,
            failures: std::sync::Mutex::default(),
            health_watches: std::sync::Mutex::default(),
            allowed_hosts: Vec::new(),
            caches: std::sync::OnceLock::new(),
            watch_secrets: false,
            applied: Applied::default(),
        }
    }

    /// The same context, watching Secrets (metadata only) for rotations when `watch`.
    #[must_use]
    pub fn with_secret_rotation(mut self, watch: bool) -> Self {
        self.watch_secrets = watch;
        self
    }

    /// The same context, allowing the gates to send credentials to `hosts` too.
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }
}

/// Releases reconciled at once (per watched scope): bounded, so a thousand releases waking
/// together queue instead of opening a thousand gate checks and API calls at once.
const RECONCILE_CONCURRENCY: u16 = 16;
/// Events for one release within this window make one reconcile (a rollout's stream of
/// Deployment status updates, for example).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Runs the controller until `stop` is requested and the reconciles in flight are done (for
/// at most [`shutdown::GRACE`]): over all namespaces when `namespaces` is empty, else over
/// each listed namespace.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>, stop: Stop) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=listacompra-operator");
    let mut caches = Caches::default();
    let mut controllers = Vec::new();
    for scope in scopes {
        let client = ctx.client.clone();
        let releases = match &scope {
            Some(ns) => Api::<Packed<ListaCompraRelease>>::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        // Every child is watched (into the caches reconciles read): a change or deletion of
        // any of them wakes the release, and the reconcile puts back the fields it owns.
        let children = caches.watch(&client, scope.as_deref(), &managed);
        // A restore wakes the release it names (which takes it up, refuses it, or carries
        // out its next step).
        let restores = caches.watch_restores(&client, scope.as_deref());
        // An approval wakes the release it names.
        let approvals = match &scope {
            Some(ns) => Api::<ListaCompraApproval>::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        // The releases' cache keeps them packed, like the children's (see `packed`): a
        // reconcile parses its release, and one that does not parse is reported.
        let (reader, writer) = kube::runtime::reflector::store();
        let release_events = kube::runtime::reflector(
            writer,
            watcher(releases, watcher::Config::default().any_semantic()),
        )
        .applied_objects();
        let mut controller = Controller::for_stream(release_events, reader)
            .with_config(
                kube::runtime::controller::Config::default()
                    .concurrency(RECONCILE_CONCURRENCY)
                    .debounce(DEBOUNCE),
            )
            .owns_stream(children.jobs)
            .owns_stream(children.deployments)
            .owns_stream(children.services)
            .owns_stream(children.revisions)
            .owns_stream(children.cron_jobs)
            .watches(approvals, watcher::Config::default(), |approval| {
                let namespace = approval.namespace()?;
                Some(ObjectRef::new(&approval.spec.release).within(&namespace))
            })
            .watches_stream(restores, |restore| {
                let namespace = restore.namespace()?;
                Some(ObjectRef::new(&restore.spec.release).within(&namespace))
            })
            .graceful_shutdown_on(stop.requested());
        if ctx.watch_secrets {
            // A Secret wakes the releases whose pods consume it.
            let secrets = caches.watch_secrets(&client, scope.as_deref());
            let releases = controller.store();
            controller = controller.watches_stream(secrets, move |secret| {
                consumers(&releases, &secret.name_any(), secret.namespace().as_deref())
            });
        }
        controllers.push(controller);
    }
    if ctx.caches.set(caches).is_err() {
        warn!("the controller was started twice with one context; the first caches stay");
    }
    let in_flight = InFlight::default();
    let streams = controllers.into_iter().map(|c| {
        let in_flight = in_flight.clone();
        c.run(
            move |release, ctx| in_flight.track(reconcile(release, ctx)),
            error_policy,
            ctx.clone(),
        )
        .boxed()
    });
    // kube-runtime's own graceful stop waits for the first list of releases when the stop
    // comes before it completes, forever: the stop is done when nothing is in flight.
    futures::stream::select_all(streams)
        .take_until(async move { in_flight.drained(&stop, shutdown::GRACE).await })
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    // A release that is gone (deleted, perhaps while its reconciles failed):
                    // its backoff count goes too, so the map holds only live releases.
                    Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                        let key = failure_key(gone.namespace.as_deref(), &gone.name);
                        ctx.metrics
                            .forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
                        ctx.failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&key);
                        ctx.health_watches
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&key);
                        ctx.applied
                            .forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
                        debug!(release = %key, "release gone");
                    }
                    Err(e) => warn!(error = %e, "reconcile failed"),
                    Ok(_) => {}
                }
            }
        })
        .await;
}

/// Releases are cached packed; nothing is pruned (a reconcile reads all of one).
impl Pack for ListaCompraRelease {
    /// The Secrets its pods consume, for [`consumers`] (none when its spec is not a spec:
    /// such a release has no pods of ours to roll).
    fn index(object: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        object
            .get("spec")
            .and_then(|spec| {
                <listacompra_crds::ListaCompraReleaseSpec as serde::Deserialize>::deserialize(spec)
                    .ok()
            })
            .map(|spec| workload::consumed_secrets(&spec).into_iter().collect())
            .unwrap_or_default()
    }
}

/// The releases in `namespace` whose pods consume the Secret `name`. Read from what each
/// release was indexed by when packed: a Secret watch lists every Secret at start, and
/// parsing every release for each of them would hold up the controller.
fn consumers(
    releases: &kube::runtime::reflector::Store<Packed<ListaCompraRelease>>,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<Packed<ListaCompraRelease>>> {
    releases
        .state()
        .into_iter()
        .filter(|packed| {
            packed.namespace().as_deref() == namespace
                && packed.index().iter().any(|secret| &**secret == name)
        })
        .map(|packed| ObjectRef::from_obj(&*packed))
        .collect()
}

/// Requeues a failed reconcile with exponential backoff per release: 1 s, 2 s, 4 s, ... up
/// to 5 minutes, with up to 50 % jitter so that many releases do not retry in lockstep.
/// A successful reconcile resets it. Conflicts (409) are retried the same way.
pub fn error_policy(
    object: Arc<Packed<ListaCompraRelease>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconciles.with_label_values(&["error"]).inc();
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.metric_reason()])
        .inc();
    let failures = {
        let mut failures = ctx
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key_of(&object)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Action::requeue(backoff(failures, f64::from(nanos % 1000) / 1000.0))
}

/// The wait before retry number `failures` (1 for the first), stretched by `jitter` (0..1)
/// of up to half again.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    let capped = base.min(Duration::from_secs(300));
    capped.mul_f64(1.0 + 0.5 * jitter.clamp(0.0, 1.0))
}

fn key_of(object: &Packed<ListaCompraRelease>) -> String {
    let meta = object.meta();
    failure_key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The key of a release in [`Context::failures`]: `namespace/name`.
fn failure_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// One reconcile of one release.
pub async fn reconcile(
    object: Arc<Packed<ListaCompraRelease>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let release = match object.unpack() {
        Ok(release) => release,
        Err(error) => {
            // The API server validates the schema, so this is an object from another
            // version of the CRD: say so and wait for a change.
            let meta = object.meta();
            warn!(name = %meta.name.clone().unwrap_or_default(), error = %error, "cannot read release");
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(ListaCompraRelease::api_version(&()).into_owned()),
                kind: Some(ListaCompraRelease::kind(&()).into_owned()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                ..Default::default()
            };
            let note = Note {
                regarding: reference,
                warning: true,
                reason: "InvalidSpec".to_owned(),
                message: format!("the operator cannot read this release: {error}; fix the spec"),
                related: None,
            };
            ctx.metrics.api_writes.with_label_values(&["event"]).inc();
            if let Err(e) = ctx.events.publish(&note).await {
                warn!(error = %e, "could not publish Event");
            }
            return Ok(Action::await_change());
        }
    };
    let release = &release;
    let status = release.status.clone().unwrap_or_default();
    // One trace per reconcile (its gate checks and applies are child spans); the fields are
    // also on every log line written inside it.
    let span = info_span!(
        "reconcile",
        release = %release.name_any(),
        namespace = %release.namespace().unwrap_or_default(),
        version = %release.spec.version,
        attempt = status.attempt.unwrap_or_default(),
        phase = %status.phase.map_or("None", decide::phase_name),
    );
    let timer = ctx
        .metrics
        .reconcile_duration
        .with_label_values(&[] as &[&str])
        .start_timer();
    let result = reconcile_release(release, status, &ctx)
        .instrument(span)
        .await;
    timer.observe_duration();
    if result.is_ok() {
        ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
        ctx.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key_of(&object));
    }
    result
}

async fn reconcile_release(
    release: &ListaCompraRelease,
    status: ListaCompraReleaseStatus,
    ctx: &Context,
) -> Result<Action> {
    let name = release.name_any();
    let namespace = release
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let client = ctx.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let spec = &release.spec;

    // Children come from the watch caches (see `cache`).
    // A failed Job's pod message is read only while the decision can still quote it.
    let migration_job = job_state(
        ctx,
        &namespace,
        status.migration_job.as_deref(),
        status.phase == Some(Phase::Migrating),
    )
    .await?;
    let revert_job = job_state(
        ctx,
        &namespace,
        status.revert_job.as_deref(),
        status.phase == Some(Phase::RollingBack),
    )
    .await?;
    let smoke_job = job_state(
        ctx,
        &namespace,
        status.smoke_test.as_ref().map(|s| s.job.as_str()),
        status
            .smoke_test
            .as_ref()
            .is_some_and(|s| s.completion_time.is_none()),
    )
    .await?;
    let snapshot_job = job_state(
        ctx,
        &namespace,
        status
            .snapshot
            .as_ref()
            .filter(|s| s.completion_time.is_none())
            .map(|s| s.job.as_str()),
        status.phase == Some(Phase::Migrating),
    )
    .await?;
    let workload_name = naming::workload_name(&name);
    let live: Option<Deployment> = cached(ctx, &namespace, &workload_name).await?;
    let worker_name = naming::worker_name(&name);
    let live_worker: Option<Deployment> = cached(ctx, &namespace, &worker_name).await?;
    // A worker of no replicas gets no Deployment (one made before is kept, scaled to none).
    let worker_wanted = spec.worker.replicas > 0;
    let workload =
        crate::rollout::workload_state(live.as_ref(), live_worker.as_ref(), worker_wanted);
    let live_service: Option<Service> = cached(ctx, &namespace, &workload_name).await?;
    let owner = Owner {
        name: name.clone(),
        namespace: namespace.clone(),
        reference: release
            .controller_owner_ref(&())
            .ok_or_else(|| Error::MissingNamespace(name.clone()))?,
    };
    // A Deployment or Service of that name that this release does not control is never
    // taken over (the decision says so and nothing is applied).
    let foreign = [
        (
            "Deployment",
            &workload_name,
            live.as_ref().map(|d| &d.metadata),
        ),
        (
            "Deployment",
            &worker_name,
            live_worker.as_ref().map(|d| &d.metadata),
        ),
        (
            "Service",
            &workload_name,
            live_service.as_ref().map(|s| &s.metadata),
        ),
    ]
    .into_iter()
    .find(|(_, _, meta)| meta.is_some_and(|m| !workload::is_ours(m, &owner)))
    .map(|(kind, object, _)| format!("{kind} {object}"));
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let stable_spec = match &status.stable_version {
        Some(version) => read_stable_spec(ctx, &namespace, &name, version).await?,
        None => None,
    };

    // Before an attempt launches its first Job or pod, what the spec names must exist.
    let missing = if decide::may_launch(spec, &status) {
        references::missing(
            &client,
            &ctx.metrics.api_reads,
            &namespace,
            &references::of(spec),
        )
        .await?
    } else {
        Vec::new()
    };

    // The restores naming this release: pending ones, and the one it carries out. Without
    // them (the restore CRD not installed yet after an upgrade, RBAC not updated), a release
    // that carries none out goes on; one that does waits, since it cannot tell a restore
    // that is gone from one it cannot read.
    let restores = match restore::read(ctx, &namespace, &name).await {
        Ok(restores) => restores,
        Err(e) if status.restore.is_none() => {
            warn!(error = %e, "could not read the restores; none is taken up");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let seen_restores = restore::seen(&restores, status.restore.as_ref());

    // Approvals are read only while they can still decide whether an attempt launches, or
    // whether a pending restore is taken up.
    let restore_pending = seen_restores
        .iter()
        .any(|r| r.pending() && status.restore.as_ref().is_none_or(|a| a.uid != r.uid));
    let approvals = if decide::awaits_approval(spec, &status)
        || (spec.approvals.is_some() && restore_pending)
    {
        read_approvals(ctx, &namespace, &name).await?
    } else {
        Vec::new()
    };

    // The Secrets the pods of the current spec consume, fingerprinted from the metadata
    // cache (when Secrets are watched). Only the current spec's: a fingerprint over the
    // stable spec's too would change when a release succeeds (the stable spec becomes the
    // current one) and roll the pods just released for nothing.
    let secrets_version = match ctx.caches.get() {
        Some(caches) if ctx.watch_secrets => {
            caches
                .secrets_version(&namespace, &workload::consumed_secrets(spec))
                .await
        }
        _ => None,
    };

    // The pre-flight alerts are asked only while they can still hold a launch.
    let firing_alerts = if decide::checks_alerts(spec, &status) {
        Some(checks::preflight_alerts(release, &namespace, ctx).await)
    } else {
        None
    };

    let now = Timestamp::now();
    let abort = abort_requested(release);
    // The passed health gate's watch: its schedule is kept here, not in status.
    let watch_key = failure_key(Some(&namespace), &name);
    let watching = decide::health_watching(&status);
    let last_health_watch = {
        let mut watches = ctx
            .health_watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !watching {
            watches.remove(&watch_key);
        }
        watches.get(&watch_key).copied()
    };
    // An attempt about to be aborted is not measured (its checks would only delay the abort).
    let due = if decide::abort_honoured(abort, &status) {
        GateDue::NOTHING
    } else {
        decide::gate_due(spec, &status, last_health_watch, now)
    };
    // The health check and the measurement are independent: run together.
    let health = async {
        if !due.health {
            return Ok(None);
        }
        // A watch check asks without the token: `/ready` answers the same status without it,
        // and the pods keep the token they were rolled with while a rotated one waits for
        // the verdict.
        let outcome = checks::health_check(release, &namespace, ctx, !watching).await?;
        let verdict = if outcome.is_ok() { "pass" } else { "fail" };
        let gate = if watching { "health-watch" } else { "health" };
        ctx.metrics
            .gate_verdicts
            .with_label_values(&[gate, verdict])
            .inc();
        Ok::<_, Error>(Some(outcome))
    };
    let measure = async {
        let (true, Some(analysis)) = (due.measurement, &spec.analysis) else {
            return Ok(None);
        };
        let results = checks::measure(release, &namespace, analysis, ctx).await?;
        for r in &results {
            let verdict = format!("{:?}", r.verdict).to_ascii_lowercase();
            ctx.metrics
                .gate_verdicts
                .with_label_values(&["kpi", &verdict])
                .inc();
            if let Some(v) = r.value {
                ctx.metrics
                    .kpi_values
                    .with_label_values(&[&namespace, &name, &r.name])
                    .set(v);
            }
        }
        let failed = results.iter().any(|r| r.verdict == Verdict::Fail);
        info!(failed, kpis = results.len(), "KPI measurement taken");
        Ok::<_, Error>(Some(results))
    };
    let (health_check, measurement) = futures::future::try_join(health, measure).await?;
    if watching && health_check.is_some() {
        ctx.health_watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(watch_key, now);
    }

    let observed = Observed {
        release: &name,
        generation: release.metadata.generation.unwrap_or_default(),
        spec,
        stable_spec: stable_spec.as_ref(),
        status: &status,
        migration_job,
        revert_job,
        smoke_job,
        snapshot_job,
        workload: workload.clone(),
        health_check,
        measurement,
        last_health_watch,
        approvals,
        missing,
        firing_alerts,
        secrets_version,
        foreign: foreign.clone(),
        abort,
        restores: seen_restores,
        now,
    };
    let mut decision = decide(&observed);
    debug!(
        observed_workload = ?workload,
        stable_spec_recorded = stable_spec.is_some(),
        next_phase = ?decision.status.phase,
        serving = ?decision.workload,
        serving_hash = ?decision.workload.as_ref().map(|w| decide::desired_hash(&observed, w)),
        actions = ?decision.actions,
        requeue_after = ?decision.requeue_after,
        "decided"
    );

    // Acting on an outdated copy of the release (the watch cache lags the API server) could
    // re-create a superseded Job or roll the Deployment back to an older version. A status
    // write carries the copy's resourceVersion and conflicts when it is outdated, but a
    // decision that only acts writes no status: confirm the copy first, at the cost of one
    // GET on the few reconciles that create or delete something or change the template.
    let changes_template = decision.workload.as_ref().is_some_and(|target| {
        workload.hash.as_deref() != Some(decide::desired_hash(&observed, target).as_str())
    });
    if (!decision.actions.is_empty() || changes_template) && is_outdated(release, ctx).await? {
        debug!("the release changed since this copy was read; deciding again on the new one");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // Record, then act. Stopping what the decision ends (a superseded Job) comes first, so
    // that no Job is ever left running unreferenced; then the decision is written with
    // optimistic concurrency (a status read from a stale cache conflicts instead of undoing
    // a newer decision); only then are Jobs created and objects applied. Every action is
    // idempotent and is derived again from the recorded phase if this reconcile dies.
    for action in &decision.actions {
        if let decide::Action::DeleteJob { name: job_name } = action {
            ctx.metrics.api_writes.with_label_values(&["job"]).inc();
            // Foreground: the Job stays (and reads as running) until its pods are gone, so
            // nothing waiting for it to end starts while its process may still run.
            match jobs.delete(job_name, &DeleteParams::foreground()).await {
                Ok(_) => info!(job = %job_name, "deleted Job"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_err(format!("deleting Job {job_name}"))(e)),
            }
        }
    }
    // The backup schedules are held beside the release, whatever its phase; what they last
    // did is part of the status recorded now.
    let mut live_backups = Vec::new();
    for kind in BackupKind::ALL {
        let cron_job = kind.cron_job_name(&name);
        // Without backups in the spec, only a CronJob of ours matters (to delete it), and the
        // cache has every one of ours: its absence is not confirmed with the API server,
        // so releases without backups make no extra reads.
        let live = if spec.backups.is_some() {
            // A failed read (RBAC not yet updated, say) never fails the release's reconcile:
            // the apply that follows says what is wrong in status.backups.
            cached(ctx, &namespace, &cron_job)
                .await
                .unwrap_or_else(|e| {
                    warn!(cron_job = %cron_job, error = %e, "could not read the backup CronJob");
                    None
                })
        } else {
            cache::peek(ctx.caches.get(), &namespace, &cron_job).await
        };
        live_backups.push((kind, live));
    }
    decision.status.backups = backups::hold(
        &owner,
        release.metadata.creation_timestamp.as_ref(),
        spec.backups.as_ref(),
        live_backups,
        ctx,
    )
    .await;
    if decision.status != status {
        record(release, &decision.status, ctx).await?;
        // Smoke-test verdicts, once each: their Events are decided exactly once.
        for note in &decision.notes {
            if let Some((_, verdict)) = decide::SMOKE_VERDICTS
                .iter()
                .find(|(reason, _)| *reason == note.reason)
            {
                ctx.metrics
                    .gate_verdicts
                    .with_label_values(&["smoke", verdict])
                    .inc();
            }
        }
        if decision.status.phase == Some(Phase::RollingBack)
            && status.phase != Some(Phase::RollingBack)
        {
            let reason = condition_reason(&decision.status, condition::DEGRADED);
            ctx.metrics.rollbacks.with_label_values(&[&reason]).inc();
        }
    }
    let version = decision
        .status
        .current_version
        .as_deref()
        .unwrap_or_default();
    ctx.metrics.set_phase(
        &namespace,
        &name,
        decision.status.phase.map(|p| (p, version)),
    );
    for action in &decision.actions {
        match action {
            decide::Action::CreateJob {
                name: job_name,
                attempt,
                purpose,
                workload,
                revision,
            } => {
                let job = workload::job(
                    &owner,
                    &decide::job_spec(&observed, *purpose, workload),
                    workload::JobOrder {
                        name: job_name.clone(),
                        attempt: *attempt,
                        purpose: *purpose,
                        revision: *revision,
                    },
                    workload,
                );
                match jobs.create(&PostParams::default(), &job).await {
                    Ok(_) => {
                        ctx.metrics.api_writes.with_label_values(&["job"]).inc();
                        info!(job = %job_name, revision, attempt, "created Job");
                    }
                    // Created by an earlier reconcile of this attempt: fine.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(kube_err(format!("creating Job {job_name}"))(e)),
                }
            }
            decide::Action::RecordStable { version } => {
                ctx.metrics
                    .api_writes
                    .with_label_values(&["revision"])
                    .inc();
                record_stable(
                    &revisions,
                    &owner,
                    spec,
                    version,
                    release.metadata.generation.unwrap_or_default(),
                )
                .await?;
            }
            decide::Action::TakeSnapshot {
                name: job_name,
                attempt,
            } => {
                // `spec.backups` went away since the decision: the next one does without.
                let Some(backups) = &spec.backups else {
                    continue;
                };
                let job = backups::snapshot_job(&owner, backups, job_name, *attempt);
                match jobs.create(&PostParams::default(), &job).await {
                    Ok(_) => {
                        ctx.metrics.api_writes.with_label_values(&["job"]).inc();
                        info!(job = %job_name, attempt, "created the snapshot Job");
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(kube_err(format!("creating Job {job_name}"))(e)),
                }
            }
            decide::Action::DeleteJob { .. } => {}
        }
    }
    // Hold the desired state on every reconcile that has a target: a scaled, edited or
    // deleted child is put back within one reconcile (its watch event triggers it). An apply
    // that would change nothing is not sent ([`crate::applied`]).
    if let (Some(target), None) = (&decision.workload, &foreign) {
        let mut spec = decide::deployments_spec(&observed, target);
        if decision.hold_traffic {
            // Stopped for a restore: the same workload without pods.
            let stopped = spec.to_mut();
            stopped.replicas = 0;
            stopped.worker.replicas = 0;
        }
        apply_workload(
            &owner,
            &spec,
            target,
            Live {
                api: live.as_ref().map(|d| &d.metadata),
                worker: live_worker.as_ref().map(|d| &d.metadata),
                service: live_service.as_ref().map(|s| &s.metadata),
                worker_wanted,
            },
            ctx,
        )
        .await?;
    }
    announce(release, &decision.notes, ctx).await;
    for refusal in &decision.refusals {
        restore::refuse(ctx, &restores, refusal).await?;
    }
    for waiting in &decision.restore_waits {
        restore::wait(ctx, &restores, waiting).await?;
    }
    let mut requeue_after = decision.requeue_after;
    if let (Some(Phase::Restoring), Some(active), Some(serving)) = (
        decision.status.phase,
        &decision.status.restore,
        &decision.workload,
    ) && let Some(taken) = restores
        .iter()
        .find(|r| r.metadata.uid.as_deref() == Some(active.uid.as_str()))
    {
        let traffic_serving = !decision.hold_traffic
            && workload.available
            && workload.hash.as_deref() == Some(decide::desired_hash(&observed, serving).as_str());
        let next = restore::carry_out(
            ctx,
            taken,
            restore::Carry {
                owner: &owner,
                observed: &observed,
                serving,
                traffic_serving,
                attempt: decision.status.attempt.unwrap_or_default(),
                approvals: &active.approvals,
            },
        )
        .await?;
        requeue_after = requeue_after.min(next);
    }
    if matches!(
        decision.status.phase,
        Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)
    ) && let Err(e) = clean_up(release, &decision.status, ctx).await
    {
        // Clean-up is housekeeping: a failure (say, RBAC not yet updated) is logged and
        // retried on the next settled reconcile, never a failed reconcile.
        warn!(error = %e, "could not clean up old Jobs and stable records");
    }
    Ok(Action::requeue(requeue_after))
}

/// The approvals naming release `name` (selected by the API server on `spec.release`).
async fn read_approvals(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<decide::Approval>> {
    ctx.metrics.api_reads.with_label_values(&["approval"]).inc();
    let list = Api::<ListaCompraApproval>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("spec.release={name}")))
        .await
        .map_err(kube_err(format!("listing the approvals of release {name}")))?;
    Ok(list
        .items
        .into_iter()
        .map(|a| decide::Approval {
            name: a.name_any(),
            created: a
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            release: a.spec.release,
            version: a.spec.version,
            attempt: a.spec.attempt,
            role: a.spec.role,
            approver: a.spec.approver,
            restore: a.spec.restore.zip(a.spec.restore_uid),
        })
        .collect())
}

/// The child `name` of kind `K`, from the watch caches ([`cache::get`]).
async fn cached<K>(ctx: &Context, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: cache::Cached + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    cache::get(
        ctx.caches.get(),
        &ctx.metrics.api_reads,
        &ctx.client,
        namespace,
        name,
    )
    .await
}

/// Whether `release` is older than the one in the API server (another resourceVersion).
async fn is_outdated(release: &ListaCompraRelease, ctx: &Context) -> Result<bool> {
    let api: Api<ListaCompraRelease> =
        Api::namespaced(ctx.client.clone(), &release.namespace().unwrap_or_default());
    ctx.metrics.api_reads.with_label_values(&["release"]).inc();
    let current = api
        .get_metadata_opt(&release.name_any())
        .await
        .map_err(kube_err("reading the release to confirm it is current"))?;
    Ok(current.is_none_or(|c| c.metadata.resource_version != release.metadata.resource_version))
}

/// Deletes what a settled release no longer needs ([`cleanup`]): finished Jobs of old
/// attempts and old stable records.
async fn clean_up(
    release: &ListaCompraRelease,
    status: &ListaCompraReleaseStatus,
    ctx: &Context,
) -> Result<()> {
    let name = release.name_any();
    let namespace = release.namespace().unwrap_or_default();
    let selector = ListParams::default().labels(&format!(
        "{}={},app.kubernetes.io/managed-by={FIELD_MANAGER}",
        naming::RELEASE_LABEL,
        naming::label_value(&name)
    ));
    // Owned by this very release (a label value is cut at 63 characters: names sharing
    // their first 63 would otherwise clean up each other's objects).
    let uid = release.metadata.uid.clone();
    let ours = |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|r| Some(&r.uid) == uid.as_ref())
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let summaries: Vec<cleanup::JobSummary> =
        children(ctx, &jobs, &name, uid.as_deref(), &selector)
            .await?
            .into_iter()
            .filter(|j| ours(&j.metadata))
            .map(|j| cleanup::JobSummary {
                attempt: j
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(naming::ATTEMPT_LABEL))
                    .and_then(|a| a.parse().ok()),
                finished: j
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"),
                name: j.metadata.name.unwrap_or_default(),
            })
            .collect();
    let smoke_job = status.smoke_test.as_ref().map(|s| s.job.clone());
    let referenced = [&status.migration_job, &status.revert_job, &smoke_job];
    for job in cleanup::jobs_to_delete(&summaries, status.attempt.unwrap_or(0))
        .into_iter()
        .filter(|j| !referenced.iter().any(|r| r.as_deref() == Some(j.as_str())))
    {
        ctx.metrics.api_writes.with_label_values(&["job"]).inc();
        match jobs.delete(&job, &DeleteParams::background()).await {
            Ok(_) => info!(job = %job, "deleted a finished Job of an earlier attempt"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_err(format!("deleting Job {job}"))(e)),
        }
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let records: Vec<(String, i64)> = children(ctx, &revisions, &name, uid.as_deref(), &selector)
        .await?
        .into_iter()
        .filter(|r| ours(&r.metadata))
        .map(|r| (r.metadata.name.unwrap_or_default(), r.revision))
        .collect();
    let stable = status
        .stable_version
        .as_deref()
        .map(|v| naming::revision_name(&name, v))
        .unwrap_or_default();
    for record in cleanup::revisions_to_delete(&records, &stable) {
        ctx.metrics
            .api_writes
            .with_label_values(&["revision"])
            .inc();
        match revisions.delete(&record, &DeleteParams::default()).await {
            Ok(_) => info!(revision = %record, "deleted an old stable record"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_err(format!("deleting ControllerRevision {record}"))(e)),
        }
    }
    Ok(())
}

/// Writes the decided status, on the condition that the release is still the one this
/// reconcile read (its resourceVersion): otherwise the write conflicts (409) and the
/// reconcile is retried on fresh state.
#[tracing::instrument(name = "status.write", skip_all)]
async fn record(
    release: &ListaCompraRelease,
    status: &ListaCompraReleaseStatus,
    ctx: &Context,
) -> Result<()> {
    write_status(ctx, release, status).await
}

/// Writes `status` to `object` by server-side apply (the operator's field manager), on the
/// condition that `object` is still the copy read (its resourceVersion): otherwise the write
/// conflicts (409).
pub(crate) async fn write_status<K>(
    ctx: &Context,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    ctx.metrics.api_writes.with_label_values(&["status"]).inc();
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "resourceVersion": object.meta().resource_version },
        "status": status,
    });
    Api::<K>::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default())
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err(format!(
            "writing the status of {} {}",
            K::kind(&()),
            object.name_any()
        )))?;
    Ok(())
}

/// Publishes the decision's notes as Events and log lines.
async fn announce(release: &ListaCompraRelease, notes: &[decide::Note], ctx: &Context) {
    let reference = release.object_ref(&());
    for note in notes {
        let event = Note {
            regarding: reference.clone(),
            warning: note.warning,
            reason: note.reason.clone(),
            message: note.message.clone(),
            related: note.approval.as_ref().map(|name| ObjectReference {
                api_version: Some(ListaCompraApproval::api_version(&()).into_owned()),
                kind: Some(ListaCompraApproval::kind(&()).into_owned()),
                name: Some(name.clone()),
                namespace: reference.namespace.clone(),
                ..ObjectReference::default()
            }),
        };
        if note.warning {
            warn!(reason = %note.reason, "{}", note.message);
        } else {
            info!(reason = %note.reason, "{}", note.message);
        }
        ctx.metrics.api_writes.with_label_values(&["event"]).inc();
        if let Err(e) = ctx.events.publish(&event).await {
            warn!(error = %e, "could not publish Event");
        }
    }
}

fn condition_reason(status: &ListaCompraReleaseStatus, type_: &str) -> String {
    crate::conditions::get(&status.conditions, type_)
        .map_or_else(|| "Unknown".to_owned(), |c| c.reason.clone())
}

/// The state of the Job `name`; a failed one's reason quotes its pod's termination message
/// when `explain` (one list of its pods).
pub(crate) async fn job_state(
    ctx: &Context,
    namespace: &str,
    name: Option<&str>,
    explain: bool,
) -> Result<JobState> {
    let Some(name) = name else {
        return Ok(JobState::Absent);
    };
    let job: Option<Job> = cached(ctx, namespace, name).await?;
    let Some(job) = job else {
        return Ok(JobState::Absent);
    };
    let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
    if let Some(failed) = conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
    {
        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".to_owned());
        let message = failed.message.clone().unwrap_or_default();
        let mut why = format!("{reason}: {message}")
            .trim_end_matches([':', ' '])
            .to_owned();
        if explain && let Some(said) = pod_message(ctx, namespace, name).await {
            why = format!("{why}; its pod said: {said}");
        }
        return Ok(JobState::Failed(why));
    }
    if conditions
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        return Ok(JobState::Succeeded);
    }
    Ok(JobState::Running)
}

/// The children of kind `K` of the release `name` (of uid `owner`) that `selector` selects:
/// from the watch cache when it has listed (a settled release cleans up on every
/// reconcile, and a list request each time cost two requests per reconcile), else listed.
async fn children<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    owner: Option<&str>,
    selector: &ListParams,
) -> Result<Vec<K>>
where
    K: cache::Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let namespace = api.namespace().unwrap_or_default();
    let label = naming::label_value(name);
    if let Some(owner) = owner
        && let Some(cached) = cache::owned(
            ctx.caches.get(),
            namespace,
            owner,
            (naming::RELEASE_LABEL, &label),
        )
        .await
    {
        return Ok(cached);
    }
    let kind = K::kind(&()).to_lowercase();
    ctx.metrics.api_reads.with_label_values(&[&kind]).inc();
    Ok(api
        .list(selector)
        .await
        .map_err(kube_err(format!("listing the release's {kind}s")))?
        .items)
}

/// The termination message of the Job's pods ([`jobs::termination_message`]). Only an
/// explanation: when the pods cannot be listed (RBAC not yet updated, say) the Job's own
/// reason is enough, and the release goes on.
async fn pod_message(ctx: &Context, namespace: &str, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    ctx.metrics.api_reads.with_label_values(&["pod"]).inc();
    match pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
    {
        Ok(list) => jobs::termination_message(&list.items),
        Err(e) => {
            warn!(job, error = %e, "could not list the pods of a failed Job; its reason goes without their message");
            None
        }
    }
}

/// The live children's metadata, to tell a real write from a no-op apply.
struct Live<'a> {
    api: Option<&'a kube::api::ObjectMeta>,
    worker: Option<&'a kube::api::ObjectMeta>,
    service: Option<&'a kube::api::ObjectMeta>,
    /// Whether the release wants worker pods: without, a missing worker Deployment is not
    /// created (one that exists is applied, scaled to none).
    worker_wanted: bool,
}

#[tracing::instrument(name = "apply.workload", skip_all)]
async fn apply_workload(
    owner: &Owner,
    spec: &ListaCompraReleaseSpec,
    target: &workload::Workload,
    live: Live<'_>,
    ctx: &Context,
) -> Result<()> {
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &owner.namespace);
    let child = |kind, name: &str| applied::Child {
        namespace: owner.namespace.clone(),
        release: owner.name.clone(),
        kind,
        name: name.to_owned(),
    };
    let mut deployments_written = 0;
    for (role, deployment) in workload::deployments(owner, spec, target) {
        let before = match role {
            workload::Role::Api => live.api,
            workload::Role::Worker => live.worker,
        };
        if role == workload::Role::Worker && !live.worker_wanted && before.is_none() {
            continue;
        }
        let name = role.name(&owner.name);
        let key = child(applied::Kind::Deployment, &name);
        if ctx
            .applied
            .unchanged(&key, &deployment, &deployment.metadata, before)
        {
            continue;
        }
        let returned = deployments
            .patch(&name, &ssa, &Patch::Apply(&deployment))
            .await
            .map_err(kube_err(format!("applying Deployment {name}")))?;
        ctx.applied.record(key, &deployment, &returned.metadata);
        if wrote(before, &returned.metadata) {
            ctx.metrics
                .api_writes
                .with_label_values(&["deployment"])
                .inc();
            deployments_written += 1;
        }
    }
    let name = naming::workload_name(&owner.name);
    let service = workload::service(owner, spec);
    let key = child(applied::Kind::Service, &name);
    let service_written = if ctx
        .applied
        .unchanged(&key, &service, &service.metadata, live.service)
    {
        false
    } else {
        let returned = Api::<Service>::namespaced(ctx.client.clone(), &owner.namespace)
            .patch(&name, &ssa, &Patch::Apply(&service))
            .await
            .map_err(kube_err(format!("applying Service {name}")))?;
        ctx.applied.record(key, &service, &returned.metadata);
        wrote(live.service, &returned.metadata)
    };
    if service_written {
        ctx.metrics.api_writes.with_label_values(&["service"]).inc();
    }
    if deployments_written > 0 || service_written {
        info!(target_version = %target.version, image = %target.image, deployments_written, service_written, "applied the Deployments and the Service");
    }
    Ok(())
}

/// Whether an apply changed the object: it did not exist, or its resourceVersion moved.
fn wrote(before: Option<&kube::api::ObjectMeta>, after: &kube::api::ObjectMeta) -> bool {
    before.is_none_or(|b| b.resource_version != after.resource_version)
}

/// The spec recorded when `version` became stable; `None` when no record exists (then the
/// current spec builds the stable workload).
async fn read_stable_spec(
    ctx: &Context,
    namespace: &str,
    release: &str,
    version: &str,
) -> Result<Option<ListaCompraReleaseSpec>> {
    let name = naming::revision_name(release, version);
    let revision: Option<ControllerRevision> = cached(ctx, namespace, &name).await?;
    Ok(revision.and_then(cache::revision_data))
}

/// Records `spec` as the spec of stable `version` (idempotent).
#[tracing::instrument(name = "apply.stable_revision", skip_all)]
async fn record_stable(
    revisions: &Api<ControllerRevision>,
    owner: &Owner,
    spec: &ListaCompraReleaseSpec,
    version: &str,
    generation: i64,
) -> Result<()> {
    let name = naming::revision_name(&owner.name, version);
    let data = serde_json::to_value(spec).unwrap_or_default();
    let revision = ControllerRevision {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(naming::labels(&owner.name, version)),
            owner_references: Some(vec![owner.reference.clone()]),
            ..kube::api::ObjectMeta::default()
        },
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(data)),
        revision: generation,
    };
    match revisions.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Re-released version: replace the record with the spec that passed this time.
            revisions
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&revision),
                )
                .await
                .map(|_| ())
                .map_err(kube_err(format!("updating ControllerRevision {name}")))
        }
        Err(e) => Err(kube_err(format!("recording ControllerRevision {name}"))(e)),
    }
}

/// The attempt the release's abort annotation names: a number, else none (anything else is
/// not an abort).
fn abort_requested(release: &ListaCompraRelease) -> Option<i64> {
    release
        .annotations()
        .get(listacompra_crds::release::ABORT_ANNOTATION)?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_release_is_forgotten_under_the_key_its_failures_were_counted() {
        let mut release = ListaCompraRelease::new("lc", crate::fixtures::spec("1.0.0"));
        release.metadata.namespace = Some("prod".into());
        let guard = Packed::<ListaCompraRelease>::pack(
            serde_json::to_value(release).expect("a release is JSON"),
        )
        .expect("packs");
        // What the applier reports for a release no longer in its store.
        let gone = ObjectRef::from_obj(&guard).erase();
        assert_eq!(
            failure_key(gone.namespace.as_deref(), &gone.name),
            key_of(&guard)
        );
        assert_eq!(key_of(&guard), "prod/lc");
    }

    #[test]
    fn a_secret_wakes_the_releases_of_its_namespace_whose_pods_consume_it() {
        let (reader, mut writer) = kube::runtime::reflector::store();
        for (name, namespace, database) in [
            ("a", "prod", "db"),
            ("b", "prod", "db"),
            ("c", "prod", "other-db"),
            ("d", "staging", "db"),
        ] {
            let mut spec = crate::fixtures::spec("1.0.0");
            spec.env.database_url.name = database.into();
            let mut release = ListaCompraRelease::new(name, spec);
            release.metadata.namespace = Some(namespace.into());
            let packed = Packed::<ListaCompraRelease>::pack(
                serde_json::to_value(release).expect("a release is JSON"),
            )
            .expect("packs");
            writer.apply_watcher_event(&watcher::Event::Apply(packed));
        }
        let woken = |secret: &str, namespace: &str| {
            let mut names: Vec<String> = consumers(&reader, secret, Some(namespace))
                .into_iter()
                .map(|r| r.name)
                .collect();
            names.sort();
            names
        };
        assert_eq!(woken("db", "prod"), ["a", "b"]);
        assert_eq!(woken("other-db", "prod"), ["c"]);
        assert_eq!(
            woken("j", "prod"),
            ["a", "b", "c"],
            "the JWT Secret, shared"
        );
        assert_eq!(woken("db", "staging"), ["d"]);
        assert!(woken("unrelated", "prod").is_empty());
    }

    #[test]
    fn failed_reconciles_back_off_exponentially_with_jitter_and_a_cap() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(4, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(300), "capped");
        assert_eq!(backoff(u32::MAX, 0.0), Duration::from_secs(300));
        assert_eq!(
            backoff(3, 1.0),
            Duration::from_secs(6),
            "jitter adds up to half"
        );
        assert!(backoff(3, 0.5) > backoff(3, 0.0) && backoff(3, 0.5) < backoff(3, 1.0));
    }
}
