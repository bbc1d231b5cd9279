//! Helm, built from its Go module by `e2e/scripts/build-helm.sh` into the version-keyed
//! cache, and the operator's chart in `helm/listacompra-operator`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};

use crate::env::{repo_root, run_script};
use crate::{Error, Result};

/// The operator's chart, relative to the repository root.
pub const CHART: &str = "helm/listacompra-operator";

/// Where the script said the binary is, once built in this process.
static BINARY: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Path of the `helm` binary, building it first when missing (blocking; minutes when cold).
pub fn binary_blocking() -> Result<PathBuf> {
    let mut binary = BINARY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = binary.as_ref() {
        return Ok(path.clone());
    }
    let path = run_script("build-helm.sh", &[])?.ok_or_else(|| Error::MissingKey {
        key: "the helm binary path".to_owned(),
        path: repo_root().join("e2e/scripts/build-helm.sh"),
    })?;
    *binary = Some(path.clone());
    Ok(path)
}

/// The Kubernetes release the project pins (`KUBE_VERSION` in `e2e/scripts/lib.sh`), for
/// `helm template --kube-version` without a cluster.
pub fn pinned_kube_version() -> Result<String> {
    let path = repo_root().join("e2e/scripts/lib.sh");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::EnvFile {
        path: path.clone(),
        source,
    })?;
    // KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
    text.lines()
        .find_map(|l| l.strip_prefix("KUBE_VERSION=\"${KUBE_VERSION:-"))
        .and_then(|rest| rest.split('}').next())
        .map(str::to_owned)
        .ok_or_else(|| Error::MissingKey {
            key: "KUBE_VERSION".to_owned(),
            path,
        })
}

/// What a Helm command printed, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Output {
    /// True when it exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs Helm with its own config, cache and data folders (never the user's), optionally
/// against a cluster.
#[derive(Debug)]
pub struct Helm {
    binary: PathBuf,
    home: PathBuf,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// Helm without a cluster (lint, template), building it when missing.
    pub async fn new() -> Result<Self> {
        let binary = tokio::task::spawn_blocking(binary_blocking)
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
        let home = std::env::temp_dir().join(format!(
            "listacompra-helm-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Ok(Self {
            binary,
            home,
            kubeconfig: None,
        })
    }

    /// Helm talking to the cluster of `kubeconfig`.
    pub async fn with_kubeconfig(kubeconfig: &Path) -> Result<Self> {
        let mut helm = Self::new().await?;
        helm.kubeconfig = Some(kubeconfig.to_owned());
        Ok(helm)
    }

    /// The chart's folder.
    pub fn chart() -> PathBuf {
        repo_root().join(CHART)
    }

    /// Runs `helm <args>` from the repository root and returns what it printed.
    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .current_dir(repo_root())
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.kubeconfig {
            Some(path) => command.env("KUBECONFIG", path),
            // Without a cluster, no kubeconfig of the user's may be picked up.
            None => command.env("KUBECONFIG", self.home.join("no-cluster")),
        };
        let output = command.output().await.map_err(|source| Error::Spawn {
            script: self.binary.clone(),
            source,
        })?;
        Ok(Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs `helm <args>` and returns its standard output, or an error with its message.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.run(args).await?;
        if output.success {
            Ok(output.stdout)
        } else {
            Err(Error::Tool {
                command: format!("helm {}", args.join(" ")),
                message: format!("{}{}", output.stdout, output.stderr),
            })
        }
    }
}

impl Drop for Helm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
