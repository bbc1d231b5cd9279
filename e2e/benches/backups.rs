//! `make bench-backups`: how long pgBackRest (Debian's package) takes to back up and restore a
//! database of a stated size, on this machine, with the options the backup tests use (posix
//! repository on loopback, default compression). Prints a table:
//!
//! - a full backup of the database filled with `LC_BENCH_BACKUP_ROWS` rows (default
//!   1,000,000, about 200 bytes each, in one table with an index);
//! - an incremental backup after a tenth of the rows changed;
//! - a restore of that incremental backup into a new data folder (the running cluster is
//!   untouched), then PostgreSQL started on it until it accepts connections (recovery
//!   included), and the rows compared with the original's, one by one (a hash of each row in
//!   order): a restore that loses or changes a row is an error, not a number.
//!
//! Numbers, not assertions: the machines are shared and noisy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::backups::BackedUpPostgres;
use sqlx::{Connection, PgConnection};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench-backups failed: {e:#}");
        std::process::exit(1);
    }
}

/// The newest PostgreSQL server binaries (as `services.sh` picks them).
fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))
}

/// The rows of `table`, in order, as one hash per row, and the database's size in bytes.
async fn fingerprint(url: &str) -> anyhow::Result<(Vec<String>, i64)> {
    let mut db = PgConnection::connect(url).await?;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT md5(t::text) FROM bench_items t ORDER BY id")
            .fetch_all(&mut db)
            .await?;
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut db)
        .await?;
    Ok((rows, size))
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

async fn run() -> anyhow::Result<()> {
    let rows: i64 = std::env::var("LC_BENCH_BACKUP_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let database = BackedUpPostgres::start("bench")?;
    let url = e2e::services::with_database(&database.admin_url, "postgres")?;
    let mut db = PgConnection::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE bench_items (id bigint PRIMARY KEY, list uuid NOT NULL, name text NOT NULL, \
         note text NOT NULL, updated timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut db)
    .await?;
    sqlx::query(
        "INSERT INTO bench_items (id, list, name, note) SELECT i, md5((i % 1000)::text)::uuid, \
         'item ' || i, repeat(md5(i::text), 4) FROM generate_series(1, $1) AS i",
    )
    .bind(rows)
    .execute(&mut db)
    .await?;
    sqlx::query("CHECKPOINT").execute(&mut db).await?;

    let timed = |args: &[&str]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        database.pgbackrest(args)?;
        Ok(started.elapsed())
    };
    let full = timed(&["--type=full", "backup"])?;
    sqlx::query("UPDATE bench_items SET note = md5(note), updated = now() WHERE id % 10 = 0")
        .execute(&mut db)
        .await?;
    let incremental = timed(&["--type=incr", "--annotation=bench=incr", "backup"])?;
    // No write comes after the incremental backup: its restore must be exactly this.
    let (original, size) = fingerprint(&url).await?;
    drop(db);

    let info = database.info()?;
    let sets = info[0]["backup"].as_array().cloned().unwrap_or_default();
    let last = sets.last().cloned().unwrap_or_default();
    let label = last["label"].as_str().unwrap_or_default().to_owned();
    let repo_bytes = |set: &serde_json::Value| set["info"]["repository"]["delta"].as_f64();
    let (full_repo, incr_repo) = (
        sets.first().and_then(repo_bytes).unwrap_or(f64::NAN),
        repo_bytes(&last).unwrap_or(f64::NAN),
    );

    let target = database.scratch("restored")?;
    let target_text = target.display().to_string();
    let started = Instant::now();
    database.pgbackrest(&[
        &format!("--pg1-path={target_text}"),
        &format!("--set={label}"),
        "--type=immediate",
        "--target-action=promote",
        "restore",
    ])?;
    let restore = started.elapsed();
    let port = e2e::runner::free_port()?;
    let bin = pg_bin()?;
    let pg_ctl = bin.join("pg_ctl").display().to_string();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={target_text} -c max_connections=300 -c archive_mode=off"
    );
    let started = Instant::now();
    let log = target.join("postgres.log");
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    };
    database
        .as_owner(
            &pg_ctl,
            &[
                "-D",
                &target_text,
                "-l",
                &format!("{target_text}/postgres.log"),
                "-w",
                "-t",
                "600",
                "-o",
                &options,
                "start",
            ],
        )
        .map_err(|e| anyhow::anyhow!("{e}\n{}", log_tail()))?;
    let mut recovered_url = reqwest::Url::parse(&url)?;
    recovered_url
        .set_port(Some(port))
        .map_err(|()| anyhow::anyhow!("{url} takes no port"))?;
    let recovered_url = recovered_url.to_string();
    // Ready means it accepts connections as a primary (recovery done, promoted).
    let ready = loop {
        if let Ok(mut c) = PgConnection::connect(&recovered_url).await {
            let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut c)
                .await?;
            if !recovering {
                break started.elapsed();
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the restored cluster did not finish its recovery within 10 minutes (log: \
             {target_text}/postgres.log)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (restored, _) = fingerprint(&recovered_url).await?;
    let _ = database.as_owner(&pg_ctl, &["-D", &target_text, "-m", "immediate", "stop"]);
    let differing = original
        .iter()
        .zip(&restored)
        .filter(|(a, b)| a != b)
        .count();
    anyhow::ensure!(
        original.len() == restored.len() && differing == 0,
        "the restore differs from the backed-up database: {} rows then, {} restored, {differing} \
         of them different",
        original.len(),
        restored.len()
    );

    println!(
        "\n{} on this machine: posix repository on loopback, default compression\n",
        String::from_utf8_lossy(&database.pgbackrest(&["version"])?).trim()
    );
    println!(
        "database: {rows} rows, {} MiB (pg_database_size); restore checked row by row: {} rows identical\n",
        mib(size as f64),
        restored.len()
    );
    println!("| step | seconds | repository MiB |");
    println!("|---|---|---|");
    println!(
        "| full backup | {:.1} | {} |",
        full.as_secs_f64(),
        mib(full_repo)
    );
    println!(
        "| incremental backup (a tenth of the rows changed) | {:.1} | {} |",
        incremental.as_secs_f64(),
        mib(incr_repo)
    );
    println!(
        "| restore of the incremental backup into a new data folder | {:.1} | |",
        restore.as_secs_f64()
    );
    println!(
        "| PostgreSQL started on it until it accepts writes (recovery) | {:.1} | |",
        ready.as_secs_f64()
    );
    Ok(())
}
