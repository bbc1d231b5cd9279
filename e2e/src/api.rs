//! The API server as a real process outside the cluster: `listacompra-api` built in this
//! workspace, on a database of its own on the shared PostgreSQL and on the shared Redis and
//! RabbitMQ, its log kept in a file. For tests of what the process does on the wire (traces,
//! metrics scraped by Prometheus), where an in-process server would share the test's globals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection as _;
use tokio::process::{Child, Command};

use crate::binaries::workspace_binary;
use crate::services::Services;
use crate::{Error, Result};

/// A running `listacompra-api serve`. Killed when dropped; [`ApiProcess::stop`] also drops its
/// database (a failed test leaves both for a look).
#[derive(Debug)]
pub struct ApiProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port it serves on.
    pub port: u16,
    database: String,
    log: PathBuf,
    child: Child,
}

impl ApiProcess {
    /// Creates database `database` (dropping an older one of that name), runs `migrate`, then
    /// `serve` with the shared Redis and RabbitMQ, a test JWT secret, a free port and the
    /// `extra` variables (which win); waits until `/health` answers (60 s).
    pub async fn start(
        services: &Services,
        database: &str,
        extra: &[(&str, &str)],
        log: PathBuf,
    ) -> Result<Self> {
        let db_error = |action: String| move |source| Error::Database { action, source };
        let mut admin = sqlx::PgConnection::connect(services.postgres_admin_url()?)
            .await
            .map_err(db_error("connecting as the PostgreSQL admin".to_owned()))?;
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{database}\""),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut admin)
                .await
                .map_err(db_error(statement))?;
        }
        let database_url = services.database_url_for(database)?;
        let binary = workspace_binary("listacompra-api")?;
        let port = crate::runner::free_port()?;
        let port_text = port.to_string();
        let path = std::env::var("PATH").unwrap_or_default();
        let mut env: Vec<(&str, &str)> = vec![
            ("PATH", &path),
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", services.redis_url()?),
            ("RABBITMQ_URL", services.rabbitmq_url()?),
            ("JWT_SECRET", "e2e-api-process-secret-0123456789abcdef"),
            ("PORT", &port_text),
        ];
        env.extend_from_slice(extra);
        let io_error = |action: String| move |source| Error::Io { action, source };
        let migrated = Command::new(&binary)
            .arg("migrate")
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .await
            .map_err(io_error(format!("running {} migrate", binary.display())))?;
        if !migrated.status.success() {
            return Err(Error::Check {
                message: format!(
                    "listacompra-api migrate failed: {}",
                    String::from_utf8_lossy(&migrated.stderr)
                ),
            });
        }
        let file =
            std::fs::File::create(&log).map_err(io_error(format!("creating {}", log.display())))?;
        let stderr = file
            .try_clone()
            .map_err(io_error(format!("opening {}", log.display())))?;
        let child = Command::new(&binary)
            .arg("serve")
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("starting {} serve", binary.display())))?;
        let api = Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            database: database.to_owned(),
            log,
            child,
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let healthy = http
                .get(format!("{}/health", api.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(api);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Wait {
                    what: "the API to answer /health".to_owned(),
                    message: format!("not within 60 s; log: {}", api.log.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Path of its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its JSON log lines so far.
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Kills the process and drops its database.
    pub async fn stop(mut self, services: &Services) -> Result<()> {
        let _ = self.child.kill().await;
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
        let mut admin = sqlx::PgConnection::connect(services.postgres_admin_url()?)
            .await
            .map_err(|source| Error::Database {
                action: "connecting as the PostgreSQL admin".to_owned(),
                source,
            })?;
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut admin)
            .await
            .map_err(|source| Error::Database {
                action: statement,
                source,
            })?;
        Ok(())
    }
}
