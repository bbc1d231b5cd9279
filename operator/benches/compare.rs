//! `make bench-compare`, the operator's side: our operator and the controller of Argo
//! Rollouts (built from its Go module by `e2e/scripts/build-argo-rollouts.sh`), one after the
//! other on the same local cluster, each bringing `LC_BENCH_OBJECTS` objects (default 1,000)
//! that settle one pod each; and first the floor: the same number of Deployments applied
//! directly and settled by the cluster alone. Prints one table with the ratios.
//!
//! Our operator runs as it ships: the image's static musl binary (`e2e/scripts/build-static.sh`).
//!
//! - **Time to settle**: from the first create until every object reached its end (the floor:
//!   every Deployment rolled out; ours: every release Succeeded, Failed or RolledBack, after
//!   its health gate; Argo: every Rollout Healthy or Degraded).
//! - **Peak RSS** of the controller process (`VmHWM`) and its **CPU**, and the CPU of
//!   kube-controller-manager meanwhile (the Deployments and ReplicaSets the controller makes
//!   are its work).
//! - **API requests** of the controller: each runs as its own user, which a FlowSchema of its
//!   own matches; the API server counts what it dispatched per FlowSchema
//!   (`apiserver_flowcontrol_dispatched_requests_total`).
//!
//! What each object is: one release (an API Deployment of one replica, no worker pods and so
//! no worker Deployment, a Service, a health gate of two passing checks a second apart; no migration) or
//! one Rollout (one replica, the canary strategy without steps: a first rollout goes straight
//! to Healthy). Numbers, not assertions: the machine is shared and noisy.

mod measure;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::cluster::{TestContext, with_namespace};
use e2e::identity::Identity;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use listacompra_crds::{ListaCompraRelease, Phase};
use measure::{Room, alive, cpu_ticks, hwm_mib, rolled_out, sum_of, tail};
use serde_json::json;
use support::{Endpoint, Operator, RELEASE_SECRETS, create_secret, release};

/// The user our operator runs as.
const OURS: &str = "bench-compare-listacompra-operator";
/// The user Argo Rollouts' controller runs as.
const ARGO: &str = "bench-compare-argo-rollouts";
/// The label on what the bench makes outside its namespace (bindings, FlowSchemas).
const LABEL: &str = "listacompra.test/bench-compare";
/// Longest a contender may take to settle every object, and the namespace to empty after it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3_600);
/// How often the bench lists the objects (each list of a thousand is work for the server).
const POLL: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    with_namespace("bench-compare", |ctx| async move { run(ctx).await }).await;
}

/// One contender's numbers.
#[derive(Default)]
struct Measured {
    took: Duration,
    /// Objects that ended well (rolled out, Succeeded, Healthy).
    good: usize,
    /// Peak RSS of the controller, MiB.
    peak_mib: Option<f64>,
    /// CPU of the controller, seconds.
    cpu_s: Option<f64>,
    /// CPU of kube-controller-manager meanwhile, seconds.
    kcm_cpu_s: f64,
    /// Requests the controller made.
    requests: Option<f64>,
    /// Anything else worth a line.
    notes: Vec<String>,
}

async fn run(ctx: TestContext) -> Result<()> {
    let n: usize = std::env::var("LC_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1_000);
    let argo = build_argo_rollouts().await?;
    let shipped = build_static_operator().await?;
    e2e::crd::install_crds(&ctx.client).await?;
    let kubectl = ctx.cluster.bin_dir()?.join("kubectl");
    let applied = tokio::process::Command::new(&kubectl)
        .env("KUBECONFIG", ctx.cluster.kubeconfig())
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(argo.join("crds"))
        .output()
        .await?;
    ensure!(
        applied.status.success(),
        "installing Argo Rollouts' CRDs: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let dir = std::env::temp_dir().join(format!("{}-identities", ctx.namespace));
    let ours_user = Identity::new(&ctx.cluster, OURS, &[], &dir).await?;
    let argo_user = Identity::new(&ctx.cluster, ARGO, &[], &dir).await?;
    for (name, key) in RELEASE_SECRETS {
        create_secret(&ctx, name, key).await?;
    }
    let endpoint = Endpoint::start().await?;
    let kcm = ctx.cluster.component_pid("kube-controller-manager")?;

    let room = Room::make(&ctx, n).await?;
    // Whatever fails, the cluster-wide grants go, and so does every object of the namespace
    // before the room's node.
    let outcome = async {
        for user in [OURS, ARGO] {
            grant(&ctx, user).await?;
        }
        let floor = floor(&ctx, kcm, n).await?;
        let ours = ours(&ctx, &shipped, &ours_user, kcm, &endpoint.url, n).await?;
        let argo = argo_rollouts(&ctx, &argo_user, &argo, kcm, n).await?;
        anyhow::Ok((floor, ours, argo))
    }
    .await;
    revoke(&ctx).await;
    if outcome.is_err() {
        for (group, version, kind, plural) in CONTENDERS {
            let _ = dynamic(&ctx, group, version, kind, plural)
                .delete_collection(&DeleteParams::background(), &ListParams::default())
                .await;
        }
    }
    room.clear(&ctx).await;
    let (floor, ours, argo) = outcome?;
    print(n, &floor, &ours, &argo);
    Ok(())
}

/// Builds (or finds) Argo Rollouts' controller: its folder (`bin/`, `crds/`).
async fn build_argo_rollouts() -> Result<PathBuf> {
    built_by("build-argo-rollouts.sh").await
}

/// Builds (or finds) the operator as it ships: the image's static musl release binary
/// (`e2e/scripts/build-static.sh`, the Dockerfile's build stage), not the bench's own build,
/// which links the dev-dependencies' features and glibc's allocator. Its path.
async fn build_static_operator() -> Result<PathBuf> {
    Ok(built_by("build-static.sh")
        .await?
        .join("listacompra-operator"))
}

/// Runs the build script `e2e/scripts/<script>` (its log on stderr, shown) and returns the
/// folder it prints last on stdout.
async fn built_by(script: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/scripts")
        .join(script);
    let out = tokio::process::Command::new("bash")
        .arg(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {script}"))?;
    ensure!(out.status.success(), "{script} failed; its output is above");
    String::from_utf8(out.stdout)?
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("{script} printed no output folder"))
}

/// The kinds of object the contenders bring: (group, version, kind, plural).
const CONTENDERS: [(&str, &str, &str, &str); 3] = [
    ("apps", "v1", "Deployment", "deployments"),
    (
        "listacompra.app",
        "v1alpha1",
        "ListaCompraRelease",
        "listacomprareleases",
    ),
    ("argoproj.io", "v1alpha1", "Rollout", "rollouts"),
];

fn flow_schemas(ctx: &TestContext) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema"),
        "flowschemas",
    );
    Api::all_with(ctx.client.clone(), &resource)
}

fn bindings(ctx: &TestContext) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        "clusterrolebindings",
    );
    Api::all_with(ctx.client.clone(), &resource)
}

/// Gives `user` every right (both controllers get the same: the comparison is of their work,
/// not their RBAC) and a FlowSchema of its own, so that the API server counts its requests.
async fn grant(ctx: &TestContext, user: &str) -> Result<()> {
    let name = format!("{}-{user}", ctx.namespace);
    let labels = json!({ LABEL: ctx.namespace });
    let ssa = PatchParams::apply("bench-compare").force();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": name, "labels": labels },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }]
    });
    bindings(ctx)
        .patch(&name, &ssa, &Patch::Apply(&binding))
        .await
        .with_context(|| format!("binding {user} to cluster-admin"))?;
    let schema = json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "priorityLevelConfiguration": { "name": "workload-low" },
            "matchingPrecedence": 500,
            "distinguisherMethod": { "type": "ByUser" },
            "rules": [{
                "subjects": [{ "kind": "User", "user": { "name": user } }],
                "resourceRules": [{
                    "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                    "clusterScope": true, "namespaces": ["*"]
                }],
                "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }]
            }]
        }
    });
    flow_schemas(ctx)
        .patch(&name, &ssa, &Patch::Apply(&schema))
        .await
        .with_context(|| format!("the FlowSchema of {user}"))?;
    Ok(())
}

/// Deletes the bindings and FlowSchemas [`grant`] made.
async fn revoke(ctx: &TestContext) {
    let mine = ListParams::default().labels(&format!("{LABEL}={}", ctx.namespace));
    let _ = bindings(ctx)
        .delete_collection(&DeleteParams::default(), &mine)
        .await;
    let _ = flow_schemas(ctx)
        .delete_collection(&DeleteParams::default(), &mine)
        .await;
}

/// The requests the API server dispatched for `user`'s FlowSchema so far.
async fn requests_of(ctx: &TestContext, user: &str) -> Result<f64> {
    let out = tokio::process::Command::new(ctx.cluster.bin_dir()?.join("kubectl"))
        .env("KUBECONFIG", ctx.cluster.kubeconfig())
        .args(["get", "--raw", "/metrics"])
        .output()
        .await?;
    ensure!(out.status.success(), "reading the API server's metrics");
    let page = String::from_utf8_lossy(&out.stdout);
    Ok(sum_of(
        &page,
        "apiserver_flowcontrol_dispatched_requests_total",
        &format!("flow_schema=\"{}-{user}\"", ctx.namespace),
    ))
}

/// CPU and time from a start, and a controller's peak memory.
struct Window {
    started: Instant,
    kcm: (u32, u64),
    controller: Option<(u32, u64)>,
}

impl Window {
    fn open(kcm: u32, controller: Option<u32>) -> Self {
        Self {
            started: Instant::now(),
            kcm: (kcm, cpu_ticks(kcm)),
            controller: controller.map(|pid| (pid, cpu_ticks(pid))),
        }
    }

    fn close(&self, good: usize) -> Measured {
        let seconds =
            |(pid, before): (u32, u64)| cpu_ticks(pid).saturating_sub(before) as f64 / 100.0;
        Measured {
            took: self.started.elapsed(),
            good,
            peak_mib: self.controller.map(|(pid, _)| hwm_mib(pid)),
            cpu_s: self.controller.map(seconds),
            kcm_cpu_s: seconds(self.kcm),
            ..Measured::default()
        }
    }
}

/// Polls `count` (objects ended, objects ended well) until `n` have ended; fails with
/// `log()` when a controller died or the time is up.
async fn settle<F, Fut>(
    what: &str,
    n: usize,
    alive: impl Fn() -> bool,
    log: impl Fn() -> String,
    mut count: F,
) -> Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(usize, usize)>>,
{
    let started = Instant::now();
    let mut reported = Duration::ZERO;
    loop {
        let (ended, good) = count().await?;
        if ended >= n {
            eprintln!(
                "{what}: all {n} ended after {:.1} s ({good} well)",
                started.elapsed().as_secs_f64()
            );
            return Ok(good);
        }
        // A thousand objects take minutes: say how far it got, every half minute.
        if started.elapsed() >= reported + Duration::from_secs(30) {
            reported = started.elapsed();
            eprintln!(
                "{what}: {ended} of {n} ended after {:.0} s",
                reported.as_secs_f64()
            );
        }
        if !alive() {
            bail!(
                "{what}: the controller exited with {ended} of {n} ended:\n{}",
                tail(&log())
            );
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!(
                "{what}: {ended} of {n} ended within {SETTLE_TIMEOUT:?}:\n{}",
                tail(&log())
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes `objects` of the namespace (foreground: their children first) and waits until
/// no Deployment, ReplicaSet, Service or pod is left, so that the next contender starts on
/// an empty cluster.
async fn empty(ctx: &TestContext, objects: &Api<DynamicObject>) -> Result<()> {
    objects
        .delete_collection(&DeleteParams::foreground(), &ListParams::default())
        .await?;
    let started = Instant::now();
    let mut reported = Duration::ZERO;
    loop {
        let mut left = 0;
        for (group, version, kind, plural) in [
            ("apps", "v1", "Deployment", "deployments"),
            ("apps", "v1", "ReplicaSet", "replicasets"),
            ("", "v1", "Service", "services"),
            ("", "v1", "Pod", "pods"),
        ] {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            );
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource);
            left += api.list_metadata(&ListParams::default()).await?.items.len();
        }
        if left == 0 {
            eprintln!("emptied after {:.0} s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        // The garbage collector deletes at the controller-manager's client rate: a thousand
        // releases' children take minutes, as their creation did.
        ensure!(
            started.elapsed() < SETTLE_TIMEOUT,
            "{left} Deployments, ReplicaSets, Services and pods still there {} s after the delete",
            SETTLE_TIMEOUT.as_secs()
        );
        if started.elapsed() >= reported + Duration::from_secs(30) {
            reported = started.elapsed();
            eprintln!(
                "emptying: {left} objects left after {:.0} s",
                reported.as_secs_f64()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn dynamic(
    ctx: &TestContext,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource)
}

/// The pod template every contender runs: one container of the API's image.
fn template(name: &str) -> serde_json::Value {
    json!({
        "metadata": { "labels": { "app": name } },
        "spec": { "containers": [{ "name": "api", "image": "registry.example/listacompra/api:1.0.0" }] }
    })
}

/// The floor: `n` Deployments applied directly, settled by the cluster alone.
async fn floor(ctx: &TestContext, kcm: u32, n: usize) -> Result<Measured> {
    let deployments: Api<Deployment> = ctx.api();
    let window = Window::open(kcm, None);
    for i in 0..n {
        let name = format!("d{i:04}");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": name } },
                "template": template(&name)
            }
        }))?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await?;
    }
    let good = settle(
        "the floor",
        n,
        || true,
        String::new,
        || async {
            let rolled = deployments
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|d| rolled_out(d))
                .count();
            Ok((rolled, rolled))
        },
    )
    .await?;
    let measured = window.close(good);
    empty(
        ctx,
        &dynamic(ctx, "apps", "v1", "Deployment", "deployments"),
    )
    .await?;
    Ok(measured)
}

/// Our operator (`binary`), as [`OURS`], bringing `n` releases.
async fn ours(
    ctx: &TestContext,
    binary: &Path,
    user: &Identity,
    kcm: u32,
    health_url: &str,
    n: usize,
) -> Result<Measured> {
    let operator = Operator::start_binary(
        ctx,
        binary,
        &[
            ("LEADER_ELECTION", "false"),
            ("RUST_LOG", "info"),
            ("KUBECONFIG", &user.kubeconfig().display().to_string()),
        ],
    )?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let address = loop {
        if let Some(address) = operator.metrics_address()
            && http
                .get(format!("http://{address}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            break address;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the operator was not ready within 60 s:\n{}",
            tail(&operator.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pid = operator.pid().context("the operator's pid")?;
    let releases: Api<ListaCompraRelease> = ctx.api();
    let requests = requests_of(ctx, OURS).await?;
    let window = Window::open(kcm, Some(pid));
    for i in 0..n {
        let mut manifest = release("1.0.0", 1, health_url);
        manifest["metadata"]["name"] = json!(format!("r{i:04}"));
        manifest["spec"]["replicas"] = json!(1);
        manifest["spec"]["worker"] = json!({ "replicas": 0 });
        manifest["spec"]["migrations"] = json!({ "enabled": false });
        // As for Argo and the floor: no deadline inside the bench's own.
        manifest["spec"]["progressDeadlineSeconds"] = json!(3_600);
        releases
            .create(&PostParams::default(), &serde_json::from_value(manifest)?)
            .await?;
    }
    let good = settle(
        "our operator",
        n,
        || alive(pid),
        || operator.log(),
        || async {
            let phases: Vec<Option<Phase>> = releases
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|r| r.status.as_ref().and_then(|s| s.phase))
                .collect();
            let ended = phases
                .iter()
                .filter(|p| {
                    matches!(
                        p,
                        Some(Phase::Succeeded | Phase::Failed | Phase::RolledBack)
                    )
                })
                .count();
            let good = phases
                .iter()
                .filter(|p| **p == Some(Phase::Succeeded))
                .count();
            Ok((ended, good))
        },
    )
    .await?;
    let mut measured = window.close(good);
    measured.requests = Some(requests_of(ctx, OURS).await? - requests);
    // What the operator itself counted, by kind.
    let page = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let by_kind = |name: &str| {
        let mut kinds: Vec<(String, f64)> = page
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| {
                let kind = l.split("kind=\"").nth(1)?.split('"').next()?.to_owned();
                Some((kind, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    measured.notes.push(format!(
        "ours, writes by kind: {}",
        by_kind("listacompra_operator_api_writes_total")
    ));
    measured.notes.push(format!(
        "ours, reads by kind: {}",
        by_kind("listacompra_operator_api_reads_total")
    ));
    let emptied = empty(
        ctx,
        &dynamic(
            ctx,
            "listacompra.app",
            "v1alpha1",
            "ListaCompraRelease",
            "listacomprareleases",
        ),
    )
    .await;
    drop(operator);
    emptied?;
    Ok(measured)
}

/// Argo Rollouts' controller, as [`ARGO`], bringing `n` Rollouts.
async fn argo_rollouts(
    ctx: &TestContext,
    user: &Identity,
    argo: &Path,
    kcm: u32,
    n: usize,
) -> Result<Measured> {
    let log = std::env::temp_dir().join(format!("{}-argo-rollouts.log", ctx.namespace));
    let file = std::fs::File::create(&log)?;
    let port = |l: std::net::TcpListener| l.local_addr().map(|a| a.port());
    let metrics = port(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    let healthz = port(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    let mut controller = tokio::process::Command::new(argo.join("bin/rollouts-controller"))
        .arg(format!("--kubeconfig={}", user.kubeconfig().display()))
        .arg(format!("--namespace={}", ctx.namespace))
        .args(["--namespaced", "--leader-elect=false", "--loglevel=info"])
        // Its client limits itself to 40 requests per second (burst 80) by default; ours
        // does not limit itself. Lifted, so that both are measured by their work, not by a
        // limit: with the default a thousand Rollouts wait minutes on their own client.
        .args(["--qps=100000", "--burst=100000"])
        .arg(format!("--metricsPort={metrics}"))
        .arg(format!("--healthzPort={healthz}"))
        .env("POD_NAMESPACE", &ctx.namespace)
        .stdout(std::process::Stdio::from(file.try_clone()?))
        .stderr(std::process::Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .context("starting rollouts-controller")?;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !read_log().contains("Started rollout workers") {
        ensure!(
            controller.try_wait()?.is_none() && started.elapsed() < Duration::from_secs(60),
            "rollouts-controller did not start its workers within 60 s:\n{}",
            tail(&read_log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = controller.id().context("rollouts-controller's pid")?;
    let rollouts = dynamic(ctx, "argoproj.io", "v1alpha1", "Rollout", "rollouts");
    let requests = requests_of(ctx, ARGO).await?;
    let window = Window::open(kcm, Some(pid));
    for i in 0..n {
        let name = format!("a{i:04}");
        let rollout: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": name },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": name } },
                "template": template(&name),
                "progressDeadlineSeconds": 3_600,
                "strategy": { "canary": {} }
            }
        }))?;
        rollouts.create(&PostParams::default(), &rollout).await?;
    }
    let good = settle(
        "Argo Rollouts",
        n,
        || alive(pid),
        read_log,
        || async {
            let phases: Vec<String> = rollouts
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|r| {
                    r.data["status"]["phase"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            let ended = phases
                .iter()
                .filter(|p| *p == "Healthy" || *p == "Degraded")
                .count();
            let good = phases.iter().filter(|p| *p == "Healthy").count();
            Ok((ended, good))
        },
    )
    .await?;
    let mut measured = window.close(good);
    measured.requests = Some(requests_of(ctx, ARGO).await? - requests);
    let emptied = empty(ctx, &rollouts).await;
    let _ = controller.kill().await;
    emptied?;
    Ok(measured)
}

fn print(n: usize, floor: &Measured, ours: &Measured, argo: &Measured) {
    let secs = |m: &Measured| m.took.as_secs_f64();
    let or_dash =
        |v: Option<f64>, unit: &str| v.map_or("—".to_owned(), |v| format!("{v:.1} {unit}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".to_owned(),
    };
    println!(
        "\n{n} objects, each settling one pod, one contender after the other on the same cluster\n"
    );
    println!(
        "| what | floor (Deployments) | ours (ListaCompraRelease) | Argo Rollouts {} | ours / floor | ours / Argo |",
        argo_version()
    );
    println!("|---|---|---|---|---|---|");
    let row = |what: &str, f: String, o: String, a: String, of: String, oa: String| {
        println!("| {what} | {f} | {o} | {a} | {of} | {oa} |");
    };
    row(
        "time to settle",
        format!("{:.1} s", secs(floor)),
        format!("{:.1} s", secs(ours)),
        format!("{:.1} s", secs(argo)),
        ratio(Some(secs(ours)), Some(secs(floor))),
        ratio(Some(secs(ours)), Some(secs(argo))),
    );
    row(
        "ended well",
        format!("{} rolled out", floor.good),
        format!("{} Succeeded", ours.good),
        format!("{} Healthy", argo.good),
        String::new(),
        String::new(),
    );
    row(
        "controller peak RSS",
        "—".to_owned(),
        or_dash(ours.peak_mib, "MiB"),
        or_dash(argo.peak_mib, "MiB"),
        String::new(),
        ratio(ours.peak_mib, argo.peak_mib),
    );
    row(
        "controller CPU",
        "—".to_owned(),
        or_dash(ours.cpu_s, "s"),
        or_dash(argo.cpu_s, "s"),
        String::new(),
        ratio(ours.cpu_s, argo.cpu_s),
    );
    row(
        "kube-controller-manager CPU",
        format!("{:.1} s", floor.kcm_cpu_s),
        format!("{:.1} s", ours.kcm_cpu_s),
        format!("{:.1} s", argo.kcm_cpu_s),
        ratio(Some(ours.kcm_cpu_s), Some(floor.kcm_cpu_s)),
        ratio(Some(ours.kcm_cpu_s), Some(argo.kcm_cpu_s)),
    );
    let count = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0}"));
    row(
        "controller API requests",
        "—".to_owned(),
        count(ours.requests),
        count(argo.requests),
        String::new(),
        ratio(ours.requests, argo.requests),
    );
    println!();
    for note in ours.notes.iter().chain(&argo.notes) {
        println!("{note}");
    }
}

/// The Argo Rollouts version the build script pins.
fn argo_version() -> String {
    let lib = include_str!("../../e2e/scripts/lib.sh");
    lib.lines()
        .find_map(|l| l.strip_prefix("ARGO_ROLLOUTS_VERSION=\"${ARGO_ROLLOUTS_VERSION:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .unwrap_or("?")
        .to_owned()
}
