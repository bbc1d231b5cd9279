//! Private RabbitMQ, PostgreSQL and S3 servers, started by the project's script with their own
//! state folder and ports, for tests that stop and restart them (the shared ones are used by
//! other tests at the same time).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

fn free_port() -> Result<u16> {
    Ok(e2e::runner::free_port()?)
}

/// A RabbitMQ of this test's own.
pub type PrivateRabbit = PrivateService;

/// A server of this test's own.
#[derive(Debug)]
pub struct PrivateService {
    service: &'static str,
    state: PathBuf,
    ports: Vec<(&'static str, u16)>,
    /// Its URL (`RABBITMQ_URL` or `DATABASE_URL`).
    pub url: String,
    /// PostgreSQL only: the superuser URL of its `postgres` database.
    pub admin_url: Option<String>,
}

impl PrivateService {
    fn script(&self, command: &str) -> Result<String> {
        let script = e2e::env::repo_root().join("e2e/scripts/services.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .args([command, self.service])
            .env("LC_STATE", &self.state)
            .env("LC_ENV_FILE", self.state.join("env"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        for (var, port) in &self.ports {
            cmd.env(var, port.to_string());
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            out.status.success(),
            "services.sh {command} {} failed: {}",
            self.service,
            out.status
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start_service(
        service: &'static str,
        ports: Vec<(&'static str, u16)>,
        url_key: &str,
    ) -> Result<Self> {
        let state =
            std::env::temp_dir().join(format!("lc-{service}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&state)?;
        let mut this = Self {
            service,
            state,
            ports,
            url: String::new(),
            admin_url: None,
        };
        this.up()?;
        let env = e2e::env::Env::read(&this.state.join("env"))?;
        this.url = env.get(url_key)?.to_owned();
        this.admin_url = env.get("LC_POSTGRES_ADMIN_URL").ok().map(str::to_owned);
        Ok(this)
    }

    /// Starts a broker on free ports under a fresh state folder.
    pub fn start() -> Result<Self> {
        Self::start_service(
            "rabbitmq",
            vec![
                ("LC_AMQP_PORT", free_port()?),
                // Its own, not the script's default of the AMQP port minus one, which nothing
                // reserved.
                ("LC_AMQP_TLS_PORT", free_port()?),
                ("LC_RABBIT_DIST_PORT", free_port()?),
                ("LC_EPMD_PORT", free_port()?),
            ],
            "RABBITMQ_URL",
        )
    }

    /// Starts a PostgreSQL on a free port under a fresh state folder.
    pub fn postgres() -> Result<Self> {
        Self::start_service(
            "postgres",
            vec![("LC_PG_PORT", free_port()?)],
            "DATABASE_URL",
        )
    }

    /// Starts an S3 server (s3s-fs) on a free port under a fresh state folder; its data
    /// folder survives a restart.
    pub fn s3() -> Result<Self> {
        Self::start_service("s3", vec![("LC_S3_PORT", free_port()?)], "S3_ENDPOINT")
    }

    /// The endpoints its script recorded (for S3: `S3_BUCKET`, `S3_ACCESS_KEY_ID`, ...).
    pub fn env(&self) -> Result<e2e::env::Env> {
        Ok(e2e::env::Env::read(&self.state.join("env"))?)
    }

    /// Starts it (again).
    pub fn up(&self) -> Result<()> {
        self.script("up").map(|_| ())
    }

    /// RabbitMQ only: runs `rabbitmqctl` with `args` against this broker (for example
    /// `close_all_connections`, which closes every client connection as a broker would).
    pub fn rabbitmqctl(&self, args: &[&str]) -> Result<String> {
        let script = e2e::env::repo_root().join("e2e/scripts/services.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg("rabbitmqctl")
            .args(args)
            .env("LC_STATE", &self.state)
            .env("LC_ENV_FILE", self.state.join("env"))
            .stdin(Stdio::null());
        for (var, port) in &self.ports {
            cmd.env(var, port.to_string());
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            out.status.success(),
            "services.sh rabbitmqctl {args:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops it (its data stays: durable queues and persistent messages survive).
    pub fn down(&self) -> Result<()> {
        self.script("down").map(|_| ())
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        if let Err(err) = self.down() {
            eprintln!(
                "warning: stopping the private {} failed: {err:#}",
                self.service
            );
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
