//! Online migrations on a real PostgreSQL: a migration session has `lock_timeout`, so a
//! migration that cannot get its lock gives up quickly with a clear error (instead of queueing
//! every request behind it) and succeeds on retry once the lock is free; a concurrent index
//! build that gave up leaves no invalid index behind; and databases migrated with the released
//! text of the amended revisions 5 and 6 are accepted. (How long writes wait during each
//! migration is measured by `cargo bench -p listacompra-api --bench migrations`.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use common::TestDb;
use listacompra_api::migrate::{self, Outcome, Settings};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, PgConnection, SqlSafeStr};

/// Settings that fail fast: no retry.
fn no_retry() -> Settings {
    Settings {
        retries: 0,
        ..Settings::default()
    }
}

/// Whether `index` exists and is valid (usable by queries).
async fn index_valid(db: &TestDb, index: &str) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
    )
    .bind(index)
    .fetch_optional(&db.pool)
    .await?)
}

#[tokio::test]
async fn a_migration_blocked_by_a_lock_gives_up_with_a_clear_error_and_succeeds_on_retry()
-> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    migrate::reset_to(&db.pool, Some(5)).await?;

    // Another session holds a lock that the index build of revision 6 needs.
    let mut holder = PgConnection::connect(&db.url).await?;
    sqlx::raw_sql("BEGIN; LOCK TABLE processed_events IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut holder)
        .await?;

    let err = migrate::migrate_with(&db.pool, None, &no_retry())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lock") && err.contains("MIGRATION_LOCK_TIMEOUT_MS"),
        "{err}"
    );
    assert!(err.contains("migration 6"), "{err}");
    assert_eq!(migrate::current(&db.pool).await?, 5);

    // With retries, the migration keeps trying in fresh sessions (each giving up after its
    // lock_timeout) until the lock is released.
    let task = tokio::spawn({
        let pool = db.pool.clone();
        async move {
            migrate::migrate_with(
                &pool,
                None,
                &Settings {
                    retries: 1000,
                    retry_delay: Duration::from_millis(20),
                    ..Settings::default()
                },
            )
            .await
        }
    });
    let mut waiting = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while waiting.len() < 2 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after 60 s waiting for two migration sessions in turn to wait for the lock"
        );
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(migrate::session::APPLICATION_NAME)
        .fetch_all(&db.pool)
        .await?;
        waiting.extend(pids);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::raw_sql("COMMIT").execute(&mut holder).await?;
    let outcome = task.await??;
    assert_eq!(
        outcome,
        Outcome {
            from: 5,
            to: migrate::head()
        }
    );
    assert_eq!(
        index_valid(&db, "processed_events_processed_at_idx").await?,
        Some(true)
    );
    Ok(())
}

#[tokio::test]
async fn a_concurrent_index_build_that_gave_up_is_rebuilt_not_left_invalid() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    migrate::reset_to(&db.pool, Some(5)).await?;

    // An open write transaction: CREATE INDEX CONCURRENTLY gets its table lock (writes go on),
    // registers the index, then waits for this transaction to end, and gives up.
    let mut writer = PgConnection::connect(&db.url).await?;
    sqlx::raw_sql(
        "BEGIN; INSERT INTO processed_events (consumer, event_id) VALUES ('t', gen_random_uuid())",
    )
    .execute(&mut writer)
    .await?;
    let err = migrate::migrate_with(&db.pool, None, &no_retry())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("MIGRATION_LOCK_TIMEOUT_MS"), "{err}");
    assert_eq!(migrate::current(&db.pool).await?, 5);
    assert_eq!(
        index_valid(&db, "processed_events_processed_at_idx").await?,
        Some(false),
        "the build that gave up left an invalid index (PostgreSQL's behaviour)"
    );
    sqlx::raw_sql("COMMIT").execute(&mut writer).await?;

    // The next run drops it and builds it again, instead of `IF NOT EXISTS` accepting it.
    assert_eq!(
        migrate::migrate_with(&db.pool, None, &no_retry()).await?,
        Outcome {
            from: 5,
            to: migrate::head()
        }
    );
    assert_eq!(
        index_valid(&db, "processed_events_processed_at_idx").await?,
        Some(true)
    );
    Ok(())
}

/// This binary's migrations up to `to`, with revisions 5 and 6 as they were released.
fn released_migrator(to: i64) -> Migrator {
    let released = |version: i64| -> Option<&'static str> {
        match version {
            5 => Some(include_str!(
                "fixtures/released/0005_outbox_purge_index.up.sql"
            )),
            6 => Some(include_str!(
                "fixtures/released/0006_dedup_purge_index.up.sql"
            )),
            _ => None,
        }
    };
    let migrations = migrate::MIGRATOR
        .iter()
        .filter(|m| m.version <= to && m.migration_type.is_up_migration())
        .map(|m| match released(m.version) {
            Some(text) => Migration::new(
                m.version,
                m.description.clone(),
                MigrationType::ReversibleUp,
                text.into_sql_str(),
                false,
            ),
            None => m.clone(),
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[tokio::test]
async fn databases_migrated_with_the_released_text_of_amended_revisions_are_accepted() -> Result<()>
{
    let services = common::services().await?;
    // At revision 5 as released: moving up validates revision 5's recorded checksum.
    let db = TestDb::empty(&services).await?;
    released_migrator(5).run(&db.pool).await?;
    assert_eq!(
        migrate::reset_to(&db.pool, None).await?,
        Outcome {
            from: 5,
            to: migrate::head()
        }
    );
    // At head as released: the recorded checksums become the current ones, so a later
    // revision (validated against them) applies.
    let db = TestDb::empty(&services).await?;
    released_migrator(6).run(&db.pool).await?;
    migrate::reset_to(&db.pool, None).await?;
    let recorded: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await?;
    for (version, checksum) in recorded {
        let current = migrate::MIGRATOR
            .iter()
            .find(|m| m.version == version && m.migration_type.is_up_migration())
            .map(|m| m.checksum.to_vec());
        assert_eq!(Some(checksum), current, "revision {version}");
    }
    // Down and up again through the amended (concurrent) revisions.
    migrate::reset_to(&db.pool, Some(4)).await?;
    migrate::reset_to(&db.pool, None).await?;
    assert_eq!(migrate::current(&db.pool).await?, migrate::head());
    Ok(())
}

/// Restarts the private PostgreSQL `pg` as a standby (`standby.signal`, no primary to follow):
/// it accepts sessions and stays in recovery, read-only, as a restored database does until it
/// is promoted.
fn restart_as_standby(pg: &e2e::private::PrivateService) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    pg.down()?;
    // Where services.sh keeps a private PostgreSQL's data folder.
    let data = pg.state().join("postgres").join("data");
    anyhow::ensure!(
        data.join("PG_VERSION").is_file(),
        "no data folder at {}",
        data.display()
    );
    let owner = std::fs::metadata(&data)?;
    let signal = data.join("standby.signal");
    std::fs::write(&signal, "")?;
    std::os::unix::fs::chown(&signal, Some(owner.uid()), Some(owner.gid()))?;
    pg.up()?;
    Ok(())
}

#[tokio::test]
async fn a_migration_waits_for_a_database_in_recovery_to_take_writes() -> Result<()> {
    let pg = std::sync::Arc::new(
        tokio::task::spawn_blocking(e2e::private::PrivateService::postgres).await??,
    );
    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || restart_as_standby(&pg)
    })
    .await??;
    let pool = listacompra_api::store::pool(&pg.url, 2, None)?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&pool)
        .await?;
    assert!(in_recovery, "the standby is not in recovery");

    // Never promoted: a clear error once the wait is over, nothing applied.
    let short = Settings {
        recovery_wait: Duration::from_secs(1),
        ..Settings::default()
    };
    let refused = migrate::migrate_with(&pool, None, &short).await;
    let message = refused
        .expect_err("a read-only database was migrated")
        .to_string();
    assert!(
        message.contains("in recovery") && message.contains("MIGRATION_RECOVERY_WAIT_SECONDS"),
        "{message}"
    );

    // Promoted while the migration waits: it goes on and applies everything.
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { migrate::migrate_with(&pool, None, &Settings::default()).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "the migration did not wait for the promotion"
    );
    let promoted: bool = sqlx::query_scalar("SELECT pg_promote()")
        .fetch_one(&pool)
        .await?;
    assert!(promoted, "pg_promote() did not promote");
    let outcome = waiting.await??;
    assert_eq!(outcome.to, migrate::head());
    Ok(())
}
