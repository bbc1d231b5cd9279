//! Test support for the operator's end-to-end tests: the operator as a real process, a
//! controllable HTTP endpoint standing in for the API pods (kwok pods run no containers),
//! and helpers to build and wait on releases.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::cluster::{TestContext, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::ListParams;
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// The operator binary running against the test cluster, watching the test namespace.
/// Killed when dropped; its log is kept in a file and returned by [`Operator::log`].
pub struct Operator {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Operator {
    /// Starts `listacompra-operator` for the test's namespace, without leader election.
    pub fn start(ctx: &TestContext) -> Result<Self> {
        Self::start_with(ctx, &[("LEADER_ELECTION", "false")])
    }

    /// Starts it with extra environment variables.
    pub fn start_with(ctx: &TestContext, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_binary(
            ctx,
            Path::new(env!("CARGO_BIN_EXE_listacompra-operator")),
            env,
        )
    }

    /// Starts `binary` (another build of the operator) with extra environment variables.
    pub fn start_binary(ctx: &TestContext, binary: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "{}-operator-{}.log",
            ctx.namespace,
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .env("KUBECONFIG", ctx.cluster.kubeconfig())
            .env("WATCH_NAMESPACES", &ctx.namespace)
            .env("POD_NAMESPACE", &ctx.namespace)
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,listacompra_operator=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child, log })
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of its /metrics, /healthz and /readyz (from its start-up log line).
    pub fn metrics_address(&self) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("\"msg\":\"starting\""))?;
        let value: Value = serde_json::from_str(line).ok()?;
        value["metrics"].as_str().map(str::to_owned)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (as the kubelet does when the pod is deleted) and waits for the exit.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(exit) => Ok(exit?),
            Err(_) => anyhow::bail!(
                "the operator did not exit within 30 s of SIGTERM; its log:\n{}",
                self.log()
            ),
        }
    }

    /// Kills the process (as a crash would).
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A real HTTP server the gates talk to: `/health` and `/ready` answer with a status the
/// test sets, `/metrics` serves a body the test sets (scraped by the real Prometheus).
#[derive(Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// `127.0.0.1:<port>`.
    pub address: String,
    health: Arc<AtomicU16>,
    metrics: Arc<Mutex<String>>,
}

impl Endpoint {
    /// Starts the server; health answers 200 until told otherwise.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let health = Arc::new(AtomicU16::new(200));
        let metrics = Arc::new(Mutex::new(String::new()));
        let (h, m) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (h, m) = (h.clone(), m.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, body) = match path.as_str() {
                        "/metrics" => (200, m.lock().await.clone()),
                        "/health" | "/ready" => {
                            let s = h.load(Ordering::Relaxed);
                            (
                                s,
                                if s == 200 {
                                    "ok".to_owned()
                                } else {
                                    "unavailable".to_owned()
                                },
                            )
                        }
                        _ => (404, "not found".to_owned()),
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{address}"),
            address,
            health,
            metrics,
        })
    }

    /// Makes `/health` and `/ready` answer `status`.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::Relaxed);
    }

    /// Sets the `/metrics` body (Prometheus text format).
    pub async fn set_metrics(&self, body: &str) {
        *self.metrics.lock().await = body.to_owned();
    }
}

/// A release named `lc` of `version` needing schema `schema`, whose health gate checks
/// `health_url` (one passing check suffices, every second).
pub fn release(version: &str, schema: i64, health_url: &str) -> Value {
    json!({
        "apiVersion": "listacompra.app/v1alpha1",
        "kind": "ListaCompraRelease",
        "metadata": { "name": "lc" },
        "spec": {
            "version": version,
            "image": { "repository": "registry.example/listacompra/api" },
            "replicas": 2,
            "env": {
                "databaseUrl": { "name": "db", "key": "url" },
                "redisUrl": { "name": "redis", "key": "url" },
                "rabbitmqUrl": { "name": "rabbitmq", "key": "url" },
                "jwtSecret": { "name": "jwt", "key": "secret" }
            },
            "migrations": { "schemaVersion": schema, "backoffLimit": 0 },
            "health": {
                "baseUrl": health_url,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "successThreshold": 2,
                "failureThreshold": 2
            },
            "progressDeadlineSeconds": 120
        }
    })
}

/// The Secrets (name, key) that [`release`] names, which a platform team creates first.
pub const RELEASE_SECRETS: [(&str, &str); 4] = [
    ("db", "url"),
    ("redis", "url"),
    ("rabbitmq", "url"),
    ("jwt", "secret"),
];

/// Creates (or leaves) the Secret `name` with one `key` in the test namespace.
pub async fn create_secret(ctx: &TestContext, name: &str, key: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "stringData": { key: format!("value of {name}") }
    }))?;
    match ctx
        .api::<Secret>()
        .create(&kube::api::PostParams::default(), &secret)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the Secrets of [`RELEASE_SECRETS`] (as a platform team does before releasing),
/// then creates or replaces the release `lc` with `manifest` (see [`apply_release`]).
pub async fn apply(ctx: &TestContext, manifest: &Value) -> Result<()> {
    for (name, key) in RELEASE_SECRETS {
        create_secret(ctx, name, key).await?;
    }
    apply_release(ctx, manifest).await
}

/// Creates or replaces the release `lc` with `manifest` (server-side apply, as GitOps does).
pub async fn apply_release(ctx: &TestContext, manifest: &Value) -> Result<()> {
    let api: Api<ListaCompraRelease> = ctx.api();
    api.patch(
        "lc",
        &kube::api::PatchParams::apply("e2e-gitops").force(),
        &kube::api::Patch::Apply(manifest),
    )
    .await?;
    Ok(())
}

/// Waits until the release of `version` reaches `phase`.
pub async fn wait_phase(
    ctx: &TestContext,
    version: &str,
    phase: Phase,
    timeout: Duration,
) -> Result<ListaCompraRelease> {
    let api: Api<ListaCompraRelease> = ctx.api();
    let result = eventually(
        &format!("the release of {version} to reach {phase:?}"),
        timeout,
        || {
            let api = api.clone();
            async move {
                let release = api.get("lc").await.ok()?;
                let status = release.status.as_ref()?;
                (status.phase == Some(phase) && status.current_version.as_deref() == Some(version))
                    .then_some(release)
            }
        },
    )
    .await;
    match result {
        Ok(release) => Ok(release),
        Err(e) => {
            let now = api.get("lc").await.ok().and_then(|r| r.status);
            anyhow::bail!("{e}; status now: {now:#?}")
        }
    }
}

/// The image of the API Deployment's container.
pub async fn deployed_image(ctx: &TestContext) -> Result<String> {
    image_of(ctx, "lc-api").await
}

/// The image of Deployment `name` (`lc-worker`: the AI worker's).
pub async fn image_of(ctx: &TestContext, name: &str) -> Result<String> {
    let d: Deployment = ctx.api::<Deployment>().get(name).await?;
    d.spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.image.clone()))
        .context("no image in the Deployment")
}

/// How long a release of the support's manifests may take to reach a phase.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Installs the CRD, starts the operator and an endpoint, and releases 1.0.0 (schema 1).
pub async fn stable_1_0_0(ctx: &TestContext) -> Result<(Operator, Endpoint)> {
    stable_1_0_0_with(ctx, &[("LEADER_ELECTION", "false")]).await
}

/// As [`stable_1_0_0`], the operator started with `env`.
pub async fn stable_1_0_0_with(
    ctx: &TestContext,
    env: &[(&str, &str)],
) -> Result<(Operator, Endpoint)> {
    e2e::crd::install_crds(&ctx.client).await?;
    let operator = Operator::start_with(ctx, env)?;
    let endpoint = Endpoint::start().await?;
    apply(ctx, &release("1.0.0", 1, &endpoint.url)).await?;
    let released = wait_phase(ctx, "1.0.0", Phase::Succeeded, RELEASE_TIMEOUT).await;
    if released.is_err() {
        eprintln!("operator log:\n{}", operator.log());
    }
    released?;
    Ok((operator, endpoint))
}

/// A KPI analysis of `p95-latency-ms` (at most 350) from the test metric
/// `lc_e2e_p95_latency_ms` of the namespace and version, every 2 s, 8 measurements.
pub fn latency_analysis(prometheus: &str) -> serde_json::Value {
    json!({
        "prometheus": { "address": prometheus, "timeoutSeconds": 2 },
        "initialDelaySeconds": 0,
        "intervalSeconds": 2,
        "measurements": 8,
        "failureLimit": 0,
        "inconclusiveLimit": 6,
        "kpis": [{
            "name": "p95-latency-ms",
            "query": "max(lc_e2e_p95_latency_ms{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
            "max": 350,
            "onNoData": "Inconclusive"
        }]
    })
}

/// Names of the Jobs of the release with `listacompra.app/job=<purpose>`.
pub async fn jobs(ctx: &TestContext, purpose: &str) -> Result<Vec<Job>> {
    let list = ctx
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("listacompra.app/job={purpose}")))
        .await?;
    Ok(list.items)
}

/// Reasons of the Events recorded for the release, oldest first.
pub async fn event_reasons(ctx: &TestContext) -> Result<Vec<String>> {
    let list = ctx
        .api::<Event>()
        .list(&ListParams::default().fields("involvedObject.name=lc"))
        .await?;
    let mut events = list.items;
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(events.into_iter().filter_map(|e| e.reason).collect())
}

/// The condition `type_` of a release as (status, reason, message).
pub fn condition(release: &ListaCompraRelease, type_: &str) -> (String, String, String) {
    release
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Registers `endpoint` as a scrape target of the real Prometheus, labelled with the test
/// namespace as Kubernetes service discovery would. Returns the target file to remove.
pub fn scrape(
    services: &e2e::services::Services,
    ctx: &TestContext,
    endpoint: &Endpoint,
) -> Result<PathBuf> {
    let target = services
        .prometheus_targets_dir()?
        .join(format!("{}.json", ctx.namespace));
    std::fs::write(
        &target,
        json!([{ "targets": [endpoint.address], "labels": { "namespace": ctx.namespace } }])
            .to_string(),
    )?;
    Ok(target)
}

/// Waits until Events with every one of `reasons` were recorded for the release (the
/// operator publishes them right after it writes the status, so they may trail it).
pub async fn expect_events(ctx: &TestContext, reasons: &[&str]) -> Result<Vec<String>> {
    let found = eventually("the release's Events", Duration::from_secs(20), || async {
        let events = event_reasons(ctx).await.ok()?;
        reasons
            .iter()
            .all(|r| events.iter().any(|e| e == r))
            .then_some(events)
    })
    .await;
    match found {
        Ok(events) => Ok(events),
        Err(e) => anyhow::bail!(
            "{e}: wanted {reasons:?}, recorded {:?}",
            event_reasons(ctx).await?
        ),
    }
}

/// `kubectl wait --for=condition=Ready` on release `lc`, as Helm/Flux-style tooling waits.
pub async fn kubectl_wait_ready(ctx: &TestContext, timeout: Duration) -> Result<()> {
    let output = tokio::process::Command::new(ctx.cluster.bin_dir()?.join("kubectl"))
        .arg("--kubeconfig")
        .arg(ctx.cluster.kubeconfig())
        .args([
            "wait",
            "--for=condition=Ready",
            "listacomprarelease/lc",
            "-n",
        ])
        .arg(&ctx.namespace)
        .arg(format!("--timeout={}s", timeout.as_secs()))
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "kubectl wait --for=condition=Ready (timeout {timeout:?}) failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Waits until the object `name` of kind `K` is gone from the test namespace.
pub async fn eventually_absent<K>(ctx: &TestContext, name: &str) -> Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = ctx.api();
    eventually(
        &format!("{} {name} to be gone", K::kind(&Default::default())),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))
}
