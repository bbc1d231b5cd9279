//! Write latency during migrations (a command that prints a table, not a timed test):
//!
//! ```sh
//! cargo bench -p listacompra-api --bench migrations          # 200 000 rows before 5 and 6
//! BENCH_ROWS=1000000 BENCH_WRITERS=8 cargo bench -p listacompra-api --bench migrations
//! ```
//!
//! On a fresh database of the shared PostgreSQL, moves the schema one revision at a time from
//! 0 up to head and back down to 0, as `migrate --to N` does (migration sessions with
//! `lock_timeout`, retries). During each step, `BENCH_WRITERS` writers insert and update rows
//! of every table that exists on both sides of the step, and the bench prints how long the
//! writes took: the longest is the worst wait a request would have seen (KPI bound: 350 ms).
//! Before revision 5, `BENCH_ROWS` rows go into `outbox_events` and `processed_events`, so
//! that the index builds of 5 and 6 take a while. For comparison, the last rows run the
//! released (plain, non-concurrent) `CREATE INDEX` of 5 and 6 under the same writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::env::Component;
use e2e::services::Services;
use listacompra_api::migrate;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The KPI bound on a request's latency.
const KPI: Duration = Duration::from_millis(350);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tables at each revision (what the migrations create).
fn tables_at(revision: i64) -> Vec<&'static str> {
    let mut t = Vec::new();
    if revision >= 1 {
        t.push("users");
    }
    if revision >= 3 {
        t.push("outbox_events");
        t.push("processed_events");
    }
    t
}

/// One write to `table`.
async fn write(pool: &PgPool, table: &str) -> sqlx::Result<()> {
    match table {
        "users" => {
            sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
                .bind(Uuid::new_v4())
                .bind(format!("{}@bench.invalid", Uuid::new_v4().simple()))
                .execute(pool)
                .await?;
        }
        "outbox_events" => {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO outbox_events (id, event_type, aggregate_id, payload) VALUES ($1, 'bench', $1, '{}')",
            )
            .bind(id)
            .execute(pool)
            .await?;
            sqlx::query("UPDATE outbox_events SET published_at = now() WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        }
        _ => {
            sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ('bench', $1)")
                .bind(Uuid::new_v4())
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

struct Measured {
    writes: usize,
    errors: usize,
    p99: Duration,
    max: Duration,
    took: Duration,
}

/// Runs `step` while `writers` write to `tables`, and measures the writes.
async fn under_writes<F>(
    pool: &PgPool,
    writers: u64,
    tables: &[&'static str],
    step: F,
) -> Result<Measured>
where
    F: std::future::Future<Output = Result<()>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (pool, stop, tables) = (pool.clone(), stop.clone(), tables.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = w as usize;
            while !stop.load(Ordering::Relaxed) && !tables.is_empty() {
                let start = Instant::now();
                if write(&pool, tables[i % tables.len()]).await.is_err() {
                    errors += 1;
                }
                lat.push(start.elapsed());
                i += 1;
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let result = step.await;
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    result?;
    all.sort_unstable();
    let p99 = all
        .get((all.len() as f64 * 0.99) as usize)
        .or(all.last())
        .copied()
        .unwrap_or_default();
    Ok(Measured {
        writes: all.len(),
        errors,
        p99,
        max: all.last().copied().unwrap_or_default(),
        took,
    })
}

fn row(step: &str, m: &Measured) {
    println!(
        "{step:<34} {:>7} {:>6} {:>9.1} {:>9.1} {:>9.0}  {}",
        m.writes,
        m.errors,
        m.p99.as_secs_f64() * 1e3,
        m.max.as_secs_f64() * 1e3,
        m.took.as_secs_f64() * 1e3,
        if m.max <= KPI { "ok" } else { "OVER" }
    );
}

async fn fresh_db(services: &Services) -> Result<(String, PgPool)> {
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(services.postgres_admin_url()?).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let url = services.database_url_for(&name)?;
    Ok((name, listacompra_api::store::pool(&url, 20, None)?))
}

async fn drop_db(services: &Services, name: &str, pool: PgPool) -> Result<()> {
    pool.close().await;
    let mut admin = PgConnection::connect(services.postgres_admin_url()?).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

async fn populate(pool: &PgPool, rows: u64) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, published_at) \
         SELECT gen_random_uuid(), 'seed', gen_random_uuid(), '{}', \
                CASE WHEN g % 2 = 0 THEN now() END FROM generate_series(1, $1) g",
    )
    .bind(rows as i64)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) \
         SELECT 'seed', gen_random_uuid(), now() - (g % 1000) * interval '1 hour' \
         FROM generate_series(1, $1) g",
    )
    .bind(rows as i64)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = env_u64("BENCH_ROWS", 200_000);
    let writers = env_u64("BENCH_WRITERS", 4);
    let services = Services::start(&[Component::Postgres]).await?;
    let head = migrate::head();
    println!(
        "write latency during each migration step ({writers} writers; {rows} rows in the outbox and dedup tables from revision 4; KPI bound {} ms)",
        KPI.as_millis()
    );
    println!(
        "{:<34} {:>7} {:>6} {:>9} {:>9} {:>9}",
        "step", "writes", "errors", "p99 ms", "max ms", "step ms"
    );

    let (name, pool) = fresh_db(&services).await?;
    let steps: Vec<(i64, i64)> = (1..=head)
        .map(|r| (r - 1, r))
        .chain((1..=head).rev().map(|r| (r, r - 1)))
        .collect();
    for (from, to) in steps {
        if from == 4 && to == 5 {
            populate(&pool, rows).await?;
        }
        let tables = tables_at(from.min(to));
        let p = pool.clone();
        let m = under_writes(&pool, writers, &tables, async move {
            let out = migrate::reset_to(&p, Some(to)).await?;
            anyhow::ensure!(out.to == to, "reached {} instead of {to}", out.to);
            Ok(())
        })
        .await?;
        row(&format!("{from} -> {to}"), &m);
    }
    drop_db(&services, &name, pool).await?;

    // The released, non-concurrent index builds of 5 and 6, for comparison.
    let (name, pool) = fresh_db(&services).await?;
    migrate::reset_to(&pool, Some(4)).await?;
    populate(&pool, rows).await?;
    for (version, text) in [
        (
            5,
            include_str!("../tests/fixtures/released/0005_outbox_purge_index.up.sql"),
        ),
        (
            6,
            include_str!("../tests/fixtures/released/0006_dedup_purge_index.up.sql"),
        ),
    ] {
        let p = pool.clone();
        let m = under_writes(&pool, writers, &tables_at(4), async move {
            sqlx::raw_sql(text)
                .execute(&p)
                .await
                .with_context(|| format!("released text of revision {version}"))?;
            Ok(())
        })
        .await?;
        row(
            &format!("{} -> {version} (released, plain)", version - 1),
            &m,
        );
    }
    drop_db(&services, &name, pool).await?;
    Ok(())
}
