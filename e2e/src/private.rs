//! Private RabbitMQ, PostgreSQL and S3 servers, started by the project's script with their own
//! state folder and ports, for tests that stop, restart, back up or restore them (the shared
//! ones are used by other tests at the same time).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::env::Env;
use crate::runner::free_port;
use crate::{Error, Result};

/// A RabbitMQ of this test's own.
pub type PrivateRabbit = PrivateService;

/// A server of this test's own.
#[derive(Debug)]
pub struct PrivateService {
    service: &'static str,
    state: PathBuf,
    /// The script's variables that make it this server: ports, and options such as
    /// `LC_PGBACKREST_STANZA`.
    vars: Vec<(&'static str, String)>,
    /// Its URL (`RABBITMQ_URL`, `DATABASE_URL` or `S3_ENDPOINT`).
    pub url: String,
    /// PostgreSQL only: the superuser URL of its `postgres` database.
    pub admin_url: Option<String>,
}

impl PrivateService {
    fn start_service(
        service: &'static str,
        vars: Vec<(&'static str, String)>,
        url_key: &str,
    ) -> Result<Self> {
        let state =
            std::env::temp_dir().join(format!("lc-{service}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&state).map_err(|source| Error::Io {
            action: format!("creating {}", state.display()),
            source,
        })?;
        // From here on, dropping it stops what the script started.
        let mut this = Self {
            service,
            state,
            vars,
            url: String::new(),
            admin_url: None,
        };
        this.up()?;
        let env = this.env()?;
        this.url = env.get(url_key)?.to_owned();
        this.admin_url = env.get("LC_POSTGRES_ADMIN_URL").ok().map(str::to_owned);
        Ok(this)
    }

    /// Starts a broker on free ports under a fresh state folder.
    pub fn start() -> Result<Self> {
        Self::start_service(
            "rabbitmq",
            vec![
                ("LC_AMQP_PORT", free_port()?.to_string()),
                // Its own, not the script's default of the AMQP port minus one, which nothing
                // reserved.
                ("LC_AMQP_TLS_PORT", free_port()?.to_string()),
                ("LC_RABBIT_DIST_PORT", free_port()?.to_string()),
                ("LC_EPMD_PORT", free_port()?.to_string()),
            ],
            "RABBITMQ_URL",
        )
    }

    /// Starts a PostgreSQL on a free port under a fresh state folder.
    pub fn postgres() -> Result<Self> {
        Self::start_service(
            "postgres",
            vec![("LC_PG_PORT", free_port()?.to_string())],
            "DATABASE_URL",
        )
    }

    /// Starts a PostgreSQL on a free port under a fresh state folder that archives its WAL
    /// with pgBackRest into a repository there, with the stanza `stanza` created (see
    /// `services.sh`).
    pub fn archiving_postgres(stanza: &str) -> Result<Self> {
        Self::start_service(
            "postgres",
            vec![
                ("LC_PG_PORT", free_port()?.to_string()),
                ("LC_PGBACKREST_STANZA", stanza.to_owned()),
            ],
            "DATABASE_URL",
        )
    }

    /// Starts an S3 server (s3s-fs) on a free port under a fresh state folder; its data
    /// folder survives a restart.
    pub fn s3() -> Result<Self> {
        Self::start_service(
            "s3",
            vec![("LC_S3_PORT", free_port()?.to_string())],
            "S3_ENDPOINT",
        )
    }

    /// The endpoints its script recorded (for S3: `S3_BUCKET`, `S3_ACCESS_KEY_ID`, ...).
    pub fn env(&self) -> Result<Env> {
        Env::read(&self.state.join("env"))
    }

    /// Its state folder.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// Starts it (again).
    pub fn up(&self) -> Result<()> {
        self.script(&["up", self.service]).map(|_| ())
    }

    /// Stops it (its data stays: durable queues and persistent messages survive).
    pub fn down(&self) -> Result<()> {
        self.script(&["down", self.service]).map(|_| ())
    }

    /// RabbitMQ only: runs `rabbitmqctl` with `args` against this broker (for example
    /// `close_all_connections`, which closes every client connection as a broker would).
    pub fn rabbitmqctl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["rabbitmqctl"];
        all.extend_from_slice(args);
        self.script(&all)
    }

    /// Runs `services.sh args...` for this server; its standard output.
    fn script(&self, args: &[&str]) -> Result<String> {
        let script = crate::env::repo_root().join("e2e/scripts/services.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .args(args)
            .env("LC_STATE", &self.state)
            .env("LC_ENV_FILE", self.state.join("env"))
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let out = cmd.output().map_err(|source| Error::Io {
            action: format!("running {}", script.display()),
            source,
        })?;
        if !out.status.success() {
            return Err(Error::Workload {
                message: format!("services.sh {} failed: {}", args.join(" "), out.status),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        if let Err(err) = self.down() {
            eprintln!(
                "warning: stopping the private {} failed: {err}",
                self.service
            );
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
