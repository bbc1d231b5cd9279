//! `make bench-compare`, the API side: `GET /v1/lists/{id}` (20 items, a member and a pending
//! invitation) served by our API and by the runbook's own stack, and the same queries straight
//! from pgbench, each under the same closed-loop load (`BENCH_CONNECTIONS` connections,
//! default 32, each sending its next request when the last one answered, for
//! `BENCH_SECONDS`, default 15, after a 3 s warm-up; each client one keep-alive HTTP/1.1
//! connection driven by hyper, so that the load generator's CPU stays small). Prints req/s
//! (answered 2xx), p50/p99, errors and the server's peak RSS, and the ratios.
//!
//! - ours: the release build of `listacompra-api serve`, as `make bench-api` starts it;
//! - the runbook's stack: Node + Express + pg (`e2e/benches/baselines/express`, installed from
//!   npm with `npm ci` on first use), with the same token check and the same JSON (the bench
//!   checks that each answers the API's body), twice: reading the list as the API did before
//!   it became one query (three round trips), and with the API's one query;
//! - the ceiling: pgbench (`-M prepared`, as sqlx prepares its statements) running what our
//!   API asks the database per request (one statement: the list, its items and members, and
//!   the token's version check), with as many clients as the API's pool has connections: the
//!   database's rate with no HTTP at all.
//!
//! Every server gets the same database, 10 connections (the API's default pool) and this
//! machine, one after the other; ours and the ceiling in [`ROUNDS`] alternate rounds that
//! share the time, their ratio the median of the rounds' (this shared machine's capacity
//! drifts over a minute). Numbers, not assertions.
//!
//! Then ours once more, with writes beside the reads: `POST /v1/lists/{id}/items` on other
//! lists at [`WRITES_PER_SECOND`], open loop (latency from each write's scheduled time), while
//! the same closed loop of reads keeps every database connection busy: what a write waits
//! behind a read flood (it queues for a connection with the reads). Any change to how the
//! store takes its connections shows here.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{
    Bench, Outcome, RssSampler, Server, env_u64, list_with_items, mib, ms, percentile,
    register_and_login,
};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

/// Items in the list read.
const ITEMS: usize = 20;
/// Database connections of every server (the API's default pool) and pgbench's clients.
const POOL: u64 = 10;
/// Load before the measured window, so pools and caches are warm on every side.
const WARM_UP: Duration = Duration::from_secs(3);
/// Writes a second beside the read flood of the last table.
const WRITES_PER_SECOND: u64 = 20;
/// Alternate rounds of ours and of the pgbench ceiling, which share `BENCH_SECONDS`.
const ROUNDS: u64 = 3;

#[tokio::main]
async fn main() -> Result<()> {
    let seconds = env_u64("BENCH_SECONDS", 15);
    let connections = env_u64("BENCH_CONNECTIONS", 32);
    let bench = Bench::start(&[("DATABASE_MAX_CONNECTIONS", POOL.to_string())]).await?;
    let result = compare(&bench, seconds, connections).await;
    bench.finish().await?;
    result
}

async fn compare(bench: &Bench, seconds: u64, connections: u64) -> Result<()> {
    let http = reqwest::Client::new();
    let token = register_and_login(&http, &bench.base, "compare@bench.listacompra.test").await?;
    let list = list_with_items(&http, &bench.base, &token, "compare", ITEMS).await?;
    share(&http, &bench.base, &token, &list).await?;
    let path = format!("/v1/lists/{list}");
    let ours_body = body(&http, &format!("{}{path}", bench.base), &token).await?;

    // Ours and the ceiling in alternate rounds, each a third of the time: this machine's
    // other tenants load it unevenly, and two runs minutes apart (ours first, pgbench after
    // the Node runs) compared them as much as us. Each round pairs runs seconds apart; the
    // ratio is the median of the rounds'.
    let round = (seconds / ROUNDS).max(1);
    let (mut ours_rounds, mut ceilings) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours_rounds
            .push(closed_loop(bench.pid, &bench.base, &path, &token, connections, round).await?);
        ceilings.push(pgbench(&bench.database_url, &list, round).await?);
    }
    let ratios: Vec<f64> = ours_rounds
        .iter()
        .zip(&ceilings)
        .map(|(ours, ceiling)| ours.throughput / ceiling)
        .collect();
    let mut rows = vec![(
        "ours: listacompra-api (Rust, warp, sqlx), one query",
        Run::merged(ours_rounds),
    )];
    let one_query = listacompra_api::store::LIST_DETAIL_QUERY;
    for (name, list_query) in [
        (
            "the runbook's stack: Node + Express + pg, three queries",
            None,
        ),
        (
            "Node + Express + pg with the API's one query",
            Some(one_query),
        ),
    ] {
        let node = Node::start(&bench.database_url, list_query).await?;
        let node_body = body(&http, &format!("{}{path}", node.base), &token).await?;
        ensure!(
            normalized(ours_body.clone()) == normalized(node_body.clone()),
            "{name} answers another body than the API:\n ours: {ours_body}\n node: {node_body}"
        );
        let run = closed_loop(node.pid, &node.base, &path, &token, connections, seconds).await?;
        rows.push((name, run));
    }
    let ceiling = median(ceilings.clone());

    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!(
        "GET /v1/lists/{{id}} ({ITEMS} items), closed loop: {connections} connections for {seconds} s after {} s of warm-up (ours and pgbench: {ROUNDS} alternate rounds of {round} s, each after its warm-up); loopback, one {cores}-core machine shared by client, server and PostgreSQL; {POOL} database connections each",
        WARM_UP.as_secs()
    );
    println!();
    println!("| server | req/s (2xx) | p50 ms | p99 ms | errors | peak RSS MiB | req/s vs ours |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ours = rows[0].1.throughput;
    for (name, run) in &rows {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.2} |",
            run.throughput,
            ms(percentile(&run.outcome.latencies, 50.0)),
            ms(percentile(&run.outcome.latencies, 99.0)),
            run.outcome.errors,
            mib(run.peak_rss_kib),
            run.throughput / ours,
        );
    }
    println!(
        "| ceiling: pgbench, the API's queries per request, {POOL} clients | {ceiling:.0} | | | | | {:.2} |",
        ceiling / ours
    );
    println!();
    println!(
        "ours / the runbook's stack: {:.2}× (target ≥ 5×); ours / Node with the same query: {:.2}×; ours / pgbench: {:.0} % (target ≥ 50 %), the median of {ROUNDS} rounds of {round} s each: {}",
        ours / rows[1].1.throughput,
        ours / rows[2].1.throughput,
        100.0 * median(ratios.clone()),
        ratios
            .iter()
            .zip(&ceilings)
            .map(|(ratio, ceiling)| format!("{:.0} % of {ceiling:.0}", 100.0 * ratio))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let errors: u64 = rows.iter().map(|(_, run)| run.outcome.errors).sum();
    ensure!(
        errors == 0,
        "{errors} requests failed: the figures above are not comparable"
    );
    writes_beside_reads(bench, &http, &token, &path, connections, seconds).await
}

/// Ours again: the closed loop of reads, and [`WRITES_PER_SECOND`] item writes on other lists
/// open loop in its measured window; prints the reads' rate and the writes' latencies.
async fn writes_beside_reads(
    bench: &Bench,
    http: &reqwest::Client,
    token: &str,
    path: &str,
    connections: u64,
    seconds: u64,
) -> Result<()> {
    // Lists enough for the writes under the API's cap of items per list (1,000).
    let mut urls = Vec::new();
    for n in 0..(WRITES_PER_SECOND * seconds).div_ceil(500) {
        let list = list_with_items(http, &bench.base, token, &format!("writes {n}"), 0).await?;
        urls.push(format!("{}/v1/lists/{list}/items", bench.base));
    }
    let write = |i: u64| {
        http.post(&urls[usize::try_from(i).unwrap_or(0) % urls.len()])
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": format!("write {i}"), "quantity": 2 }))
    };
    let writes = async {
        tokio::time::sleep(WARM_UP).await;
        common::run_open_loop(WRITES_PER_SECOND, seconds, &write).await
    };
    let (reads, writes) = tokio::join!(
        closed_loop(bench.pid, &bench.base, path, token, connections, seconds),
        writes
    );
    let (reads, (write_rate, writes)) = (reads?, writes?);
    println!();
    println!(
        "Ours again, {WRITES_PER_SECOND} writes a second (POST /v1/lists/{{id}}/items on other lists, open loop) beside the same closed loop of reads"
    );
    println!();
    println!(
        "| reads req/s (2xx) | read errors | writes/s | write p50 ms | write p95 ms | write p99 ms | write max ms | write errors |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {:.0} | {} | {write_rate:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        reads.throughput,
        reads.outcome.errors,
        ms(percentile(&writes.latencies, 50.0)),
        ms(percentile(&writes.latencies, 95.0)),
        ms(percentile(&writes.latencies, 99.0)),
        ms(percentile(&writes.latencies, 100.0)),
        writes.errors,
    );
    Ok(())
}

/// Adds a member and a pending invitation to `list`, so the members part of the answer has
/// an order to keep.
async fn share(http: &reqwest::Client, base: &str, token: &str, list: &str) -> Result<()> {
    register_and_login(http, base, "member@bench.listacompra.test").await?;
    for email in [
        "member@bench.listacompra.test",
        "invited@bench.listacompra.test",
    ] {
        let res = http
            .post(format!("{base}/v1/lists/{list}/members"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "email": email }))
            .send()
            .await?;
        let status = res.status();
        ensure!(
            status.is_success(),
            "sharing the list with {email}: {status} {}",
            res.text().await?
        );
    }
    Ok(())
}

/// The body of one authenticated GET, as JSON.
async fn body(http: &reqwest::Client, url: &str, token: &str) -> Result<Value> {
    let res = http.get(url).bearer_auth(token).send().await?;
    let status = res.status();
    let text = res.text().await?;
    ensure!(status.is_success(), "GET {url}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// A body with what JSON leaves open made one way: absent and `null` fields alike, numbers
/// as doubles (`1` and `1.0`), timestamps as instants (`Z` and `+00:00`).
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalized(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        Value::Number(n) => n.as_f64().map_or(Value::Number(n), Value::from),
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(&s) {
            Ok(at) => Value::from(at.timestamp_nanos_opt().unwrap_or_default()),
            Err(_) => Value::String(s),
        },
        other => other,
    }
}

/// One closed-loop run's figures.
struct Run {
    /// Requests answered 2xx per second of the measured window.
    throughput: f64,
    /// Latencies of the answered requests, and the failed ones.
    outcome: Outcome,
    peak_rss_kib: u64,
}

impl Run {
    /// Rounds of one server as one run: the median rate, every latency and error, the
    /// highest RSS.
    fn merged(rounds: Vec<Run>) -> Run {
        let throughput = median(rounds.iter().map(|run| run.throughput).collect());
        let peak_rss_kib = rounds.iter().map(|run| run.peak_rss_kib).max().unwrap_or(0);
        let mut outcome = Outcome {
            latencies: Vec::new(),
            errors: 0,
        };
        for run in rounds {
            outcome.latencies.extend(run.outcome.latencies);
            outcome.errors += run.outcome.errors;
        }
        outcome.latencies.sort_unstable();
        Run {
            throughput,
            outcome,
            peak_rss_kib,
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `connections` clients, each with its own keep-alive connection, each sending its next
/// request once the last was answered: a warm-up, then `seconds` measured.
async fn closed_loop(
    pid: u32,
    base: &str,
    path: &str,
    token: &str,
    connections: u64,
    seconds: u64,
) -> Result<Run> {
    let host: Arc<str> = base
        .strip_prefix("http://")
        .with_context(|| format!("{base} is no http:// address"))?
        .into();
    let path: Arc<str> = path.into();
    let authorization = hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let measure_from = Instant::now() + WARM_UP;
    let end = measure_from + Duration::from_secs(seconds);
    let rss = RssSampler::start(pid);
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (host, path, outcome) = (host.clone(), path.clone(), outcome.clone());
        let authorization = authorization.clone();
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            let mut connection = None;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let answered = tokio::time::timeout(
                    Duration::from_secs(10),
                    exchange(&mut connection, &host, &path, &authorization),
                )
                .await;
                let ok = matches!(answered, Ok(Ok(true)));
                if !ok {
                    // A new connection for the next request, as a browser would open.
                    connection = None;
                }
                // Only answered requests count: a fast failure is no throughput.
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            let mut o = outcome.lock().await;
            o.latencies.extend(latencies);
            o.errors += errors;
        }));
    }
    for client in clients {
        client.await?;
    }
    let peak_rss_kib = rss.finish(pid).await;
    let mut outcome = Arc::try_unwrap(outcome)
        .map_err(|_| anyhow::anyhow!("clients still running"))?
        .into_inner();
    outcome.latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let throughput = outcome.latencies.len() as f64 / seconds as f64;
    Ok(Run {
        throughput,
        outcome,
        peak_rss_kib,
    })
}

/// One request of a closed-loop client over its keep-alive connection (opened on first use,
/// or again after the server closed it): whether it was answered 2xx, its body read whole.
async fn exchange(
    connection: &mut Option<Sender>,
    host: &str,
    path: &str,
    authorization: &hyper::header::HeaderValue,
) -> Result<bool> {
    use http_body_util::BodyExt;
    if connection.as_ref().is_none_or(Sender::is_closed) {
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let (sender, driver) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(driver);
        *connection = Some(sender);
    }
    let sender = connection.as_mut().context("no connection")?;
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::AUTHORIZATION, authorization)
        .body(http_body_util::Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status.is_success())
}

/// A client's connection.
type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

/// The runbook's stack serving on loopback; stopped when dropped.
struct Node {
    _server: Server,
    pid: u32,
    base: String,
}

impl Node {
    /// Installs the baseline's packages (once) and starts it against `database_url` with
    /// [`POOL`] connections, reading lists with `list_query` (the API's one query) or,
    /// without it, in three round trips.
    async fn start(database_url: &str, list_query: Option<&str>) -> Result<Self> {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/benches/baselines/express");
        // npm writes this file last: a half-finished install is done again.
        if !dir.join("node_modules/.package-lock.json").is_file() {
            let npm = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .context("running npm (install Node.js 20 or later and npm)")?;
            ensure!(npm.success(), "npm ci in {} failed", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut node = Command::new("node");
        node.arg("server.js")
            .current_dir(&dir)
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", common::JWT_SECRET)
            .env("PORT", port.to_string())
            .env("PG_POOL_SIZE", POOL.to_string())
            .env("NODE_ENV", "production")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(query) = list_query {
            node.env("LIST_QUERY", query);
        }
        let mut server = Server(
            node.spawn()
                .context("starting node (install Node.js 20 or later)")?,
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(exit) = server.0.try_wait()? {
                bail!("the Node baseline exited ({exit}) before it listened; its errors are above");
            }
            ensure!(
                Instant::now() < deadline,
                "the Node baseline did not start in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            pid: server.0.id(),
            _server: server,
            base,
        })
    }
}

/// Transactions per second of pgbench running the API's per-request queries for `list`,
/// after a warm-up as long as the HTTP runs' warm-up. (pgbench blocks this thread: nothing
/// else runs meanwhile.)
async fn pgbench(database_url: &str, list: &str, seconds: u64) -> Result<f64> {
    let (owner, version) = reader_of(database_url, list).await?;
    // pgbench's `:name` variables become the statements' parameters with -M prepared.
    let script = Script::write(&format!(
        "{};\n",
        listacompra_api::store::LIST_DETAIL_QUERY
            .replace("$1", ":list")
            .replace("$2", ":user")
            .replace("$3", ":version"),
    ))?;
    // The password goes in the environment, not on a command line that `ps` shows.
    let mut url = reqwest::Url::parse(database_url)?;
    let password = url.password().unwrap_or_default().to_owned();
    url.set_password(None)
        .map_err(|()| anyhow::anyhow!("the database URL takes no password"))?;
    let binary = pgbench_binary()?;
    let run = |seconds: u64| -> Result<String> {
        let out = Command::new(&binary)
            .args(["-n", "-M", "prepared", "-j", "2"])
            .args(["-c", &POOL.to_string(), "-T", &seconds.to_string()])
            .args([
                "-D",
                &format!("user={owner}"),
                "-D",
                &format!("list={list}"),
                "-D",
                &format!("version={version}"),
            ])
            .arg("-f")
            .arg(&script.0)
            .arg(url.as_str())
            .env("PGPASSWORD", &password)
            .output()
            .context("running pgbench")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "pgbench failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    };
    run(WARM_UP.as_secs())?;
    let stdout = run(seconds)?;
    // "tps = 12345.678 (without initial connection time)"
    stdout
        .lines()
        .filter(|l| l.contains("without initial connection time"))
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .with_context(|| format!("pgbench printed no tps:\n{stdout}"))
}

/// The owner of `list` and their token version: whose requests pgbench stands in for. Checked
/// to read the whole list with the API's statement, so that pgbench's rate is that of reads
/// which find the list, never of empty answers.
async fn reader_of(database_url: &str, list: &str) -> Result<(uuid::Uuid, i64)> {
    let mut db = PgConnection::connect(database_url).await?;
    let (owner, version): (uuid::Uuid, i64) = sqlx::query_as(
        "SELECT u.id, u.token_version FROM list_members m JOIN users u ON u.id = m.user_id \
         WHERE m.list_id = $1::uuid AND m.role = 'owner'",
    )
    .bind(list)
    .fetch_one(&mut db)
    .await?;
    let rows = sqlx::query(listacompra_api::store::LIST_DETAIL_QUERY)
        .bind(list.parse::<uuid::Uuid>()?)
        .bind(owner)
        .bind(version)
        .fetch_all(&mut db)
        .await?;
    // A row per item, one per member (the owner and one more) and one for the invitation.
    ensure!(
        rows.len() == ITEMS + 3,
        "the list statement read {} rows of a list with {ITEMS} items, two members and an invitation",
        rows.len()
    );
    db.close().await?;
    Ok((owner, version))
}

/// A pgbench script in a temporary file, removed when dropped.
struct Script(PathBuf);

impl Script {
    fn write(text: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("listacompra-compare-{}.sql", std::process::id()));
        std::fs::write(&path, text)?;
        Ok(Self(path))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// pgbench of the newest PostgreSQL installed (Debian keeps it beside the server).
fn pgbench_binary() -> Result<PathBuf> {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| {
                let dir = d.ok()?.path();
                let major: u32 = dir.file_name()?.to_str()?.split('.').next()?.parse().ok()?;
                let binary = dir.join("bin/pgbench");
                binary.is_file().then_some((major, binary))
            })
            .max_by_key(|(major, _)| *major)
        })
        .ok()
        .flatten();
    match newest {
        Some((_, binary)) => Ok(binary),
        None => bail!(
            "no pgbench under /usr/lib/postgresql/*/bin. Fix: apt-get install postgresql (e2e/scripts/services.sh installs it; pgbench ships with the server)"
        ),
    }
}
