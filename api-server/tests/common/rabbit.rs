//! A private RabbitMQ, started by the project's script with its own state folder and ports,
//! for tests that stop and restart the broker (the shared one is used by other tests).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A RabbitMQ of this test's own.
#[derive(Debug)]
pub struct PrivateRabbit {
    state: PathBuf,
    ports: [(&'static str, u16); 3],
    /// Its `RABBITMQ_URL`.
    pub url: String,
}

impl PrivateRabbit {
    fn script(&self, command: &str) -> Result<String> {
        let script = e2e::env::repo_root().join("e2e/scripts/services.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .args([command, "rabbitmq"])
            .env("LC_STATE", &self.state)
            .env("LC_ENV_FILE", self.state.join("env"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        for (var, port) in self.ports {
            cmd.env(var, port.to_string());
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            out.status.success(),
            "services.sh {command} rabbitmq failed: {}",
            out.status
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a broker on free ports under a fresh state folder.
    pub fn start() -> Result<Self> {
        let state =
            std::env::temp_dir().join(format!("lc-rabbit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&state)?;
        let mut rabbit = Self {
            state,
            ports: [
                ("LC_AMQP_PORT", free_port()?),
                ("LC_RABBIT_DIST_PORT", free_port()?),
                ("LC_EPMD_PORT", free_port()?),
            ],
            url: String::new(),
        };
        rabbit.up()?;
        let env = e2e::env::Env::read(&rabbit.state.join("env"))?;
        rabbit.url = env.get("RABBITMQ_URL")?.to_owned();
        Ok(rabbit)
    }

    /// Starts it (again).
    pub fn up(&self) -> Result<()> {
        self.script("up").map(|_| ())
    }

    /// Stops it (its data stays: durable queues and persistent messages survive).
    pub fn down(&self) -> Result<()> {
        self.script("down").map(|_| ())
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if let Err(err) = self.down() {
            eprintln!("warning: stopping the private RabbitMQ failed: {err:#}");
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
