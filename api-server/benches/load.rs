//! Load benchmark (a command that prints a table, not a timed test):
//!
//! ```sh
//! cargo bench -p listacompra-api --bench load            # 1000 req/s for 10 s per scenario
//! BENCH_RPS=2000 BENCH_SECONDS=20 cargo bench -p listacompra-api --bench load
//! ```
//!
//! Starts the real binary (release build) against a fresh database on the shared
//! PostgreSQL, Redis and RabbitMQ, then drives it open-loop at a fixed rate from this
//! process (latency is measured from each request's scheduled start, so a stalled server
//! cannot hide queueing) for two scenarios: reading a list of 20 items, and adding an item.
//! Prints throughput, p50/p95/p99/max latency, errors and the server's peak RSS.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::env::Component;
use e2e::services::Services;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Mutex;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Builds the i-th request of a scenario.
type MakeRequest = Box<dyn Fn(u64) -> reqwest::RequestBuilder>;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
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

async fn run_scenario(
    rps: u64,
    seconds: u64,
    pid: u32,
    make: &dyn Fn(u64) -> reqwest::RequestBuilder,
) -> Result<(f64, Outcome, u64)> {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let total = rps * seconds;
    let interval = Duration::from_secs_f64(1.0 / rps as f64);
    let start = Instant::now();
    let mut peak_rss = rss_kib(pid).unwrap_or(0);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        if i % (rps / 2).max(1) == 0 {
            peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
        }
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
    peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
    let outcome = Arc::try_unwrap(outcome)
        .map_err(|_| anyhow::anyhow!("tasks still running"))?
        .into_inner();
    #[allow(clippy::cast_precision_loss)]
    let throughput = outcome.latencies.len() as f64 / elapsed;
    Ok((throughput, outcome, peak_rss))
}

#[tokio::main]
async fn main() -> Result<()> {
    let rps = env_u64("BENCH_RPS", 1000);
    let seconds = env_u64("BENCH_SECONDS", 10);
    let services =
        Services::start(&[Component::Postgres, Component::Redis, Component::RabbitMq]).await?;

    // A fresh database, migrated by the binary itself.
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
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_URL", services.redis_url()?.to_owned()),
        ("RABBITMQ_URL", services.rabbitmq_url()?.to_owned()),
        ("JWT_SECRET", "bench-secret-0123456789".to_owned()),
        ("PORT", port.to_string()),
        ("AMQP_PREFIX", format!("bench.{db}")),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let migrate = Command::new(bin)
        .arg("migrate")
        .envs(env.clone())
        .output()?;
    ensure!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let result = async {
        let child = Command::new(bin).arg("serve").envs(env.clone()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
        let server = Server(child);
        let pid = server.0.id();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).timeout(Duration::from_secs(10)).build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/health")).send().await.is_err() {
            ensure!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let creds = json!({ "email": "bench@example.com", "password": "bench-password" });
        http.post(format!("{base}/v1/auth/register")).json(&creds).send().await?.error_for_status()?;
        let login: Value = http.post(format!("{base}/v1/auth/login")).json(&creds).send().await?.json().await?;
        let token = login["token"].as_str().context("token")?.to_owned();
        let mut lists = Vec::new();
        for i in 0..20 {
            let list: Value = http
                .post(format!("{base}/v1/lists"))
                .bearer_auth(&token)
                .json(&json!({ "name": format!("Lista {i}") }))
                .send()
                .await?
                .json()
                .await?;
            let id = list["id"].as_str().context("list id")?.to_owned();
            for j in 0..20 {
                http.post(format!("{base}/v1/lists/{id}/items"))
                    .bearer_auth(&token)
                    .json(&json!({ "name": format!("item {j}"), "quantity": 1, "category": "pantry" }))
                    .send()
                    .await?
                    .error_for_status()?;
            }
            lists.push(id);
        }
        let idle_rss = rss_kib(pid).unwrap_or(0);
        println!();
        println!("listacompra-api load benchmark: {rps} req/s open-loop for {seconds} s per scenario, loopback, 2-core machine shared by client and server");
        println!("server idle RSS after setup: {:.1} MiB", idle_rss as f64 / 1024.0);
        println!();
        println!("| scenario | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | max ms | errors | peak RSS MiB |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let scenarios: [(&str, MakeRequest); 2] = [
            ("GET /v1/lists/{id} (20 items)", {
                let (http, base, token, lists) = (http.clone(), base.clone(), token.clone(), lists.clone());
                Box::new(move |i| {
                    let id = &lists[usize::try_from(i).unwrap_or(0) % lists.len()];
                    http.get(format!("{base}/v1/lists/{id}")).bearer_auth(&token)
                })
            }),
            ("POST /v1/lists/{id}/items", {
                let (http, base, token, lists) = (http.clone(), base.clone(), token.clone(), lists.clone());
                Box::new(move |i| {
                    let id = &lists[usize::try_from(i).unwrap_or(0) % lists.len()];
                    http.post(format!("{base}/v1/lists/{id}/items"))
                        .bearer_auth(&token)
                        .json(&json!({ "name": format!("bench {i}"), "quantity": 2 }))
                })
            }),
        ];
        for (name, make) in scenarios {
            // Warm-up (not measured): opens the client's and the server's pool connections.
            let warmup = (rps / 2).max(1);
            run_scenario(warmup, 2, pid, &make).await?;
            let (throughput, mut outcome, rss) = run_scenario(rps, seconds, pid, &make).await?;
            outcome.latencies.sort_unstable();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "| {name} | {} | {throughput:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
                outcome.latencies.len(),
                ms(percentile(&outcome.latencies, 50.0)),
                ms(percentile(&outcome.latencies, 95.0)),
                ms(percentile(&outcome.latencies, 99.0)),
                ms(outcome.latencies.last().copied().unwrap_or_default()),
                outcome.errors,
                rss as f64 / 1024.0,
            );
        }
        println!();
        println!("targets (issue 5): p95 < 20 ms at 1000 req/s, RSS < 64 MiB");
        drop(server);
        anyhow::Ok(())
    }
    .await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result
}
