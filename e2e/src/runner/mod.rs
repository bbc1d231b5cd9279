//! The workload runner: what a kubelet and kube-proxy would do for the ListaCompra pods.
//!
//! kwok pods run no containers. For the full-stack tests and the demo, the runner watches the
//! pods of one namespace and runs their container for real, as local processes of the
//! binaries built in this workspace: `listacompra-api` for the API's image, and
//! `listacompra-operator` for the operator's image when [`RunnerConfig::images`] names it:
//!
//! - a Deployment pod (owned by a ReplicaSet) annotated `listacompra.test/runner: "true"` runs
//!   while the pod is Running and not being deleted. kwok starts it not Ready
//!   (e2e/controlplane/stages/runner-server-pods.yaml); the runner plays the kubelet's
//!   readiness probe: once the container's readiness path answers, the process becomes a
//!   backend of every Service that selects it and a Prometheus scrape target, and only then
//!   is the pod marked Ready, so the Deployment controller never counts a pod that does not
//!   serve yet. When the pod goes, it leaves the Services first, then gets its `preStop`
//!   sleep, then SIGTERM, as endpoint removal and the kubelet order it on a real cluster;
//! - a StatefulSet pod so annotated (a database the test runs in the cluster, so that it can
//!   be stopped and started as a workload) runs the same way, but on the port its container
//!   declares, as on the host's network (a StatefulSet of one replica never runs two pods at
//!   once), with a `tcpSocket` or `httpGet` readiness probe. When it goes, its process gets
//!   the image's stop signal ([`Image::stop_signal`]), and the pod is deleted only once the
//!   process is gone (kwok's stage e2e/controlplane/stages/runner-stateful-pods.yaml holds it
//!   until then, or until its grace period ends), so a new pod of the same name does not meet
//!   the old process. (One that ignores its stop signal for the whole grace period is killed
//!   with its process group a moment after the stage has let its pod go);
//! - a Job pod annotated `listacompra.test/runner: "true"` runs its command once; the exit
//!   code goes to the pod's annotation `listacompra.test/exit-code`, and kwok's test stages
//!   (e2e/controlplane/stages/runner-pods.yaml) end the pod Succeeded or Failed from it. A
//!   bare pod so annotated (no owner, e.g. a `helm test` hook) runs once the same way;
//! - a pod that mounts its ServiceAccount token (`automountServiceAccountToken: true`) gets
//!   what in-cluster config would give it: a kubeconfig (`KUBECONFIG`) with a token of its
//!   ServiceAccount from the TokenRequest API, so it has exactly that account's rights;
//! - `fieldRef` environment (the downward API) is filled from the pod.
//!
//! The image tag selects the build's behaviour: [`RunnerConfig::builds`] maps a tag to extra
//! environment (for example fault injection for a "bad" version); other tags run as built.
//! Each Service gets a local port ([`Runner::service_address`]) that plays kube-proxy, and a
//! container's environment that names a Service by its cluster DNS name
//! (`http://<service>.<namespace>.svc:<port>`) gets that port instead, as cluster DNS would
//! resolve it (the smoke-test Job reaches the release's Service so).

mod logs;
mod podenv;
mod process;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::{Error, Result};
pub use logs::publish_file;
use process::Process;
pub use process::free_port;

/// Pod annotation that hands a Job pod to the runner.
pub const RUN_ANNOTATION: &str = "listacompra.test/runner";
/// Pod annotation where the runner reports a Job pod's exit code.
pub const EXIT_CODE_ANNOTATION: &str = "listacompra.test/exit-code";
/// Pod annotation where the runner reports a failed Job pod's termination message (kwok's
/// stage copies it into the container's terminated state).
pub const TERMINATION_MESSAGE_ANNOTATION: &str = "listacompra.test/termination-message";
/// How long a stopped container gets between SIGTERM and SIGKILL when its pod names no
/// grace period.
const GRACE: Duration = Duration::from_secs(30);
/// How long a new API process gets to answer its readiness probe (generous: a busy machine
/// starts processes slowly).
const STARTUP: Duration = Duration::from_secs(60);

/// How long the token of a pod's ServiceAccount is valid (TokenRequest's default is an hour
/// too; the kubelet refreshes it, the runner's pods live shorter).
const TOKEN_SECONDS: i64 = 3600;

/// What the runner runs, and where it reports.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The `listacompra-api` binary that stands in for the API's image (and any image not
    /// in `images`).
    pub api_binary: PathBuf,
    /// What stands in for other images, by image repository (the reference without tag or
    /// digest), e.g. `ghcr.io/listacompra/operator` → `listacompra-operator`.
    pub images: BTreeMap<String, Image>,
    /// The cluster, to give pods that mount their ServiceAccount token a kubeconfig; `None`
    /// refuses such pods.
    pub cluster: Option<Cluster>,
    /// Extra environment by image tag: the behaviour of that "build".
    pub builds: BTreeMap<String, BTreeMap<String, String>>,
    /// Prometheus file_sd folder for scrape targets, if Prometheus should scrape the pods.
    pub prometheus_targets: Option<PathBuf>,
    /// Folder for the processes' logs.
    pub log_dir: PathBuf,
}

/// What stands in for one image: its program, and what its image configuration would say.
#[derive(Debug, Clone)]
pub struct Image {
    /// The local program run as the image's entrypoint.
    pub binary: PathBuf,
    /// Whether the process runs as the pod's `runAsUser` and `runAsGroup`, as the kubelet
    /// would run it (the runner must run as root to switch). Other images run as the
    /// runner's own user, because they share files the runner makes (kubeconfigs, TLS
    /// material); pgBackRest and PostgreSQL switch, because they must own the repository
    /// and the data folder.
    pub as_pod_user: bool,
    /// The signal that stops the container, as an image's `STOPSIGNAL` says (PostgreSQL's
    /// image says `SIGINT`, its fast shutdown; SIGTERM would wait for every client to leave).
    pub stop_signal: &'static str,
}

impl Image {
    /// `binary`, run as the runner's user and stopped with SIGTERM.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            as_pod_user: false,
            stop_signal: "SIGTERM",
        }
    }

    /// Run as the pod's user.
    #[must_use]
    pub fn as_pod_user(mut self) -> Self {
        self.as_pod_user = true;
        self
    }

    /// Stopped with `signal` instead of SIGTERM.
    #[must_use]
    pub fn stop_signal(mut self, signal: &'static str) -> Self {
        self.stop_signal = signal;
        self
    }
}

/// One thing the runner did, for progress output and failure reports.
#[derive(Debug, Clone)]
pub struct RunnerEvent {
    /// When, since the runner started.
    pub at: Duration,
    /// What happened.
    pub message: String,
}

/// A ready API process: its labels (for Service selectors) and address.
#[derive(Debug, Clone)]
struct Ready {
    labels: BTreeMap<String, String>,
    address: SocketAddr,
    version: String,
}

struct Shared {
    client: Client,
    namespace: String,
    config: RunnerConfig,
    started: Instant,
    ready: Mutex<BTreeMap<String, Ready>>,
    selectors: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    proxies: tokio::sync::Mutex<BTreeMap<String, SocketAddr>>,
    events: Mutex<Vec<RunnerEvent>>,
    started_versions: Mutex<BTreeSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, message: String) {
        lock(&self.events).push(RunnerEvent {
            at: self.started.elapsed(),
            message,
        });
    }

    async fn service_address(shared: &Arc<Self>, name: &str) -> Result<SocketAddr> {
        let mut proxies = shared.proxies.lock().await;
        if let Some(address) = proxies.get(name) {
            return Ok(*address);
        }
        let backends = shared.clone();
        let service = name.to_owned();
        let address = proxy::start(move || backends.backends(&service))
            .await
            .map_err(|source| Error::Io {
                action: format!("listening for Service {name}"),
                source,
            })?;
        proxies.insert(name.to_owned(), address);
        Ok(address)
    }

    fn backends(&self, service: &str) -> Vec<SocketAddr> {
        let Some(selector) = lock(&self.selectors).get(service).cloned() else {
            return Vec::new();
        };
        lock(&self.ready)
            .values()
            .filter(|r| {
                !selector.is_empty() && selector.iter().all(|(k, v)| r.labels.get(k) == Some(v))
            })
            .map(|r| r.address)
            .collect()
    }
}

/// The runner of one namespace. Stops every process when dropped.
pub struct Runner {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Runner {
    /// Starts watching `namespace`'s pods and Services.
    pub fn start(client: Client, namespace: &str, config: RunnerConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.log_dir).map_err(|source| Error::Io {
            action: format!("creating {}", config.log_dir.display()),
            source,
        })?;
        // Targets left by an earlier runner of this namespace point at processes long gone.
        if let Some(dir) = &config.prometheus_targets {
            let prefix = format!("{namespace}--");
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let shared = Arc::new(Shared {
            client,
            namespace: namespace.to_owned(),
            config,
            started: Instant::now(),
            ready: Mutex::default(),
            selectors: Mutex::default(),
            proxies: tokio::sync::Mutex::default(),
            events: Mutex::default(),
            started_versions: Mutex::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(watch_services(shared.clone())),
            tokio::spawn(watch_pods(shared.clone(), stopped)),
        ];
        Ok(Self {
            shared,
            tasks,
            stop,
        })
    }

    /// The local address that plays the Service `name` (created on first use; it forwards
    /// to the Service's ready pods once the Service exists).
    pub async fn service_address(&self, name: &str) -> Result<SocketAddr> {
        Shared::service_address(&self.shared, name).await
    }

    /// Pods whose API process is up, with its address.
    pub fn ready_pods(&self) -> BTreeMap<String, SocketAddr> {
        lock(&self.shared.ready)
            .iter()
            .map(|(pod, r)| (pod.clone(), r.address))
            .collect()
    }

    /// How many processes are up now, by their pod's `app.kubernetes.io/name`
    /// (`listacompra-api`, `listacompra-worker`).
    pub fn ready_apps(&self) -> BTreeMap<String, usize> {
        let mut apps = BTreeMap::new();
        for ready in lock(&self.shared.ready).values() {
            let app = ready
                .labels
                .get("app.kubernetes.io/name")
                .cloned()
                .unwrap_or_default();
            *apps.entry(app).or_default() += 1;
        }
        apps
    }

    /// Versions (`APP_VERSION`) of the API processes that are up now (a process without one,
    /// such as a database, has none).
    pub fn ready_versions(&self) -> BTreeSet<String> {
        lock(&self.shared.ready)
            .values()
            .filter(|r| !r.version.is_empty())
            .map(|r| r.version.clone())
            .collect()
    }

    /// Versions of every API server process started so far.
    pub fn started_versions(&self) -> BTreeSet<String> {
        lock(&self.shared.started_versions).clone()
    }

    /// What happened since the last call.
    pub fn take_events(&self) -> Vec<RunnerEvent> {
        std::mem::take(&mut *lock(&self.shared.events))
    }

    /// Stops every process (preStop sleep, SIGTERM, then SIGKILL after the grace period)
    /// and the watches.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(GRACE + Duration::from_secs(5), task).await;
        }
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("namespace", &self.shared.namespace)
            .finish_non_exhaustive()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn watch_services(shared: Arc<Shared>) {
    let api: Api<Service> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(svc) | Event::InitApply(svc)) => {
                let selector = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default();
                lock(&shared.selectors).insert(svc.name_any(), selector);
            }
            Ok(Event::Delete(svc)) => {
                lock(&shared.selectors).remove(&svc.name_any());
            }
            Ok(Event::Init | Event::InitDone) | Err(_) => {}
        }
    }
}

/// A pod the runner runs: the signal that stops it.
struct Running {
    stop: watch::Sender<bool>,
}

async fn watch_pods(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    // Pods by uid; `done` remembers Job pods that ran, so they never run twice.
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = stopped.changed() => None,
        };
        let Some(event) = event else { break };
        let (pod, deleted) = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => (pod, false),
            Ok(Event::Delete(pod)) => (pod, true),
            Ok(Event::Init | Event::InitDone) | Err(_) => continue,
        };
        let uid = pod.uid().unwrap_or_default();
        let kind = kind_of(&pod);
        let wanted = !deleted && kind.is_some() && should_run(&pod);
        // A StatefulSet pod being deleted whose process is not running (it never ran, or it
        // ended) has nothing to wait for: the runner deletes it at once, as a kubelet would.
        let stateful_deleting =
            kind == Some(Kind::Stateful) && !deleted && pod.metadata.deletion_timestamp.is_some();
        let mut remove_now = false;
        match (wanted, running.contains_key(&uid)) {
            (true, false) if !done.contains(&uid) => {
                let (stop, stop_rx) = watch::channel(false);
                running.insert(uid.clone(), Running { stop });
                if kind == Some(Kind::Job) {
                    done.insert(uid.clone());
                }
                tasks.spawn(run_pod(shared.clone(), pod.clone(), kind, stop_rx));
            }
            (false, true) => {
                // The pod stays known while its task runs: a later event of it (a re-list,
                // a patch) must not take it for a pod without a process. Sending the stop
                // again is harmless; it fails only once the task has ended (its receiver
                // dropped), and then nothing is left to wait for.
                let stopping = running.get(&uid).is_some_and(|r| r.stop.send(true).is_ok());
                remove_now = stateful_deleting && !stopping;
            }
            (false, false) => remove_now = stateful_deleting,
            _ => {}
        }
        // Deleting is idempotent (a pod gone or replaced is left alone), so a delete that
        // failed is tried again on the pod's next event.
        if remove_now {
            let shared = shared.clone();
            tasks.spawn(async move { remove_if_deleted(&shared, &pod).await });
        }
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    while tasks.join_next().await.is_some() {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A Deployment's pod: a server that runs until the pod goes, on a port of its own.
    Server,
    /// A StatefulSet's pod: a server that runs until the pod goes, on its declared port.
    Stateful,
    /// A Job's pod handed to the runner: a command that runs once.
    Job,
}

fn kind_of(pod: &Pod) -> Option<Kind> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.kind.as_str());
    match owner {
        _ if pod.annotations().get(RUN_ANNOTATION).map(String::as_str) != Some("true") => None,
        Some("ReplicaSet") => Some(Kind::Server),
        Some("StatefulSet") => Some(Kind::Stateful),
        // A bare pod (a `helm test` hook) runs its command once, as a Job's pod does.
        Some("Job") | None => Some(Kind::Job),
        Some(_) => None,
    }
}

/// How the kubelet would stop the pod's container: the `preStop` sleep, then SIGTERM with
/// the rest of the grace period before SIGKILL.
fn stop_timing(pod: &Pod) -> (Duration, Duration) {
    let spec = pod.spec.as_ref();
    let pre_stop = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map_or(0, |s| u64::try_from(s.seconds).unwrap_or(0));
    let grace = spec
        .and_then(|s| s.termination_grace_period_seconds)
        .map_or(GRACE, |g| {
            Duration::from_secs(u64::try_from(g).unwrap_or(0))
        });
    let pre_stop = Duration::from_secs(pre_stop).min(grace);
    (pre_stop, grace - pre_stop)
}

/// How the runner, as the kubelet, finds out that a container is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// An HTTP GET of this path answers 2xx.
    Http(String),
    /// A TCP connection is accepted.
    Tcp,
}

/// The container's readiness probe: its `tcpSocket`, or its `httpGet` path (`/health`
/// without a probe).
fn readiness(pod: &Pod) -> Readiness {
    let probe = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.readiness_probe.as_ref());
    if probe.is_some_and(|p| p.tcp_socket.is_some()) {
        return Readiness::Tcp;
    }
    Readiness::Http(
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.clone())
            .unwrap_or_else(|| "/health".to_owned()),
    )
}

/// Whether the process at `address` passes `readiness` now.
async fn passes(http: &reqwest::Client, address: SocketAddr, readiness: &Readiness) -> bool {
    match readiness {
        Readiness::Http(path) => matches!(
            http.get(format!("http://{address}{path}")).send().await,
            Ok(r) if r.status().is_success()
        ),
        Readiness::Tcp => tokio::net::TcpStream::connect(address).await.is_ok(),
    }
}

/// The first port a StatefulSet pod's container declares: where its process listens.
fn declared_port(pod: &Pod) -> Result<u16> {
    first_container(pod)?
        .ports
        .iter()
        .flatten()
        .find_map(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| Error::Workload {
            message: format!(
                "StatefulSet pod {} declares no container port to listen on",
                pod.name_any()
            ),
        })
}

fn should_run(pod: &Pod) -> bool {
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    running
        && pod.metadata.deletion_timestamp.is_none()
        && !pod.annotations().contains_key(EXIT_CODE_ANNOTATION)
}

/// The tag of an image reference (`repo:tag`), if any.
fn image_tag(image: &str) -> Option<&str> {
    let (repo, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !repo.is_empty()).then_some(tag)
}

/// The pod's (only) container.
fn first_container(pod: &Pod) -> Result<&k8s_openapi::api::core::v1::Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .ok_or_else(|| Error::Workload {
            message: format!("pod {} has no container", pod.name_any()),
        })
}

/// The repository of an image reference: without its tag or digest.
fn image_repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(repo, _)| repo);
    match image_tag(image) {
        Some(tag) => &image[..image.len() - tag.len() - 1],
        None => image,
    }
}

/// The local binary that stands in for `pod`'s image, and the arguments: the image's
/// entrypoint (the binary) with the container's `command` (which must name that binary, as
/// the images hold no other program) and `args`.
fn argv(config: &RunnerConfig, pod: &Pod) -> Result<(PathBuf, Vec<String>)> {
    let container = first_container(pod)?;
    let image = container.image.as_deref().unwrap_or_default();
    let binary = image_config(config, pod).map_or(&config.api_binary, |i| &i.binary);
    let program = program_name(binary);
    let mut args: Vec<String> = container.command.clone().unwrap_or_default();
    if let Some(first) = args.first() {
        if Path::new(first).file_name().and_then(|n| n.to_str()) != Some(program) {
            return Err(Error::Workload {
                message: format!(
                    "pod {} runs {first:?}, but its image {image} holds only {program}",
                    pod.name_any()
                ),
            });
        }
        args.remove(0);
    }
    args.extend(container.args.clone().unwrap_or_default());
    Ok((binary.clone(), args))
}

/// The user (uid, gid) `pod`'s process runs as: the pod's `runAsUser` and `runAsGroup`
/// (the container's over the pod's) when its image is in [`RunnerConfig::run_as_pod_user`];
/// else the runner's own.
fn user(config: &RunnerConfig, pod: &Pod) -> Result<Option<(u32, u32)>> {
    let container = first_container(pod)?;
    let image = container.image.as_deref().unwrap_or_default();
    if !image_config(config, pod).is_some_and(|i| i.as_pod_user) {
        return Ok(None);
    }
    let pod_level = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let own = container.security_context.as_ref();
    let uid = own
        .and_then(|s| s.run_as_user)
        .or(pod_level.and_then(|s| s.run_as_user));
    let gid = own
        .and_then(|s| s.run_as_group)
        .or(pod_level.and_then(|s| s.run_as_group))
        .or(uid);
    let id = |value: i64| {
        u32::try_from(value).map_err(|_| Error::Workload {
            message: format!(
                "pod {} runs as id {value}, which is not a user id",
                pod.name_any()
            ),
        })
    };
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok(Some((id(uid)?, id(gid)?))),
        _ => Err(Error::Workload {
            message: format!(
                "pod {} runs image {image}, which must run as the pod's user, but it names no \
                 runAsUser",
                pod.name_any()
            ),
        }),
    }
}

/// What stands in for `pod`'s image ([`RunnerConfig::images`]); `None`: the API binary, run
/// as the runner's user and stopped with SIGTERM.
fn image_config<'a>(config: &'a RunnerConfig, pod: &Pod) -> Option<&'a Image> {
    let image = first_container(pod).ok()?.image.as_deref()?;
    config.images.get(image_repository(image))
}

/// The signal that stops `pod`'s container: its image's (SIGTERM unless said otherwise).
fn stop_signal(config: &RunnerConfig, pod: &Pod) -> &'static str {
    image_config(config, pod).map_or("SIGTERM", |i| i.stop_signal)
}

fn program_name(binary: &Path) -> &str {
    binary.file_name().and_then(|n| n.to_str()).unwrap_or("?")
}

/// The environment that makes `program` listen on 127.0.0.1:`port` instead of the
/// container's port (every process of this machine shares one network namespace).
fn listen_on(program: &str, port: u16) -> (String, String) {
    match program {
        "listacompra-operator" => ("METRICS_ADDRESS".to_owned(), format!("127.0.0.1:{port}")),
        _ => ("PORT".to_owned(), port.to_string()),
    }
}

async fn environment(shared: &Arc<Shared>, pod: &Pod) -> Result<BTreeMap<String, String>> {
    let container = first_container(pod)?;
    let mut env = podenv::resolve(&shared.client, &shared.namespace, pod, container).await?;
    if let Some(kubeconfig) = service_account_kubeconfig(shared, pod).await? {
        env.insert("KUBECONFIG".to_owned(), kubeconfig.display().to_string());
    }
    let tag = container.image.as_deref().and_then(image_tag).unwrap_or("");
    if let Some(extra) = shared.config.builds.get(tag) {
        env.extend(extra.clone());
    }
    // Cluster DNS and kube-proxy: a URL naming a port the Service of this namespace declares
    // reaches its local proxy; any other (no such Service, no such port) stays unresolvable,
    // as it would fail on a cluster.
    let services: Api<Service> = Api::namespaced(shared.client.clone(), &shared.namespace);
    for value in env.values_mut() {
        let Some(url) = podenv::cluster_service(value, &shared.namespace) else {
            continue;
        };
        let service = services
            .get_opt(&url.service)
            .await
            .map_err(|source| Error::Kube {
                action: format!("reading Service {}", url.service),
                source,
            })?;
        let declared = service
            .and_then(|s| s.spec)
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .iter()
            .any(|p| i64::from(p.port) == i64::from(url.port));
        if declared {
            let address = Shared::service_address(shared, &url.service).await?;
            value.replace_range(url.authority, &address.to_string());
        }
    }
    Ok(env)
}

/// For a pod that mounts its ServiceAccount token, a kubeconfig (readable by its owner only)
/// that authenticates as that ServiceAccount with a fresh token from the TokenRequest API,
/// written next to the pod's log.
async fn service_account_kubeconfig(shared: &Shared, pod: &Pod) -> Result<Option<PathBuf>> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.automount_service_account_token) != Some(true) {
        return Ok(None);
    }
    let account = spec
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let name = pod.name_any();
    let cluster = shared
        .config
        .cluster
        .as_ref()
        .ok_or_else(|| Error::Workload {
            message: format!(
                "pod {name} mounts the token of ServiceAccount {account}, but this runner was \
             started without the cluster (RunnerConfig::cluster)"
            ),
        })?;
    let path = kubeconfig_path(shared, &name);
    cluster
        .service_account_kubeconfig(
            &shared.client,
            &shared.namespace,
            account,
            TOKEN_SECONDS,
            &path,
        )
        .await?;
    Ok(Some(path))
}

/// Where the kubeconfig of pod `name`'s ServiceAccount token is written.
fn kubeconfig_path(shared: &Shared, name: &str) -> PathBuf {
    shared.config.log_dir.join(format!("{name}.kubeconfig"))
}

/// Where the output of pod `name`'s process goes.
fn log_path(shared: &Shared, name: &str) -> std::path::PathBuf {
    shared.config.log_dir.join(format!("{name}.log"))
}

async fn run_pod(shared: Arc<Shared>, pod: Pod, kind: Option<Kind>, stop: watch::Receiver<bool>) {
    let name = pod.name_any();
    if kind.is_some() {
        logs::publish(&shared, &pod, &log_path(&shared, &name)).await;
    }
    let outcome = match kind {
        Some(kind @ (Kind::Server | Kind::Stateful)) => {
            let outcome = run_server(&shared, &pod, kind == Kind::Stateful, stop).await;
            // However it ended (stopped, exited, never started), a StatefulSet pod being
            // deleted goes once its process is gone.
            if kind == Kind::Stateful {
                remove_if_deleted(&shared, &pod).await;
            }
            outcome
        }
        Some(Kind::Job) => run_job(&shared, &pod, stop).await,
        None => Ok(()),
    };
    // The token's file goes with the process, as the kubelet unmounts it with the pod.
    let _ = std::fs::remove_file(kubeconfig_path(&shared, &name));
    if let Err(e) = outcome {
        shared.record(format!("pod {name}: {e}"));
        if kind == Some(Kind::Job) {
            report_exit(&shared, &name, 127, Some(e.to_string())).await;
        }
    }
}

/// Runs a server pod until it goes: a Deployment's on a free port its environment names, a
/// StatefulSet's (`stateful`) on its declared port.
async fn run_server(
    shared: &Arc<Shared>,
    pod: &Pod,
    stateful: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let name = pod.name_any();
    let (binary, args) = argv(&shared.config, pod)?;
    let program = program_name(&binary).to_owned();
    let mut env = environment(shared, pod).await?;
    let port = if stateful {
        declared_port(pod)?
    } else {
        let port = free_port()?;
        let (key, value) = listen_on(&program, port);
        env.insert(key, value);
        port
    };
    let signal = stop_signal(&shared.config, pod);
    // Deleted while its environment was being resolved: nothing to start.
    if *stop.borrow() {
        return Ok(());
    }
    let version = env.get("APP_VERSION").cloned().unwrap_or_default();
    let log = log_path(shared, &name);
    let (pre_stop, grace) = stop_timing(pod);
    let mut process = Process::spawn(
        &binary,
        &args,
        &env,
        user(&shared.config, pod)?,
        &log,
        stateful,
    )?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    shared.record(format!(
        "pod {name}: started {program} {version} on {address}"
    ));
    if !version.is_empty() {
        lock(&shared.started_versions).insert(version.clone());
    }

    let probe = readiness(pod);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + STARTUP;
    let up = loop {
        if passes(&http, address, &probe).await {
            break true;
        }
        let stopping = *stop.borrow();
        if Instant::now() > deadline || stopping {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !up {
        shared.record(format!(
            "pod {name}: {probe:?} on {address} did not pass within {STARTUP:?}"
        ));
        process.stop(signal, grace).await;
        return Ok(());
    }
    // Serve first, then say Ready: the pod joins its Services before the Deployment
    // controller may count it available and remove an old one.
    lock(&shared.ready).insert(
        name.clone(),
        Ready {
            labels: pod.labels().clone(),
            address,
            version,
        },
    );
    // A test's database exposes no metrics: no scrape target.
    let target = (!stateful)
        .then(|| scrape_target(shared, pod, address))
        .flatten();
    set_ready(shared, &name, true).await;
    shared.record(format!("pod {name}: ready"));
    let exited = tokio::select! {
        _ = stopped(&mut stop) => None,
        code = process.wait() => Some(code),
    };
    // Leave the Services (no new connection reaches the process), then keep serving for the
    // preStop sleep: connections routed just before still find it listening.
    lock(&shared.ready).remove(&name);
    if let Some(path) = target {
        let _ = std::fs::remove_file(path);
    }
    if let Some(code) = exited {
        shared.record(format!("pod {name}: {program} exited with {code}"));
        set_ready(shared, &name, false).await;
        return Ok(());
    }
    tokio::time::sleep(pre_stop).await;
    process.stop(signal, grace).await;
    shared.record(format!("pod {name}: stopped"));
    Ok(())
}

/// The kubelet's last word on a pod being deleted whose containers have stopped: deletes it
/// for good (grace period 0), this pod only (its uid), so that its StatefulSet may start the
/// next pod of the same name. A pod not being deleted (the runner shutting down) stays.
async fn remove_if_deleted(shared: &Shared, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let name = pod.name_any();
    let current = match api.get_opt(&name).await {
        Ok(Some(current)) => current,
        Ok(None) => return,
        Err(e) => {
            shared.record(format!("pod {name}: could not read it to delete it: {e}"));
            return;
        }
    };
    if current.uid() != pod.uid() || current.metadata.deletion_timestamp.is_none() {
        return;
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => shared.record(format!("pod {name}: deleted after its process stopped")),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => shared.record(format!("pod {name}: could not delete it: {e}")),
    }
}

/// Sets the pod's Ready condition as the kubelet does after a readiness probe. A pod that
/// is gone meanwhile is fine (404).
async fn set_ready(shared: &Shared, pod: &str, ready: bool) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let status = if ready { "True" } else { "False" };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |type_: &str| {
        json!({ "type": type_, "status": status, "lastTransitionTime": now,
                "reason": if ready { "ProbeSucceeded" } else { "ContainersNotReady" } })
    };
    let containers: Vec<_> = api
        .get_opt(pod)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.status)
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({ "name": c.name, "ready": ready }))
        .collect();
    let patch = json!({ "status": {
        "conditions": [condition("Ready"), condition("ContainersReady")],
        "containerStatuses": containers,
    }});
    match api
        .patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => shared.record(format!("pod {pod}: could not set Ready={status}: {e}")),
    }
}

/// Resolves once the pod is to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Writes a Prometheus file_sd target for the pod, labelled as the API ServiceMonitor and
/// the worker PodMonitor label it (`job` from app.kubernetes.io/name, `namespace`, `pod`,
/// and `release` from app.kubernetes.io/instance); its path, to remove it later.
fn scrape_target(shared: &Shared, pod: &Pod, address: SocketAddr) -> Option<PathBuf> {
    let dir = shared.config.prometheus_targets.as_ref()?;
    let name = pod.name_any();
    let path = dir.join(format!("{}--{name}.json", shared.namespace));
    let mut labels = json!({ "namespace": shared.namespace, "pod": name });
    if let Some(release) = pod.labels().get("app.kubernetes.io/instance") {
        labels["release"] = json!(release);
    }
    if let Some(app) = pod.labels().get("app.kubernetes.io/name") {
        labels["job"] = json!(app);
    }
    let body = json!([{ "targets": [address.to_string()], "labels": labels }]);
    // Written aside and renamed, so Prometheus never reads half a file.
    let tmp = dir.join(format!(".{}--{name}.tmp", shared.namespace));
    std::fs::write(&tmp, body.to_string()).ok()?;
    std::fs::rename(&tmp, &path).ok()?;
    Some(path)
}

async fn run_job(shared: &Arc<Shared>, pod: &Pod, mut stop: watch::Receiver<bool>) -> Result<()> {
    let name = pod.name_any();
    let (binary, args) = argv(&shared.config, pod)?;
    let env = environment(shared, pod).await?;
    let log = log_path(shared, &name);
    let mut process = Process::spawn(
        &binary,
        &args,
        &env,
        user(&shared.config, pod)?,
        &log,
        false,
    )?;
    shared.record(format!(
        "pod {name}: running {} {}",
        program_name(&binary),
        args.join(" ")
    ));
    let code = tokio::select! {
        code = process.wait() => code,
        _ = stopped(&mut stop) => {
            process.stop(stop_signal(&shared.config, pod), stop_timing(pod).1).await;
            shared.record(format!("pod {name}: stopped before it finished"));
            return Ok(());
        }
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last_line = text.lines().last().unwrap_or_default();
    shared.record(format!("pod {name}: exited with {code}: {last_line}"));
    // The kubelet's FallbackToLogsOnError: a failed container's termination message is the
    // end of its log (at most 2048 bytes), which kwok's stage copies into the pod's status.
    let fallback = first_container(pod)?.termination_message_policy.as_deref()
        == Some("FallbackToLogsOnError");
    let message = (code != 0).then(|| {
        if fallback {
            log_tail(&text, 2048)
        } else {
            String::new()
        }
    });
    report_exit(shared, &name, code, message).await;
    Ok(())
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
fn log_tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

async fn report_exit(shared: &Shared, pod: &str, code: i32, message: Option<String>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let mut annotations = json!({ EXIT_CODE_ANNOTATION: code.to_string() });
    if let Some(message) = message {
        annotations[TERMINATION_MESSAGE_ANNOTATION] = json!(message);
    }
    let patch = json!({ "metadata": { "annotations": annotations } });
    if let Err(e) = api
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        shared.record(format!("pod {pod}: could not report exit code {code}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("ghcr.io/listacompra/api:1.2.0"), Some("1.2.0"));
        assert_eq!(image_tag("localhost:5000/api"), None);
        assert_eq!(image_tag("localhost:5000/api:v1"), Some("v1"));
        assert_eq!(image_tag("api"), None);
    }

    #[test]
    fn image_repositories() {
        assert_eq!(
            image_repository("ghcr.io/listacompra/operator:0.1.0"),
            "ghcr.io/listacompra/operator"
        );
        assert_eq!(
            image_repository("ghcr.io/listacompra/operator@sha256:ab"),
            "ghcr.io/listacompra/operator"
        );
        assert_eq!(image_repository("localhost:5000/api"), "localhost:5000/api");
        assert_eq!(
            image_repository("localhost:5000/api:v1"),
            "localhost:5000/api"
        );
    }
}
