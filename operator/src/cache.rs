//! Watch caches of the children (Jobs, the Deployments, the Service, the stable records, the
//! backup CronJobs) and, for rotations, of the Secrets' metadata: one reflector per kind and
//! watched scope, which also feeds the controller's triggers, so a reconcile reads its
//! children from memory instead of the API server. Cached children are kept [`Packed`]:
//! their JSON text, without `managedFields` and what a reconcile never reads from them
//! ([`Pack::prune`]: pod templates), so memory grows little as releases grow (`make
//! bench-operator`: 77.5 MiB with 1,000 serving releases before pruning, 54.4 MiB after).
//!
//! A reconcile without caches (a test calling it directly) or before a cache has listed
//! once reads from the API server instead; see [`get`].

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
use listacompra_crds::ListaCompraRestore;
use prometheus::IntCounterVec;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::error::{Result, kube as kube_err};
use crate::packed::{Pack, Packed, empty_spec_field};

/// How long a reconcile waits for a cache's first list before it reads from the API server.
const READY_WAIT: Duration = Duration::from_secs(10);

/// The caches of one watched scope (a namespace, or the whole cluster).
#[derive(Clone, Debug)]
pub struct Scope {
    jobs: Store<Packed<Job>>,
    deployments: Store<Packed<Deployment>>,
    services: Store<Packed<Service>>,
    revisions: Store<Packed<ControllerRevision>>,
    cron_jobs: Store<Packed<CronJob>>,
    /// The Secrets' metadata (never their data), when Secrets are watched for rotations.
    secrets: Option<Store<PartialObjectMeta<Secret>>>,
    /// The restores (few, and each is read by its release's every reconcile).
    restores: Option<Store<ListaCompraRestore>>,
}

/// The caches of every watched scope.
#[derive(Clone, Debug, Default)]
pub struct Caches {
    scopes: HashMap<Option<String>, Scope>,
}

/// A watch stream of one kind of object, reflected into a store.
pub type Trigger<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The trigger streams of one scope, for `Controller::owns_stream`.
#[allow(missing_debug_implementations)] // boxed streams
pub struct Triggers {
    /// Jobs.
    pub jobs: Trigger<Packed<Job>>,
    /// Deployments.
    pub deployments: Trigger<Packed<Deployment>>,
    /// Services.
    pub services: Trigger<Packed<Service>>,
    /// ControllerRevisions (the stable records).
    pub revisions: Trigger<Packed<ControllerRevision>>,
    /// The backup CronJobs.
    pub cron_jobs: Trigger<Packed<CronJob>>,
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

fn reflect<K>(
    api: Api<Packed<K>>,
    config: &watcher::Config,
) -> (Store<Packed<K>>, Trigger<Packed<K>>)
where
    K: Cached,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config.clone())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// A watch of every object of `api` (no label selector, nothing pruned but `managedFields`),
/// reflected into a store.
fn reflect_whole<K>(api: Api<K>) -> (Store<K>, Trigger<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
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
        let (jobs, job_trigger) = reflect(api(client, scope), config);
        let (deployments, deployment_trigger) = reflect(api(client, scope), config);
        let (services, service_trigger) = reflect(api(client, scope), config);
        let (revisions, revision_trigger) = reflect(api(client, scope), config);
        let (cron_jobs, cron_job_trigger) = reflect(api(client, scope), config);
        self.scopes.insert(
            scope.map(ToOwned::to_owned),
            Scope {
                jobs,
                deployments,
                services,
                revisions,
                cron_jobs,
                secrets: None,
                restores: None,
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
        let (reader, stream) = reflect_whole(api::<PartialObjectMeta<Secret>>(client, scope));
        if let Some(cached) = self.scopes.get_mut(&scope.map(ToOwned::to_owned)) {
            cached.secrets = Some(reader);
        }
        stream
    }

    /// Watches the restores of `scope` (added by [`Caches::watch`]) and returns the trigger
    /// stream.
    pub fn watch_restores(
        &mut self,
        client: &Client,
        scope: Option<&str>,
    ) -> Trigger<ListaCompraRestore> {
        let (reader, stream) = reflect_whole(api::<ListaCompraRestore>(client, scope));
        if let Some(cached) = self.scopes.get_mut(&scope.map(ToOwned::to_owned)) {
            cached.restores = Some(reader);
        }
        stream
    }

    /// The restores of `namespace` naming the release `release`, or `None`
    /// when their cache has not listed yet. It is not waited for: without the restore CRD
    /// (an upgrade that has not installed it yet) it never lists, and every release would
    /// wait.
    pub fn restores(&self, namespace: &str, release: &str) -> Option<Vec<ListaCompraRestore>> {
        use futures::FutureExt as _;
        let store = self.scope(namespace)?.restores.as_ref()?;
        store.wait_until_ready().now_or_never()?.ok()?;
        Some(
            store
                .state()
                .into_iter()
                .filter(|r| {
                    r.namespace().as_deref() == Some(namespace) && r.spec.release == release
                })
                .map(|r| (*r).clone())
                .collect(),
        )
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
pub trait Cached: Pack + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Its store in `scope`.
    fn store(scope: &Scope) -> &Store<Packed<Self>>;
}

// What is pruned is what a reconcile never reads: it builds the desired objects from the spec
// and applies them, and reads back only metadata, replicas and status
// (`rollout::workload_state`, `job_state`, `backups::status`, the owner checks).

impl Pack for Job {
    /// A Job's pod template: only its metadata and conditions are read.
    fn prune(object: &mut serde_json::Map<String, serde_json::Value>) {
        empty_spec_field(object, "template");
    }
}

impl Cached for Job {
    fn store(scope: &Scope) -> &Store<Packed<Self>> {
        &scope.jobs
    }
}

impl Pack for Deployment {
    /// A Deployment's pod template: its metadata (with the applied spec hash), replicas and
    /// status are read.
    fn prune(object: &mut serde_json::Map<String, serde_json::Value>) {
        empty_spec_field(object, "template");
    }
}

impl Cached for Deployment {
    fn store(scope: &Scope) -> &Store<Packed<Self>> {
        &scope.deployments
    }
}

impl Pack for Service {}

impl Cached for Service {
    fn store(scope: &Scope) -> &Store<Packed<Self>> {
        &scope.services
    }
}

impl Pack for ControllerRevision {}

impl Cached for ControllerRevision {
    fn store(scope: &Scope) -> &Store<Packed<Self>> {
        &scope.revisions
    }
}

/// The data of a ControllerRevision as `T`; `None` when absent or not a `T`.
pub fn revision_data<T: DeserializeOwned>(revision: ControllerRevision) -> Option<T> {
    serde_json::from_value(revision.data?.0).ok()
}

impl Pack for CronJob {
    /// A CronJob's Job template: its metadata and status are read.
    fn prune(object: &mut serde_json::Map<String, serde_json::Value>) {
        empty_spec_field(object, "jobTemplate");
    }
}

impl Cached for CronJob {
    fn store(scope: &Scope) -> &Store<Packed<Self>> {
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
    unpacked(listed(caches, namespace).await?, namespace, name)
}

/// The store of `K` for `namespace` once it has listed; `None` when there are no caches, or
/// their first list takes longer than a few seconds.
async fn listed<'c, K: Cached>(
    caches: Option<&'c Caches>,
    namespace: &str,
) -> Option<&'c Store<Packed<K>>> {
    let store = caches.and_then(|c| c.scope(namespace)).map(K::store)?;
    tokio::time::timeout(READY_WAIT, store.wait_until_ready())
        .await
        .ok()?
        .ok()?;
    Some(store)
}

/// The object `name` of `store`, unpacked; `None` when absent or when it does not parse.
fn unpacked<K: Cached>(store: &Store<Packed<K>>, namespace: &str, name: &str) -> Option<K> {
    parsed(&*store.get(&ObjectRef::new(name).within(namespace))?)
}

/// `packed`, unpacked; `None` when it does not parse as a `K` (only its metadata was read when
/// it was packed), which is logged.
fn parsed<K: Cached>(packed: &Packed<K>) -> Option<K> {
    packed
        .unpack()
        .inspect_err(|e| {
            let name = packed.meta().name.as_deref().unwrap_or_default();
            warn!(kind = %K::kind(&()), name, error = %e, "a cached object does not parse");
        })
        .ok()
}

/// The objects of kind `K` in `namespace` owned by the object of uid `owner` and labelled
/// `label` (key, value), from the cache of its scope once that has listed; `None` when there
/// are no caches, or their first list takes longer than a few seconds. What it returns may
/// lag the API server by a watch event: for housekeeping that deletes what is finished or
/// old (an object it misses is taken the next time; one already deleted answers 404).
pub async fn owned<K>(
    caches: Option<&Caches>,
    namespace: &str,
    owner: &str,
    label: (&str, &str),
) -> Option<Vec<K>>
where
    K: Cached,
{
    let store = listed::<K>(caches, namespace).await?;
    let owned = |meta: &kube::api::ObjectMeta| {
        meta.namespace.as_deref() == Some(namespace)
            && meta
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner)
    };
    Some(
        store
            .state()
            .iter()
            .filter(|packed| owned(packed.meta()))
            .filter_map(|packed| parsed(packed))
            .filter(|object| {
                object
                    .meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(label.0))
                    .map(String::as_str)
                    == Some(label.1)
            })
            .collect(),
    )
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
    // One that does not parse is read from the API server too (which says why, if it is
    // still unreadable).
    if let Some(store) = listed::<K>(caches, namespace).await
        && let Some(cached) = unpacked(store, namespace, name)
    {
        return Ok(Some(cached));
    }
    reads
        .with_label_values(&[&K::kind(&()).to_lowercase()])
        .inc();
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading {} {name}", K::kind(&()))))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::workload::{self, Owner, SpecSource, Workload};

    /// Packs `object` as the cache does, then unpacks it as a reconcile does.
    fn through_the_cache<K: Cached + serde::Serialize>(object: &K) -> (K, usize) {
        let packed = Packed::<K>::pack(serde_json::to_value(object).expect("JSON")).expect("packs");
        let text = serde_json::to_string(&packed.unpack().expect("unpacks")).expect("JSON");
        (packed.unpack().expect("unpacks"), text.len())
    }

    /// A stable record reads the same spec from the cache as from the API server.
    #[test]
    fn a_cached_stable_record_reads_the_same_spec() {
        let spec = crate::fixtures::spec("1.4.0");
        let record = ControllerRevision {
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                serde_json::to_value(&spec).expect("a spec is JSON"),
            )),
            ..ControllerRevision::default()
        };
        let (cached, _) = through_the_cache(&record);
        let read =
            |r: ControllerRevision| revision_data::<listacompra_crds::ListaCompraReleaseSpec>(r);
        assert_eq!(read(cached), Some(spec.clone()));
        assert_eq!(read(record), Some(spec));
    }

    /// A cached Deployment keeps everything a reconcile reads from it, and sheds its pod
    /// template (more than half its size, before the API server adds its defaults).
    #[test]
    fn a_cached_deployment_reads_the_same_and_is_less_than_half_the_size() {
        let owner = Owner {
            name: "lc".into(),
            namespace: "shop".into(),
            reference: OwnerReference {
                controller: Some(true),
                kind: "ListaCompraRelease".into(),
                uid: "u-1".into(),
                ..OwnerReference::default()
            },
        };
        let target = Workload {
            version: "1.0.0".into(),
            image: "reg/api:1.0.0".into(),
            spec: SpecSource::Current,
            secrets: Some("s-1".into()),
        };
        let [(_, mut api), (_, mut worker)] =
            workload::deployments(&owner, &crate::fixtures::spec("1.0.0"), &target);
        for d in [&mut api, &mut worker] {
            d.metadata.generation = Some(3);
            d.status = Some(DeploymentStatus {
                observed_generation: Some(3),
                replicas: Some(2),
                updated_replicas: Some(2),
                available_replicas: Some(2),
                ..DeploymentStatus::default()
            });
        }
        let (pruned_api, pruned_size) = through_the_cache(&api);
        let (pruned_worker, _) = through_the_cache(&worker);

        assert_eq!(
            crate::rollout::workload_state(Some(&pruned_api), Some(&pruned_worker), true),
            crate::rollout::workload_state(Some(&api), Some(&worker), true),
        );
        assert_eq!(pruned_api.metadata, api.metadata);
        assert!(workload::is_ours(&pruned_api.metadata, &owner));
        let size = serde_json::to_vec(&api).map_or(0, |v| v.len());
        assert!(
            pruned_size * 2 < size,
            "pruned {pruned_size} bytes of {size}"
        );
    }

    /// A store that has listed `objects`, as a watch fills it.
    fn store_of<K: Cached + serde::Serialize>(objects: &[K]) -> Store<Packed<K>> {
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            let packed = Packed::<K>::pack(serde_json::to_value(object).expect("JSON"));
            writer.apply_watcher_event(&watcher::Event::InitApply(packed.expect("packs")));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        reader
    }

    /// Clean-up reads from the cache what the release owns and labels as its own, in its
    /// namespace only: not another release's, not one whose label was changed by hand.
    #[tokio::test]
    async fn the_cache_answers_what_a_release_owns_and_labels() {
        let record = |name: &str, namespace: &str, owner: &str, release: &str| {
            let mut r = ControllerRevision::default();
            r.metadata.name = Some(name.into());
            r.metadata.namespace = Some(namespace.into());
            r.metadata.labels =
                Some([(crate::naming::RELEASE_LABEL.to_owned(), release.to_owned())].into());
            r.metadata.owner_references = Some(vec![OwnerReference {
                uid: owner.into(),
                ..OwnerReference::default()
            }]);
            r
        };
        let scope = Scope {
            jobs: store_of::<Job>(&[]),
            deployments: store_of::<Deployment>(&[]),
            services: store_of::<Service>(&[]),
            revisions: store_of(&[
                record("lc-1-0-0", "shop", "u-1", "lc"),
                record("lc-0-9-0", "shop", "u-1", "lc"),
                record("other-1-0-0", "shop", "u-2", "lc"),
                record("relabelled", "shop", "u-1", "by-hand"),
                record("lc-1-0-0", "elsewhere", "u-1", "lc"),
            ]),
            cron_jobs: store_of::<CronJob>(&[]),
            secrets: None,
            restores: None,
        };
        let caches = Caches {
            scopes: [(None, scope)].into(),
        };
        let mut names: Vec<String> = owned::<ControllerRevision>(
            Some(&caches),
            "shop",
            "u-1",
            (crate::naming::RELEASE_LABEL, "lc"),
        )
        .await
        .expect("listed")
        .into_iter()
        .map(|r| r.metadata.name.unwrap_or_default())
        .collect();
        names.sort();
        assert_eq!(names, ["lc-0-9-0", "lc-1-0-0"]);
        assert!(
            owned::<ControllerRevision>(None, "shop", "u-1", (crate::naming::RELEASE_LABEL, "lc"))
                .await
                .is_none(),
            "without caches the caller lists"
        );
    }
}
