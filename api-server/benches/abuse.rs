//! Abuse benchmark (a command that prints a table, not a timed test; issue 13):
//!
//! ```sh
//! make bench-abuse                                        # 500 req/s, 10 s per attack
//! BENCH_RPS=500 BENCH_SECONDS=10 cargo bench -p listacompra-api --bench abuse
//! ```
//!
//! Starts the real binary (release build) against a fresh database on the shared
//! PostgreSQL, Redis and RabbitMQ, with `TRUSTED_PROXY_HOPS=1` so that an attacker can be
//! many client addresses (the worst case behind a proxy: each request's `X-Forwarded-For`
//! is a new address, so per-address rate limits never trigger). For each attack, legitimate
//! traffic (four users reading their list of 20 items) runs open loop at `BENCH_RPS`
//! (latency from each request's scheduled start) while the attackers run on a runtime of
//! their own thread. Prints per attack the attack's requests and status codes, the
//! legitimate requests, errors and latency percentiles, and the server's peak RSS sampled
//! from `/proc` every 20 ms, against the memory budget of password hashing.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::{
    Bench, RssSampler, env_u64, list_with_items, mib, ms, percentile, register_and_login, rss_kib,
    run_open_loop,
};
use listacompra_api::auth::{ARGON2_MEMORY_KIB, DEFAULT_HASH_CONCURRENCY};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// Concurrent attackers of the request floods.
const ATTACKERS: usize = 48;
/// Connections the slow-headers attacker keeps open.
const SLOW_CONNECTIONS: usize = 500;
/// The oversized body: 10 MiB.
const OVERSIZED_BYTES: usize = 10 * 1024 * 1024;
/// Attackers sending oversized bodies (each sends 10 MiB per request).
const OVERSIZED_ATTACKERS: usize = 8;
/// Nesting of the deeply nested JSON body (`[[[…]]]`, 2 bytes a level: under the 64 KiB
/// body limit, so it reaches the JSON parser).
const NESTING: usize = 30_000;

/// Status codes (or `err` for transport failures) and how often each came back.
#[derive(Default)]
struct Codes(BTreeMap<String, u64>);

impl Codes {
    fn total(&self) -> u64 {
        self.0.values().sum()
    }

    fn count(&self, code: &str) -> u64 {
        self.0.get(code).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("–");
        }
        let parts: Vec<String> = self.0.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        f.write_str(&parts.join(" "))
    }
}

type Shared = Arc<Mutex<Codes>>;

async fn record(codes: &Shared, code: impl Into<String>) {
    *codes.lock().await.0.entry(code.into()).or_default() += 1;
}

/// What an attack does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attack {
    None,
    LoginOneAddress,
    LoginManyAddresses,
    RegisterManyAddresses,
    UnknownMethods,
    Enumeration,
    SlowHeaders,
    OversizedBodies,
    NestedJson,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::None => "baseline (no attack)",
            Attack::LoginOneAddress => "login flood, one address (48 attackers)",
            Attack::LoginManyAddresses => {
                "login flood, a new X-Forwarded-For address per request (48 attackers)"
            }
            Attack::RegisterManyAddresses => {
                "registration flood, a new X-Forwarded-For address per request (48 attackers)"
            }
            Attack::UnknownMethods => "unknown methods `ZZ1 /x`, `BREW /v1/lists` (48 attackers)",
            Attack::Enumeration => "enumeration: GET /v1/lists/{random id} (48 attackers)",
            Attack::SlowHeaders => "slow headers: 500 connections, request line never finished",
            Attack::OversizedBodies => "10 MiB POST /v1/auth/login (8 attackers)",
            Attack::NestedJson => "JSON nested 30000 deep, POST /v1/auth/login (48 attackers)",
        }
    }
}

/// A random-looking public IPv4 address per request (198.18.0.0/15 and beyond, never
/// loopback).
fn spoofed(n: u64) -> String {
    let n = u32::try_from(n % (1 << 24)).unwrap_or(0);
    let [_, a, b, c] = n.to_be_bytes();
    Ipv4Addr::new(100, a, b, c).to_string()
}

/// Runs `attack` against `port` for `seconds` on a thread and runtime of its own (so the
/// attackers' client work does not delay the scheduling of legitimate requests); the codes.
fn spawn_attack(
    attack: Attack,
    port: u16,
    token: String,
    seconds: u64,
) -> std::thread::JoinHandle<Result<Codes>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run_attack(attack, port, token, seconds))
    })
}

async fn run_attack(attack: Attack, port: u16, token: String, seconds: u64) -> Result<Codes> {
    let codes: Shared = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let base = format!("http://127.0.0.1:{port}");
    let counter = Arc::new(AtomicU64::new(0));
    match attack {
        Attack::None => {}
        Attack::SlowHeaders => {
            let mut tasks = Vec::new();
            for _ in 0..SLOW_CONNECTIONS {
                let codes = codes.clone();
                tasks.push(tokio::spawn(async move {
                    slow_headers(port, deadline, &codes).await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        _ => {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?;
            // Leaked once per attack: reqwest sends a `&'static [u8]` body without copying.
            let body: &'static [u8] = Box::leak(
                match attack {
                    Attack::OversizedBodies => vec![b'a'; OVERSIZED_BYTES],
                    Attack::NestedJson => {
                        let mut s = "[".repeat(NESTING);
                        s.push_str(&"]".repeat(NESTING));
                        s.into_bytes()
                    }
                    _ => Vec::new(),
                }
                .into_boxed_slice(),
            );
            let attackers = if attack == Attack::OversizedBodies {
                OVERSIZED_ATTACKERS
            } else {
                ATTACKERS
            };
            let mut tasks = Vec::new();
            for _ in 0..attackers {
                let (http, base, token, codes, counter) = (
                    http.clone(),
                    base.clone(),
                    token.clone(),
                    codes.clone(),
                    counter.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let req = attack_request(attack, &http, &base, &token, body, n);
                        let code = match req.send().await {
                            Ok(res) => {
                                let status = res.status().as_u16().to_string();
                                let _ = res.bytes().await;
                                status
                            }
                            Err(_) => "err".to_owned(),
                        };
                        record(&codes, code).await;
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let codes = Arc::try_unwrap(codes)
        .map_err(|_| anyhow::anyhow!("attackers still running"))?
        .into_inner();
    Ok(codes)
}

fn attack_request(
    attack: Attack,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: &'static [u8],
    n: u64,
) -> reqwest::RequestBuilder {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let creds = json!({ "email": format!("{random}@example.com"), "password": random });
    match attack {
        Attack::LoginOneAddress => http.post(format!("{base}/v1/auth/login")).json(&creds),
        Attack::LoginManyAddresses => http
            .post(format!("{base}/v1/auth/login"))
            .header("x-forwarded-for", spoofed(n))
            .json(&creds),
        Attack::RegisterManyAddresses => http
            .post(format!("{base}/v1/auth/register"))
            .header("x-forwarded-for", spoofed(n))
            .json(&creds),
        Attack::UnknownMethods => {
            let (method, path): (&[u8], &str) = if n.is_multiple_of(2) {
                (b"ZZ1", "/x")
            } else {
                (b"BREW", "/v1/lists")
            };
            let method = reqwest::Method::from_bytes(method).unwrap_or(reqwest::Method::PATCH);
            http.request(method, format!("{base}{path}"))
        }
        Attack::Enumeration => http
            .get(format!("{base}/v1/lists/{}", uuid::Uuid::new_v4()))
            .bearer_auth(token),
        Attack::OversizedBodies | Attack::NestedJson => http
            .post(format!("{base}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body),
        Attack::None | Attack::SlowHeaders => http.get(format!("{base}/health")),
    }
}

/// Keeps one connection that sent half a request head open until `deadline`, opening a new
/// one whenever the server closes it. Records `closed` (the server hung up), `408` (it
/// answered Request Timeout) or `open` (still open at the deadline), per connection.
async fn slow_headers(port: u16, deadline: Instant, codes: &Shared) {
    while Instant::now() < deadline {
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            record(codes, "connect-err").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if conn
            .write_all(b"GET /v1/lists HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .is_err()
        {
            record(codes, "closed").await;
            continue;
        }
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout_at(deadline.into(), conn.read(&mut buf)).await;
        let code = match read {
            Err(_) => "open".to_owned(),
            Ok(Ok(0) | Err(_)) => "closed".to_owned(),
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                .split_whitespace()
                .nth(1)
                .unwrap_or("closed")
                .to_owned(),
        };
        record(codes, code).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rps = env_u64("BENCH_RPS", 500);
    let seconds = env_u64("BENCH_SECONDS", 10);
    let bench = Bench::start(&[("TRUSTED_PROXY_HOPS", "1".to_owned())]).await?;
    let result = run(&bench, rps, seconds).await;
    bench.finish().await?;
    result
}

#[allow(clippy::too_many_lines)]
async fn run(bench: &Bench, rps: u64, seconds: u64) -> Result<()> {
    let (pid, base) = (bench.pid, bench.base.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    // Four legitimate users with a list of 20 items each, and the enumerating attacker's
    // own account.
    let mut users = Vec::new();
    for u in 0..4 {
        let token = register_and_login(&http, &base, &format!("user{u}@example.com")).await?;
        let list = list_with_items(&http, &base, &token, &format!("Lista {u}"), 20).await?;
        users.push((token, list));
    }
    let attacker_token = register_and_login(&http, &base, "attacker@example.com").await?;
    let legit = {
        let (http, base, users) = (http.clone(), base.clone(), users.clone());
        move |i: u64| {
            let (token, list) = &users[usize::try_from(i).unwrap_or(0) % users.len()];
            http.get(format!("{base}/v1/lists/{list}"))
                .bearer_auth(token)
        }
    };
    // Warm-up (not measured): opens the client's and the server's pool connections, the
    // database pool to its full size (`DATABASE_MAX_CONNECTIONS`) by a burst of 64
    // concurrent clients: a server that has served a busy minute has them open, so their
    // memory is the server's at rest, not an attack's.
    run_open_loop((rps / 2).max(1), 2, &legit).await?;
    let burst = (0..64u64).map(|client| {
        let legit = &legit;
        async move {
            for n in 0..25 {
                let _ = legit(client * 25 + n).send().await;
            }
        }
    });
    futures::future::join_all(burst).await;
    let rest_rss = rss_kib(pid).unwrap_or(0);
    let hash_concurrency = std::env::var("PASSWORD_HASH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_HASH_CONCURRENCY);
    let budget_kib = u64::try_from(hash_concurrency).unwrap_or(0) * u64::from(ARGON2_MEMORY_KIB);

    println!();
    println!(
        "listacompra-api abuse benchmark (issue 13): legitimate GET /v1/lists/{{id}} (20 items, 4 users) at {rps} req/s open loop for {seconds} s per attack, loopback, TRUSTED_PROXY_HOPS=1, 2-core machine shared by attackers, legitimate client and server"
    );
    println!(
        "server RSS at rest after setup: {:.1} MiB; password hashing budget: PASSWORD_HASH_CONCURRENCY {hash_concurrency} × {} MiB argon2id = {:.0} MiB",
        mib(rest_rss),
        ARGON2_MEMORY_KIB / 1024,
        mib(budget_kib)
    );
    println!();
    println!(
        "| attack | attack requests | attack status codes | legit requests | legit errors | legit p50 ms | legit p95 ms | legit p99 ms | peak RSS (MiB) |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let attacks = [
        Attack::None,
        Attack::LoginOneAddress,
        Attack::LoginManyAddresses,
        Attack::RegisterManyAddresses,
        Attack::UnknownMethods,
        Attack::Enumeration,
        Attack::SlowHeaders,
        Attack::OversizedBodies,
        Attack::NestedJson,
    ];
    let mut peak_all = 0;
    let mut login_flood_p95 = Vec::new();
    for attack in attacks {
        let sampler = RssSampler::start(pid);
        let attackers = spawn_attack(attack, bench.port, attacker_token.clone(), seconds);
        let (_, outcome) = run_open_loop(rps, seconds, &legit).await?;
        let codes = tokio::task::spawn_blocking(move || attackers.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the attack thread panicked"))??;
        let rss = sampler.finish(pid).await;
        peak_all = peak_all.max(rss);
        let p95 = percentile(&outcome.latencies, 95.0);
        println!(
            "| {} | {} | {codes} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
            attack.name(),
            codes.total(),
            outcome.latencies.len(),
            outcome.errors,
            ms(percentile(&outcome.latencies, 50.0)),
            ms(p95),
            ms(percentile(&outcome.latencies, 99.0)),
            mib(rss),
        );
        // Functional facts, not timings.
        match attack {
            Attack::LoginOneAddress => {
                ensure!(
                    codes.count("429") > 0,
                    "the one-address login flood got no 429: {codes}"
                );
                login_flood_p95.push((attack.name(), p95));
            }
            Attack::LoginManyAddresses => {
                ensure!(
                    codes.count("401") > 0,
                    "the many-address login flood got no 401: {codes}"
                );
                login_flood_p95.push((attack.name(), p95));
            }
            Attack::OversizedBodies => ensure!(
                codes.count("413") + codes.count("err") == codes.total() && codes.count("413") > 0,
                "oversized bodies were not refused with 413: {codes}"
            ),
            Attack::NestedJson => ensure!(
                codes.count("400") == codes.total(),
                "deeply nested JSON was not refused with 400: {codes}"
            ),
            _ => {}
        }
        ensure!(
            codes.count("500") == 0,
            "{} got 500s: {codes}",
            attack.name()
        );
        // Let hashing queues and closed connections drain before the next attack.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!();
    let limit = rest_rss + budget_kib;
    println!(
        "peak RSS over all attacks {:.1} MiB; rest RSS + hashing budget = {:.1} + {:.0} = {:.1} MiB: {}",
        mib(peak_all),
        mib(rest_rss),
        mib(budget_kib),
        mib(limit),
        if peak_all <= limit {
            "under the budget"
        } else {
            "OVER the budget"
        }
    );
    // What a pod has: the production sample's memory limit.
    let pod_limit_kib = 256 * 1024;
    println!(
        "peak RSS over all attacks {:.1} MiB against the production sample's pod limit of {:.0} MiB (config/samples/production.yaml): {:.0} % of it",
        mib(peak_all),
        mib(pod_limit_kib),
        100.0 * peak_all as f64 / pod_limit_kib as f64
    );
    for (name, p95) in login_flood_p95 {
        println!(
            "target (issue 13): legitimate p95 < 20 ms at 500 req/s during a login flood; {name}: p95 {:.2} ms ({})",
            ms(p95),
            if p95 < Duration::from_millis(20) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(())
}
