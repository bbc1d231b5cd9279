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
    /// Whether it leads a process group of its own.
    own_group: bool,
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
    /// Starts `program args` with exactly `env` (plus PATH), as `user` (uid, gid) when given,
    /// logging to `log` (and to [`cri_log`] of it). With `own_group`, in a process group of its
    /// own, which [`Self::stop`]'s SIGKILL ends whole (a database's backends), as a
    /// container's cgroup would be; the others stay in the runner's group, so that a Ctrl-C
    /// of the test run reaches them too.
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        user: Option<(u32, u32)>,
        log: &Path,
        own_group: bool,
    ) -> Result<Self> {
        let io_error = |action: String| move |source| Error::Io { action, source };
        let raw = std::fs::File::create(log)
            .map_err(io_error(format!("creating log file {}", log.display())))?;
        let cri = std::fs::File::create(cri_log(log)).map_err(io_error(format!(
            "creating log file {}",
            cri_log(log).display()
        )))?;
        let mut command = Command::new(program);
        if own_group {
            command.process_group(0);
        }
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        let mut child = command
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
        Ok(Self {
            child,
            pumps,
            own_group,
        })
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

    /// `signal` (a name such as `SIGTERM`) to the process, then SIGKILL (to its process group
    /// when it has one of its own) when it has not ended within `grace`.
    pub async fn stop(mut self, signal: &str, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let name = signal.strip_prefix("SIG").unwrap_or(signal);
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                self.drain().await;
                return;
            }
            if self.own_group {
                // Its group's id is its own.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
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

/// The lowest port [`free_port`] hands out.
const FREE_PORTS_FROM: u16 = 20_000;

/// A free TCP port on 127.0.0.1 for a server that binds it later (a process a test starts).
///
/// Drawn at random below the kernel's ephemeral range (`ip_local_port_range`), never the
/// same one twice in a process, and checked free by binding it. A port from the ephemeral
/// range (what binding port 0 gives) is also what the kernel hands to outgoing connections,
/// and one of them can take it between the pick and the server's bind: seen under load as
/// a private RabbitMQ whose TLS listener never came up.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let high = ephemeral_low().min(32_768);
    let span = u128::from(high.saturating_sub(FREE_PORTS_FROM).max(1));
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let draw = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).unwrap_or(0);
        let port = FREE_PORTS_FROM + draw;
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(Error::Workload {
        message: format!("no free port between {FREE_PORTS_FROM} and {high} after 1000 tries"),
    })
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn free_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        for port in &ports {
            assert!(
                *port < low,
                "port {port} is in the ephemeral range (from {low})"
            );
        }
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }
}
