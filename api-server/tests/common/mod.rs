//! Shared helpers of the API server's integration tests: a fresh database per test, the
//! server started in-process on a free port, and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use e2e::env::Component;
use e2e::services::Services;
use listacompra_api::app::{self, Running};
use listacompra_api::config::{Attachments, Config, Limits, Messaging};
use listacompra_api::fault::FaultConfig;
use listacompra_api::migrate;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use uuid::Uuid;

/// A database of its own, dropped (with force) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// Creates `test_<uuid>` on the shared PostgreSQL, empty (no migrations).
    pub async fn empty(services: &Services) -> Result<Self> {
        let admin_url = services.postgres_admin_url()?.to_owned();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = services.database_url_for(&name)?;
        let pool = listacompra_api::store::pool(&url, 10, None)?;
        Ok(Self {
            name,
            url,
            admin_url,
            pool,
        })
    }

    /// Creates a database and migrates it to the newest revision.
    pub async fn migrated(services: &Services) -> Result<Self> {
        let db = Self::empty(services).await?;
        migrate::migrate_to(&db.pool, None).await?;
        Ok(db)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop also runs while a failed test unwinds, inside the test's runtime, so the
        // cleanup cannot be async: psql ends the sessions (FORCE) and drops the database.
        // It is started and not waited for: waiting would block the runtime while a server
        // of the test may be halfway through opening a connection, and DROP DATABASE waits
        // for that backend (its barrier) until its client finishes or the server's
        // authentication timeout ends it. psql outlives the test process if it must.
        let started = std::process::Command::new("psql")
            .arg(&self.admin_url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = started {
            eprintln!("warning: could not run psql to drop {}: {e}", self.name);
        }
    }
}

/// A user and a list of theirs, written straight to the database (no API call, no outbox
/// event); their ids.
pub async fn user_with_list(pool: &PgPool) -> Result<(Uuid, Uuid)> {
    let (user, list) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(user)
        .bind(format!("{user}@example.com"))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO lists (id, owner_id, name) VALUES ($1, $2, 'l')")
        .bind(list)
        .bind(user)
        .execute(pool)
        .await?;
    Ok((user, list))
}

/// A suggestion request on `list` by `user`, pending since `age` ago, written straight to the
/// database (no outbox event: nothing will serve it unless the test sends one); its id.
pub async fn pending_request(pool: &PgPool, user: Uuid, list: Uuid, age: Duration) -> Result<Uuid> {
    let request = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO suggestion_requests (id, list_id, requested_by, created_at) \
         VALUES ($1, $2, $3, now() - make_interval(secs => $4))",
    )
    .bind(request)
    .bind(list)
    .bind(user)
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(request)
}

/// The seed of a seeded test: `variable`'s value when set (a replay), else the clock; with
/// the line that replays it, printed here and to be given with every failure.
pub fn seed(variable: &str) -> Result<(u64, String)> {
    let seed = match std::env::var(variable) {
        Ok(seed) => seed.trim().parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let replay = format!("seed {seed} (replay: {variable}={seed})");
    eprintln!("{replay}");
    Ok((seed, replay))
}

/// A server (without workers) on a fresh migrated database of the shared services.
pub async fn app() -> Result<(TestApp, TestDb)> {
    let services = services().await?;
    let db = TestDb::migrated(&services).await?;
    let app = TestApp::start(config(&services, &db)?, false).await?;
    Ok((app, db))
}

/// The shared PostgreSQL, Redis and RabbitMQ.
pub async fn services() -> Result<Services> {
    Ok(Services::start(&[Component::Postgres, Component::Redis, Component::RabbitMq]).await?)
}

/// The shared PostgreSQL, Redis, RabbitMQ and S3 server.
pub async fn services_with_s3() -> Result<Services> {
    Ok(Services::start(&[
        Component::Postgres,
        Component::Redis,
        Component::RabbitMq,
        Component::S3,
    ])
    .await?)
}

/// The S3 configuration of the endpoints in `env` (the shared server's or a private one's).
pub fn s3_config(env: &e2e::env::Env) -> Result<listacompra_api::objects::S3Config> {
    Ok(listacompra_api::objects::S3Config {
        bucket: env.get("S3_BUCKET")?.to_owned(),
        endpoint: env.get("S3_ENDPOINT")?.to_owned(),
        public_endpoint: env.get("S3_ENDPOINT")?.to_owned(),
        region: env.get("S3_REGION")?.to_owned(),
        path_style: true,
        access_key_id: env.get("S3_ACCESS_KEY_ID")?.to_owned(),
        secret_access_key: env.get("S3_SECRET_ACCESS_KEY")?.to_owned(),
    })
}

/// A configuration for the shared services and `db`, with a broker prefix of its own.
pub fn config(services: &Services, db: &TestDb) -> Result<Config> {
    config_with(services, &db.url)
}

/// A configuration for the shared Redis and RabbitMQ and the database at `database_url`.
pub fn config_with(services: &Services, database_url: &str) -> Result<Config> {
    Ok(Config {
        database_url: database_url.to_owned(),
        redis_url: services.redis_url()?.to_owned(),
        rabbitmq_url: services.rabbitmq_url()?.to_owned(),
        redis_ca: None,
        rabbitmq_ca: None,
        jwt_secret: "test-secret-0123456789-0123456789-abcdef".to_owned(),
        jwt_secret_previous: None,
        jwt_ttl: Duration::from_secs(600),
        pplx_api_key: None,
        pplx_base_url: "http://127.0.0.1:9".to_owned(),
        pplx_model: "sonar".to_owned(),
        pplx_timeout: Duration::from_secs(2),
        healthcheck_token: Some("health-token".to_owned()),
        ready_cache_ttl: listacompra_api::health::DEFAULT_CACHE_TTL,
        port: 0,
        app_version: "9.9.9-test".to_owned(),
        run_worker: false,
        ai_cache_ttl: Duration::from_secs(60),
        database_max_connections: 10,
        database_min_connections: 2,
        amqp_prefix: format!("test.{}", Uuid::new_v4().simple()),
        fault: FaultConfig::default(),
        limits: Limits::default(),
        messaging: Messaging::default(),
        attachments: Attachments::default(),
    })
}

/// A server running in this process.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub running: Option<Running>,
}

impl TestApp {
    /// Starts the server on a free loopback port; `workers` also starts relay and AI worker.
    pub async fn start(config: Config, workers: bool) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let running = app::start(&config, listener, workers).await?;
        let addr = running.addr;
        Ok(Self {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            config,
            running: Some(running),
        })
    }

    /// Waits, as a kubelet's readiness probe does, until `/ready` answers 200 (at most 60 s).
    /// The first probes fill the database pool, which on a busy machine takes longer than one
    /// probe's 2 s check: under `make test-stress` a first `/ready` answered 503.
    pub async fn until_ready(&self) -> Result<()> {
        let url = format!("{}/ready", self.base);
        eventually("/ready to answer 200", Duration::from_secs(60), || {
            let req = self.http.get(&url);
            async move { Ok((req.send().await?.status() == StatusCode::OK).then_some(())) }
        })
        .await
    }

    /// Sends a request; returns status and JSON body (`Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Sends raw bytes as the body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &'static str,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    /// Creates a list named `name` as the holder of `token`; returns its id.
    pub async fn create_list(&self, token: &str, name: &str) -> Result<String> {
        let (status, list) = self
            .call(
                Method::POST,
                "/v1/lists",
                Some(token),
                Some(json!({ "name": name })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "create list: {status} {list}"
        );
        Ok(list["id"].as_str().context("list id")?.to_owned())
    }

    /// Registers a fresh user and logs in; returns (user id, token).
    pub async fn user(&self) -> Result<(String, String, String)> {
        let email = format!("u{}@example.com", Uuid::new_v4().simple());
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({ "email": email, "password": "correct horse" })),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "register: {status} {body}");
        let body = self.login_body(&email).await?;
        let token = body["token"].as_str().context("no token")?.to_owned();
        let id = body["user_id"].as_str().context("no user id")?.to_owned();
        Ok((id, email, token))
    }

    /// Logs `email` in with the password [`user`](Self::user) registers; returns a new token.
    pub async fn login(&self, email: &str) -> Result<String> {
        let body = self.login_body(email).await?;
        Ok(body["token"].as_str().context("no token")?.to_owned())
    }

    async fn login_body(&self, email: &str) -> Result<Value> {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": "correct horse" })),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "login: {status} {body}");
        Ok(body)
    }

    /// Stops the server (draining).
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            let _ = r.switch().send(true);
        }
    }
}

/// Sends a request; returns status and JSON body (`Null` when empty or not JSON).
async fn send(req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    let res = req.send().await?;
    let status = res.status();
    let text = res.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    e2e::cluster::poll(what, timeout, Duration::from_millis(100), check).await
}
