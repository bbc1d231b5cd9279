//! One container run as a local process: spawned with the pod's environment, its output in a
//! log file, stopped the way the kubelet stops it (SIGTERM, then SIGKILL after a grace period).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{Error, Result};

/// A running container process.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `program args` with exactly `env` (plus PATH), logging to `log`.
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        log: &Path,
    ) -> Result<Self> {
        let io_error = |action: String| move |source| Error::Io { action, source };
        let file = std::fs::File::create(log)
            .map_err(io_error(format!("creating log file {}", log.display())))?;
        let stderr = file
            .try_clone()
            .map_err(io_error(format!("opening log file {}", log.display())))?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("starting {}", program.display())))?;
        Ok(Self { child })
    }

    /// Waits for the process to end; its exit code (128 + signal when killed).
    pub async fn wait(&mut self) -> i32 {
        match self.child.wait().await {
            Ok(status) => status.code().unwrap_or(128 + 9),
            Err(_) => 128 + 9,
        }
    }

    /// SIGTERM, then SIGKILL when it has not ended within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not reuse it at once).
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            action: "finding a free port".to_owned(),
            source,
        })
}
