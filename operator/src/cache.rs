//! Watch caches of the children (Jobs, the Deployment, the Service, the stable records, the
//! backup CronJobs) and,
//! for rotations, of the Secrets' metadata: one reflector per kind
//! and watched scope, which also feeds the controller's triggers, so a reconcile reads its
//! children from memory instead of the API server. Cached objects drop `managedFields`
//! (often half of an object's size, never read here), so memory stays flat as releases grow.
//!
//! A reconcile without caches (a test calling it directly) or before a cache has listed
//! once reads from the API server instead; see [`Caches::get`].

use std::collections::HashMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::IntCounterVec;
use serde::de::DeserializeOwned;

use crate::error::{Result, kube as kube_err};

/// How long a reconcile waits for a cache's first list before it reads from the API server.
const READY_WAIT: Duration = Duration::from_secs(10);

/// The caches of one watched scope (a namespace, or the whole cluster).
#[derive(Clone, Debug)]
pub struct Scope {
    jobs: Store<Job>,
    deployments: Store<Deployment>,
    services: Store<Service>,
    revisions: Store<ControllerRevision>,
    cron_jobs: Store<CronJob>,
    /// The Secrets' metadata (never their data), when Secrets are watched for rotations.
    secrets: Option<Store<PartialObjectMeta<Secret>>>,
}

/// The caches of every watched scope.
#[derive(Clone, Debug, Default)]
pub struct Caches {
    scopes: HashMap<Option<String>, Scope>,
}

/// A watch stream of one kind of child, reflected into a store, without `managedFields`.
pub type Trigger<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The trigger streams of one scope, for `Controller::owns_stream`.
#[allow(missing_debug_implementations)] // boxed streams
pub struct Triggers {
    /// Jobs.
    pub jobs: Trigger<Job>,
    /// Deployments.
    pub deployments: Trigger<Deployment>,
    /// Services.
    pub services: Trigger<Service>,
    /// ControllerRevisions (the stable records).
    pub revisions: Trigger<ControllerRevision>,
    /// The backup CronJobs.
    pub cron_jobs: Trigger<CronJob>,
}

fn api<K>(client: &Client, scope: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn reflect<K>(api: Api<K>, config: &watcher::Config) -> (Store<K>, Trigger<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config.clone())
        .modify(|object| object.managed_fields_mut().clear())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

impl Caches {
    /// Adds the caches of `scope` (children selected by `config`) and returns their trigger
    /// streams; the caches fill as the controller polls them.
    pub fn watch(
        &mut self,
        client: &Client,
        scope: Option<&str>,
        config: &watcher::Config,
    ) -> Triggers {
        let (jobs, job_trigger) = reflect(api::<Job>(client, scope), config);
        let (deployments, deployment_trigger) = reflect(api::<Deployment>(client, scope), config);
        let (services, service_trigger) = reflect(api::<Service>(client, scope), config);
        let (revisions, revision_trigger) =
            reflect(api::<ControllerRevision>(client, scope), config);
        let (cron_jobs, cron_job_trigger) = reflect(api::<CronJob>(client, scope), config);
        self.scopes.insert(
            scope.map(ToOwned::to_owned),
            Scope {
                jobs,
                deployments,
                services,
                revisions,
                cron_jobs,
                secrets: None,
            },
        );
        Triggers {
            jobs: job_trigger,
            deployments: deployment_trigger,
            services: service_trigger,
            revisions: revision_trigger,
            cron_jobs: cron_job_trigger,
        }
    }

    /// Watches the metadata of every Secret of `scope` (added by [`Caches::watch`]) and
    /// returns the trigger stream. Only metadata is requested, so no Secret's data reaches
    /// the operator; RBAC still has to grant `list` and `watch` on Secrets.
    pub fn watch_secrets(
        &mut self,
        client: &Client,
        scope: Option<&str>,
    ) -> Trigger<PartialObjectMeta<Secret>> {
        let (reader, writer) = reflector::store();
        let stream = watcher(
            api::<PartialObjectMeta<Secret>>(client, scope),
            watcher::Config::default(),
        )
        .modify(|object| object.managed_fields_mut().clear())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
        if let Some(cached) = self.scopes.get_mut(&scope.map(ToOwned::to_owned)) {
            cached.secrets = Some(reader);
        }
        stream
    }

    /// The fingerprint of the Secrets `names` of `namespace` (their names and
    /// resourceVersions), or `None` when Secrets are not watched, their cache has not listed
    /// within a few seconds, or one of them is missing (pods rolled now could not start:
    /// the running ones keep their values until it is back).
    pub async fn secrets_version<'a>(
        &self,
        namespace: &str,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Option<String> {
        let store = self.scope(namespace)?.secrets.as_ref()?;
        tokio::time::timeout(READY_WAIT, store.wait_until_ready())
            .await
            .ok()?
            .ok()?;
        let mut listed = Vec::new();
        for name in names {
            let key = ObjectRef::<PartialObjectMeta<Secret>>::new(name).within(namespace);
            let version = store.get(&key)?.metadata.resource_version.clone()?;
            listed.push(format!("{name}={version}"));
        }
        listed.sort();
        listed.dedup();
        Some(format!("{:016x}", crate::naming::fnv1a(&listed.join(";"))))
    }

    fn scope(&self, namespace: &str) -> Option<&Scope> {
        self.scopes
            .get(&Some(namespace.to_owned()))
            .or_else(|| self.scopes.get(&None))
    }
}

/// The kinds a [`Scope`] caches.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    /// Its store in `scope`.
    fn store(scope: &Scope) -> &Store<Self>;
}

impl Cached for Job {
    fn store(scope: &Scope) -> &Store<Self> {
        &scope.jobs
    }
}

impl Cached for Deployment {
    fn store(scope: &Scope) -> &Store<Self> {
        &scope.deployments
    }
}

impl Cached for Service {
    fn store(scope: &Scope) -> &Store<Self> {
        &scope.services
    }
}

impl Cached for ControllerRevision {
    fn store(scope: &Scope) -> &Store<Self> {
        &scope.revisions
    }
}

impl Cached for CronJob {
    fn store(scope: &Scope) -> &Store<Self> {
        &scope.cron_jobs
    }
}

/// The child `name` of kind `K` in `namespace` as the cache of its scope has it once that has
/// listed, without asking the API server: `None` when there are no caches, or their first
/// list takes longer than a few seconds. For children that matter only when they exist
/// (ours, to delete).
pub async fn peek<K>(caches: Option<&Caches>, namespace: &str, name: &str) -> Option<K>
where
    K: Cached,
{
    let store = caches.and_then(|c| c.scope(namespace)).map(K::store)?;
    tokio::time::timeout(READY_WAIT, store.wait_until_ready())
        .await
        .ok()?
        .ok()?;
    store
        .get(&ObjectRef::<K>::new(name).within(namespace))
        .map(|cached| (*cached).clone())
}

/// The child `name` of kind `K` in `namespace`: from the cache of its scope once that has
/// listed. Absence is confirmed with the API server (rare in a steady state): the caches
/// hold only objects labelled as the operator's, and an object of someone else's with that
/// name must be seen, never overwritten.
pub async fn get<K>(
    caches: Option<&Caches>,
    reads: &IntCounterVec,
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>>
where
    K: Cached + Resource<Scope = NamespaceResourceScope>,
{
    if let Some(store) = caches.and_then(|c| c.scope(namespace)).map(K::store)
        && tokio::time::timeout(READY_WAIT, store.wait_until_ready())
            .await
            .is_ok_and(|ready| ready.is_ok())
    {
        let key = ObjectRef::<K>::new(name).within(namespace);
        if let Some(cached) = store.get(&key) {
            return Ok(Some((*cached).clone()));
        }
    }
    reads
        .with_label_values(&[&K::kind(&()).to_lowercase()])
        .inc();
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading {} {name}", K::kind(&()))))
}
