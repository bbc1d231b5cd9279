//! One container run as a local process: spawned with the pod's environment, its output in a
//! log file (as written) and in a second one in the CRI log format the kubelet keeps (which
//! kwok serves to `kubectl logs`), stopped the way the kubelet stops it (SIGTERM, then
//! SIGKILL after a grace period).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// How long the output of an ended process may still take to reach its log files.
const DRAIN: Duration = Duration::from_secs(5);

/// A running container process.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// The tasks copying stdout and stderr into the log files.
    pumps: Vec<JoinHandle<()>>,
}

/// The CRI-format log file kept beside the log file `log`.
pub fn cri_log(log: &Path) -> PathBuf {
    log.with_extension("cri.log")
}

/// The log files one process writes: as written, and in the CRI format.
#[derive(Debug)]
struct Sinks {
    raw: tokio::fs::File,
    cri: tokio::fs::File,
}

impl Process {
    /// Starts `program args` with exactly `env` (plus PATH), logging to `log` (and to
    /// [`cri_log`] of it).
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        log: &Path,
    ) -> Result<Self> {
        let io_error = |action: String| move |source| Error::Io { action, source };
        let raw = std::fs::File::create(log)
            .map_err(io_error(format!("creating log file {}", log.display())))?;
        let cri = std::fs::File::create(cri_log(log)).map_err(io_error(format!(
            "creating log file {}",
            cri_log(log).display()
        )))?;
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("starting {}", program.display())))?;
        let sinks = Arc::new(Mutex::new(Sinks {
            raw: tokio::fs::File::from_std(raw),
            cri: tokio::fs::File::from_std(cri),
        }));
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(out, "stdout", sinks.clone())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, "stderr", sinks)));
        }
        Ok(Self { child, pumps })
    }

    /// Waits until the output is in the log files (bounded: a child that left the pipes
    /// open does not hold this up).
    async fn drain(&mut self) {
        for pump in self.pumps.drain(..) {
            let _ = tokio::time::timeout(DRAIN, pump).await;
        }
    }

    /// Waits for the process to end; its exit code (128 + signal when killed).
    pub async fn wait(&mut self) -> i32 {
        let code = match self.child.wait().await {
            Ok(status) => status.code().unwrap_or(128 + 9),
            Err(_) => 128 + 9,
        };
        self.drain().await;
        code
    }

    /// SIGTERM, then SIGKILL when it has not ended within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                self.drain().await;
                return;
            }
        }
        let _ = self.child.kill().await;
        self.drain().await;
    }
}

/// Copies one output stream, line by line, into both log files; a CRI line is
/// `<RFC 3339 time> <stream> F <line>`.
async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, sinks: Arc<Mutex<Sinks>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let cri = format!(
            "{} {name} F {}\n",
            k8s_openapi::jiff::Timestamp::now(),
            text.trim_end_matches(['\n', '\r'])
        );
        let mut sinks = sinks.lock().await;
        let _ = sinks.raw.write_all(&line).await;
        let _ = sinks.cri.write_all(cri.as_bytes()).await;
        let _ = sinks.raw.flush().await;
        let _ = sinks.cri.flush().await;
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
