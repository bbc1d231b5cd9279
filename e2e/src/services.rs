//! The real backing services: PostgreSQL, Redis, RabbitMQ, Alertmanager, Prometheus, S3 and
//! Jaeger.

use std::path::PathBuf;

use crate::env::{Component, Env, ensure};
use crate::{Error, Result};

/// Endpoints of the services a test asked for.
#[derive(Debug, Clone)]
pub struct Services {
    env: Env,
}

impl Services {
    /// Starts the given services when they are not running, and returns their endpoints.
    pub async fn start(components: &[Component]) -> Result<Self> {
        Ok(Self {
            env: ensure(components).await?,
        })
    }

    /// `DATABASE_URL` of the `listacompra` database.
    pub fn database_url(&self) -> Result<&str> {
        self.env.get("DATABASE_URL")
    }

    /// `DATABASE_URL` with the database `name` instead (a test's or a namespace's own).
    pub fn database_url_for(&self, name: &str) -> Result<String> {
        with_database(self.database_url()?, name)
    }

    /// A superuser URL of the `postgres` maintenance database, for creating test databases.
    pub fn postgres_admin_url(&self) -> Result<&str> {
        self.env.get("LC_POSTGRES_ADMIN_URL")
    }

    /// `REDIS_URL`.
    pub fn redis_url(&self) -> Result<&str> {
        self.env.get("REDIS_URL")
    }

    /// `RABBITMQ_URL` (AMQP 0-9-1).
    pub fn rabbitmq_url(&self) -> Result<&str> {
        self.env.get("RABBITMQ_URL")
    }

    /// `rediss://` URL of the same Redis on its TLS port (`LC_REDIS_TLS_URL`).
    pub fn redis_tls_url(&self) -> Result<&str> {
        self.env.get("LC_REDIS_TLS_URL")
    }

    /// `amqps://` URL of the same RabbitMQ on its TLS port (`LC_AMQP_TLS_URL`).
    pub fn rabbitmq_tls_url(&self) -> Result<&str> {
        self.env.get("LC_AMQP_TLS_URL")
    }

    /// The test CA that signed the TLS listeners' certificate (`LC_TLS_CA_FILE`).
    pub fn tls_ca_file(&self) -> Result<&str> {
        self.env.get("LC_TLS_CA_FILE")
    }

    /// A test CA that signed nothing the services present (`LC_TLS_OTHER_CA_FILE`).
    pub fn tls_other_ca_file(&self) -> Result<&str> {
        self.env.get("LC_TLS_OTHER_CA_FILE")
    }

    /// Base URL of the Prometheus HTTP API.
    pub fn prometheus_url(&self) -> Result<&str> {
        self.env.get("PROMETHEUS_URL")
    }

    /// The folder whose `*.json` files (Prometheus `file_sd` format) list scrape targets.
    pub fn prometheus_targets_dir(&self) -> Result<PathBuf> {
        self.env.get("LC_PROMETHEUS_TARGETS_DIR").map(PathBuf::from)
    }

    /// The folder whose `*.yml` rule files Prometheus loads (after a reload).
    pub fn prometheus_rules_dir(&self) -> Result<PathBuf> {
        self.env.get("LC_PROMETHEUS_RULES_DIR").map(PathBuf::from)
    }

    /// Base URL of the Alertmanager HTTP API (`LC_ALERTMANAGER_URL`).
    pub fn alertmanager_url(&self) -> Result<&str> {
        self.env.get("LC_ALERTMANAGER_URL")
    }

    /// The file Alertmanager reads its Slack webhook URL from (`LC_SLACK_WEBHOOK_URL_FILE`).
    pub fn slack_webhook_url_file(&self) -> Result<&str> {
        self.env.get("LC_SLACK_WEBHOOK_URL_FILE")
    }

    /// Jaeger's OTLP/HTTP endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT` (`LC_OTLP_ENDPOINT`).
    pub fn otlp_endpoint(&self) -> Result<&str> {
        self.env.get("LC_OTLP_ENDPOINT")
    }

    /// Base URL of Jaeger's UI and query API (`LC_JAEGER_QUERY_URL`).
    pub fn jaeger_query_url(&self) -> Result<&str> {
        self.env.get("LC_JAEGER_QUERY_URL")
    }

    /// Every endpoint the scripts recorded (for the `S3_*` variables, which the API reads
    /// as they are).
    pub fn env(&self) -> &Env {
        &self.env
    }
}

/// `url` (a PostgreSQL URL) naming the database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> Result<String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| Error::Workload {
        message: format!("{url:?} is not a PostgreSQL URL: {e}"),
    })?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}
