//! The shared local cluster, a client for it, and a fresh namespace per test.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};

use crate::env::{Component, Env, ensure};
use crate::{Error, Result};

/// Label put on every namespace the harness creates.
pub const TEST_NAMESPACE_LABEL: &str = "listacompra.app/e2e";

/// The running local cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    env: Env,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts the cluster when it is not running (building it on first use) and returns it.
    pub async fn start() -> Result<Self> {
        let env = ensure(&[Component::Cluster]).await?;
        let kubeconfig = PathBuf::from(env.get("KUBECONFIG")?);
        Ok(Self { env, kubeconfig })
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The pinned Kubernetes release the cluster was built from, e.g. `v1.36.3`.
    pub fn expected_version(&self) -> Result<&str> {
        self.env.get("LC_KUBE_VERSION")
    }

    /// Folder of the cluster's own binaries (kubectl among them).
    pub fn bin_dir(&self) -> Result<PathBuf> {
        self.env.get("LC_BIN").map(PathBuf::from)
    }

    /// A new client. Make one per test: a client is tied to the runtime that made it.
    pub async fn client(&self) -> Result<Client> {
        Self::client_from(&self.kubeconfig).await
    }

    /// A new client from the kubeconfig at `path` (e.g. one for a ServiceAccount).
    pub async fn client_from(path: &Path) -> Result<Client> {
        let kubeconfig_error = |source| Error::Kubeconfig {
            path: path.to_owned(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)?;
        Client::try_from(config).map_err(|source| Error::Kube {
            action: "building a client".to_owned(),
            source,
        })
    }

    /// Writes to `path` a kubeconfig that authenticates as ServiceAccount `namespace/name`
    /// with a bound token from the TokenRequest API (valid `seconds`), for the same server
    /// and CA as the admin kubeconfig. The file is readable by its owner only.
    pub async fn service_account_kubeconfig(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        seconds: i64,
        path: &Path,
    ) -> Result<()> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(seconds),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let minted = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| Error::Kube {
                action: format!("requesting a token for ServiceAccount {namespace}/{name}"),
                source,
            })?;
        let token = minted.status.map(|s| s.token).unwrap_or_default();
        let user = format!("system:serviceaccount:{namespace}:{name}");
        self.write_user_kubeconfig(
            &user,
            serde_json::json!({ "token": token }),
            Some(namespace),
            path,
        )
    }

    /// The admin kubeconfig's cluster entry (of its current context): server and CA.
    pub fn admin_cluster(&self) -> Result<kube::config::NamedCluster> {
        let admin =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|source| Error::Kubeconfig {
                path: self.kubeconfig.clone(),
                source,
            })?;
        let context = admin
            .current_context
            .as_deref()
            .and_then(|current| admin.contexts.iter().find(|c| c.name == current))
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .unwrap_or_default();
        admin
            .clusters
            .iter()
            .find(|c| c.name == context)
            .or_else(|| admin.clusters.first())
            .cloned()
            .ok_or_else(|| Error::MissingKey {
                key: "clusters".to_owned(),
                path: self.kubeconfig.clone(),
            })
    }

    /// Writes to `path` (readable by its owner only) a kubeconfig for the admin's cluster
    /// that authenticates as `user` with `credentials` (a kubeconfig `user` entry: a token,
    /// or client certificate data), in `namespace` when given.
    pub fn write_user_kubeconfig(
        &self,
        user: &str,
        credentials: serde_json::Value,
        namespace: Option<&str>,
        path: &Path,
    ) -> Result<()> {
        let cluster = self.admin_cluster()?;
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{ "name": user, "user": credentials }],
            "contexts": [{
                "name": user,
                "context": { "cluster": cluster.name, "user": user, "namespace": namespace }
            }],
            "current-context": user,
        });
        let text = serde_yaml_ng::to_string(&config).map_err(|e| Error::Manifest {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let write_error = |source| Error::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)
    }

    /// The process id of the component `name` (`kube-controller-manager`, `kwok-controller`,
    /// ...), from kwokctl's pid file beside the components' logs.
    pub fn component_pid(&self, name: &str) -> Result<u32> {
        let logs = PathBuf::from(self.env.get("LC_CLUSTER_LOGS")?);
        let file = logs.with_file_name("pids").join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
            action: format!("reading {}", file.display()),
            source,
        })?;
        text.trim().parse().map_err(|_| Error::Workload {
            message: format!("{} holds no process id: {text:?}", file.display()),
        })
    }

    /// The last lines of every component's log (etcd, kube-apiserver, ..., kwok-controller).
    pub fn component_logs(&self, lines: usize) -> String {
        let Ok(dir) = self.env.get("LC_CLUSTER_LOGS") else {
            return String::from("(no component log folder recorded)\n");
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return format!("(cannot read {dir})\n");
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        let mut out = String::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!("----- {} (last {lines} lines)\n", path.display()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// What a test body gets: a client, its own namespace, and the cluster.
#[derive(Clone)]
pub struct TestContext {
    /// Client with admin rights.
    pub client: Client,
    /// The namespace created for this test; deleted when the test ends.
    pub namespace: String,
    /// The cluster.
    pub cluster: Cluster,
}

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestContext")
            .field("namespace", &self.namespace)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl TestContext {
    /// An API for a namespaced kind in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// Runs `body` in a fresh namespace of the shared cluster, then deletes the namespace.
///
/// When the body fails or panics, the component logs are printed (the test harness shows
/// them with the failure) and the test panics with the body's error.
pub async fn with_namespace<F, Fut, E>(name: &str, body: F)
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let cluster = Cluster::start()
        .await
        .unwrap_or_else(|e| panic!("the local cluster is not available: {e}"));
    let client = cluster
        .client()
        .await
        .unwrap_or_else(|e| panic!("no client for the local cluster: {e}"));
    let namespace = create_namespace(&client, name)
        .await
        .unwrap_or_else(|e| panic!("could not create a test namespace: {e}"));

    let ctx = TestContext {
        client: client.clone(),
        namespace: namespace.clone(),
        cluster: cluster.clone(),
    };
    // Spawned, so that a panic in the body comes back here as a value and cleanup runs.
    let outcome = tokio::spawn(body(ctx)).await;

    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        eprintln!("{}", cluster.component_logs(40));
    }
    let deleted = Api::<Namespace>::all(client)
        .delete(&namespace, &DeleteParams::background())
        .await;
    if let Err(e) = deleted {
        eprintln!("warning: could not delete test namespace {namespace}: {e}");
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("test in namespace {namespace} failed: {e}"),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("test in namespace {namespace} was cancelled: {join}"),
    }
}

async fn create_namespace(client: &Client, name: &str) -> Result<String> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let namespace = format!("e2e-{}-{}", prefix.trim_matches('-'), &suffix[..8]);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|source| Error::Kube {
            action: format!("creating namespace {namespace}"),
            source,
        })?;
    Ok(namespace)
}

/// Polls the fallible `check` every `every` until it returns `Some`: an error of `check` ends
/// the wait with that error, and after `timeout` it fails with [`Error::Wait`] naming `what`.
pub async fn poll<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<Error>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Wait {
                what: what.to_owned(),
                message: format!("timed out after {timeout:?}"),
            }
            .into());
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
