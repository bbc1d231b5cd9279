//! What the benchmarks `load` and `abuse` share: starting the real release binary against a
//! fresh database on the shared services, seeding users with lists, open-loop load with
//! latency from each request's scheduled start, and the server's RSS from `/proc`.

// Each bench uses its own subset of these helpers.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::env::Component;
use e2e::services::Services;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Mutex;

/// An environment variable as a number, or `default` when unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// KiB as MiB, for the tables.
#[allow(clippy::cast_precision_loss)]
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples the RSS of `pid` every 20 ms until dropped, keeping the peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self { peak, stop, task }
    }

    /// Stops sampling; the peak in KiB.
    pub async fn finish(self, pid: u32) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak
            .load(Ordering::Relaxed)
            .max(rss_kib(pid).unwrap_or(0))
    }
}

/// Builds the i-th request of a scenario.
pub type MakeRequest = Box<dyn Fn(u64) -> reqwest::RequestBuilder>;

/// The server process; killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latencies (from scheduled start) and failed requests of an open-loop run.
#[derive(Default)]
pub struct Outcome {
    /// One per request, sorted by [`run_open_loop`].
    pub latencies: Vec<Duration>,
    /// Requests that failed or were not answered 2xx.
    pub errors: u64,
}

/// The p-th percentile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The cells `requests | throughput | p50 | p95 | p99 | max | errors` of a table row (ms).
pub fn latency_cells(outcome: &Outcome, throughput: f64) -> String {
    format!(
        "{} | {throughput:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {}",
        outcome.latencies.len(),
        ms(percentile(&outcome.latencies, 50.0)),
        ms(percentile(&outcome.latencies, 95.0)),
        ms(percentile(&outcome.latencies, 99.0)),
        ms(outcome.latencies.last().copied().unwrap_or_default()),
        outcome.errors,
    )
}

/// Milliseconds, for the tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `rps` requests a second for `seconds`, open loop (each at its scheduled time,
/// whatever the previous ones are doing); returns the throughput and the outcome with its
/// latencies sorted.
pub async fn run_open_loop(
    rps: u64,
    seconds: u64,
    make: &dyn Fn(u64) -> reqwest::RequestBuilder,
) -> Result<(f64, Outcome)> {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let total = rps * seconds;
    #[allow(clippy::cast_precision_loss)]
    let interval = Duration::from_secs_f64(1.0 / rps as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        #[allow(clippy::cast_precision_loss)]
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let req = make(i);
        let outcome = outcome.clone();
        tasks.push(tokio::spawn(async move {
            let ok = match req.send().await {
                Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                Err(_) => false,
            };
            let latency = scheduled.elapsed();
            let mut o = outcome.lock().await;
            o.latencies.push(latency);
            if !ok {
                o.errors += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut outcome = Arc::try_unwrap(outcome)
        .map_err(|_| anyhow::anyhow!("tasks still running"))?
        .into_inner();
    outcome.latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let throughput = outcome.latencies.len() as f64 / elapsed;
    Ok((throughput, outcome))
}

/// The secret the bench server signs its tokens with (a baseline verifies them with it).
pub const JWT_SECRET: &str = "bench-secret-0123456789-0123456789-abcdef";

/// The release binary serving on loopback against a fresh database of its own.
pub struct Bench {
    /// The server process.
    pub server: Server,
    /// Its process id (for `/proc`).
    pub pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its port.
    pub port: u16,
    /// The URL of its database.
    pub database_url: String,
    admin: PgConnection,
    db: String,
    _services: Services,
}

impl Bench {
    /// Starts the services, makes and migrates a fresh database, starts `serve` with
    /// `extra_env` on top of the usual variables and waits for `/health`.
    pub async fn start(extra_env: &[(&str, String)]) -> Result<Self> {
        let services =
            Services::start(&[Component::Postgres, Component::Redis, Component::RabbitMq]).await?;
        let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin_url = services.postgres_admin_url()?.to_owned();
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut admin)
            .await?;
        let (base_url, _) = services
            .database_url()?
            .rsplit_once('/')
            .context("DATABASE_URL")?;
        let database_url = format!("{base_url}/{db}");
        let bin = env!("CARGO_BIN_EXE_listacompra-api");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", services.redis_url()?.to_owned()),
            ("RABBITMQ_URL", services.rabbitmq_url()?.to_owned()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("PORT", port.to_string()),
            ("AMQP_PREFIX", format!("bench.{db}")),
            ("RUST_LOG", "warn".to_owned()),
        ];
        env.extend(extra_env.iter().cloned());
        let started = async {
            let migrate = Command::new(bin)
                .arg("migrate")
                .envs(env.clone())
                .output()?;
            ensure!(
                migrate.status.success(),
                "migrate: {}",
                String::from_utf8_lossy(&migrate.stderr)
            );
            let child = Command::new(bin)
                .arg("serve")
                .envs(env)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?;
            let server = Server(child);
            let base = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while http.get(format!("{base}/health")).send().await.is_err() {
                ensure!(
                    Instant::now() < deadline,
                    "the server did not start in 20 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok((server, base))
        }
        .await;
        match started {
            Ok((server, base)) => Ok(Self {
                pid: server.0.id(),
                server,
                base,
                port,
                database_url,
                admin,
                db,
                _services: services,
            }),
            Err(e) => {
                drop_database(&mut admin, &db).await?;
                Err(e)
            }
        }
    }

    /// Stops the server and drops its database.
    pub async fn finish(self) -> Result<()> {
        let Self {
            server,
            mut admin,
            db,
            ..
        } = self;
        drop(server);
        drop_database(&mut admin, &db).await
    }
}

async fn drop_database(admin: &mut PgConnection, db: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

/// Registers `email` and logs in; the access token.
pub async fn register_and_login(http: &reqwest::Client, base: &str, email: &str) -> Result<String> {
    let creds = json!({ "email": email, "password": "bench-password" });
    http.post(format!("{base}/v1/auth/register"))
        .json(&creds)
        .send()
        .await?
        .error_for_status()?;
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&creds)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["token"].as_str().context("token")?.to_owned())
}

/// Creates a list named `name` with `items` items; its id.
pub async fn list_with_items(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    items: usize,
) -> Result<String> {
    let list: Value = http
        .post(format!("{base}/v1/lists"))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = list["id"].as_str().context("list id")?.to_owned();
    for j in 0..items {
        http.post(format!("{base}/v1/lists/{id}/items"))
            .bearer_auth(token)
            .json(&json!({ "name": format!("item {j}"), "quantity": 1, "category": "pantry" }))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(id)
}
