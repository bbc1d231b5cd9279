//! The operator as a real process: `listacompra-operator` built in this workspace, run
//! against the local cluster for one namespace, its log kept in a file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::binaries::workspace_binary;
use crate::{Error, Result};

/// A running operator. Killed when dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    env: Vec<(String, String)>,
}

impl OperatorProcess {
    /// Starts the operator with `kubeconfig`, watching `namespace`, without leader election,
    /// with its metrics on a free port of 127.0.0.1 and JSON logs in `log`.
    pub fn start(kubeconfig: &Path, namespace: &str, log: PathBuf) -> Result<Self> {
        Self::start_with_env(kubeconfig, namespace, log, Vec::new())
    }

    /// As [`OperatorProcess::start`], with more environment variables (`OTEL_*`, say).
    pub fn start_with_env(
        kubeconfig: &Path,
        namespace: &str,
        log: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        let _ = std::fs::remove_file(&log);
        let child = Self::spawn(kubeconfig, namespace, &log, &env)?;
        Ok(Self {
            child,
            log,
            kubeconfig: kubeconfig.to_owned(),
            namespace: namespace.to_owned(),
            env,
        })
    }

    /// Kills the operator with SIGKILL (no chance to clean up, as when its node dies) and
    /// starts a new one; the log goes on in the same file.
    pub async fn kill_and_restart(&mut self) -> Result<()> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.child = Self::spawn(&self.kubeconfig, &self.namespace, &self.log, &self.env)?;
        Ok(())
    }

    fn spawn(
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Child> {
        let binary = workspace_binary("listacompra-operator")?;
        let io_error = |action: String| move |source| Error::Io { action, source };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_error(format!("opening {}", log.display())))?;
        let stderr = file
            .try_clone()
            .map_err(io_error(format!("opening {}", log.display())))?;
        let child = Command::new(&binary)
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACES", namespace)
            .env("POD_NAMESPACE", namespace)
            .env("LEADER_ELECTION", "false")
            // The runner plays the release's Service on 127.0.0.1: the admin allows it.
            .env("GATE_ALLOWED_HOSTS", "127.0.0.1")
            // The story rotates the JWT key (the stack runs as the environments' values do).
            .env("WATCH_SECRETS", "true")
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,listacompra_operator=debug")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("starting {}", binary.display())))?;
        Ok(child)
    }

    /// The log written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The metrics address the operator (the latest process) announced in its "starting"
    /// log line, once it has.
    pub fn metrics_address(&self) -> Option<String> {
        self.log()
            .lines()
            .rev()
            .filter(|l| l.contains("\"msg\":\"starting\""))
            .find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                v["metrics"].as_str().map(str::to_owned)
            })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
