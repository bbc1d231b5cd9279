//! Schema migrations: numbered, reversible, online.
//!
//! The schema revision is the number of the last applied migration (0 = empty schema).
//! `migrate --to N` moves up or down to N; this is what the operator's migration and
//! schema-revert Jobs run, while the previous release keeps serving.
//!
//! Online rules (checked by the tests in this module, see [`index_ddl`]):
//! - an index on a table that already exists is built with `CREATE INDEX CONCURRENTLY IF NOT
//!   EXISTS` and dropped with `DROP INDEX CONCURRENTLY IF EXISTS`, in a migration of its own
//!   whose first line is `-- no-transaction` (PostgreSQL refuses `CONCURRENTLY` in a
//!   transaction, and a multi-statement string is one) — writes go on during the build;
//!   indexes of a table created in the same migration are exempt (nobody sees it yet);
//! - migrations run in a dedicated session (a fresh one per attempt) with `lock_timeout`
//!   (`MIGRATION_LOCK_TIMEOUT_MS`, see [`session`]): DDL that cannot get its lock quickly
//!   gives up instead of queueing every request behind it, and the attempt is retried from
//!   the step that gave up, a bounded number of times (`MIGRATION_LOCK_RETRIES`);
//! - a concurrent build that gave up leaves an invalid index; it is dropped before the next
//!   attempt, so `IF NOT EXISTS` never accepts it;
//! - a down step that cannot give back what its up step holds (it drops user data, or undoes a
//!   rewrite) says so on its first line: `-- irreversible: <what reverting it loses>`. Going
//!   down across such a revision is refused before any step runs ([`irreversible`],
//!   [`Error::IrreversibleMigration`]), unless the settings allow it (a test database, a
//!   development reset): a rollback keeps that revision (older builds run on newer
//!   revisions, see [`MIN_SCHEMA`]) and a restore from a backup is the way back. `migrate
//!   --plan` prints each step and whether it is reversible;
//! - an applied migration's text is never edited, because sqlx refuses a database whose
//!   recorded checksum differs. Revisions 5 and 6 were released with plain `CREATE INDEX` and
//!   amended to the online form (same index): [`AMENDED`] lists their released checksums,
//!   which [`migrate_to`] replaces by the current ones. Do not add to that list; write a new
//!   migration instead.

pub mod index_ddl;
pub mod session;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use session::Settings;

use crate::{Error, Result};

/// The migrations in `api-server/migrations`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The oldest schema revision this build's code works with: `serve` is not ready below it.
///
/// Revision 7 is the last one that adds something the code reads or writes: tables `users`
/// (1), `lists`, `list_members`, `items` (2), `outbox_events`, `processed_events` (3),
/// `suggestion_requests` (4), and `users.token_version` and `list_invitations` (7, read by
/// login, every authenticated request, logout, sharing and registration). Revisions 5, 6, 8,
/// 9 and 11 only add indexes; the code runs the same without them. Revision 10 adds
/// attachments, an optional feature: below it their endpoints answer 503 naming the revision
/// ([`crate::store::ATTACHMENTS_SCHEMA`]) and the janitor waits, while everything else
/// serves. Raise this (one constant; the tests derive from it) when the code starts to need a
/// newer revision's tables or columns everywhere.
/// Revisions newer than [`head`] are accepted (expand/contract: a rollback runs older code on
/// a newer schema).
pub const MIN_SCHEMA: i64 = 7;

/// The revisions this binary knows, ascending.
pub fn known_revisions() -> Vec<i64> {
    let mut v: Vec<i64> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The newest revision this binary knows.
pub fn head() -> i64 {
    known_revisions().last().copied().unwrap_or(0)
}

/// Why reverting `revision` would lose data, when its down step declares it
/// (`-- irreversible: <why>` as its first line); `None` for a reversible step.
pub fn irreversible(revision: i64) -> Option<String> {
    let down = MIGRATOR
        .iter()
        .find(|m| m.version == revision && m.migration_type.is_down_migration())?;
    down.sql
        .as_str()
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("-- irreversible:"))
        .map(|why| why.trim().to_owned())
}

/// One step of a move between revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The revision applied (up) or reverted (down).
    pub revision: i64,
    /// Up (apply) or down (revert).
    pub up: bool,
    /// For a down step that declares it: what reverting it loses.
    pub irreversible: Option<String>,
}

/// The steps from revision `from` to `to`, in order.
pub fn plan(from: i64, to: i64) -> Vec<Step> {
    let known = known_revisions();
    if to >= from {
        known
            .into_iter()
            .filter(|r| *r > from && *r <= to)
            .map(|revision| Step {
                revision,
                up: true,
                irreversible: None,
            })
            .collect()
    } else {
        known
            .into_iter()
            .rev()
            .filter(|r| *r <= from && *r > to)
            .map(|revision| Step {
                revision,
                up: false,
                irreversible: irreversible(revision),
            })
            .collect()
    }
}

/// The revision the database is at (0 when nothing is applied).
pub async fn current(pool: &PgPool) -> Result<i64> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await
            .map_err(Error::db("reading the migrations table"))?;
    if !exists {
        return Ok(0);
    }
    let rev: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(Error::db("reading the schema revision"))?;
    Ok(rev.unwrap_or(0))
}

/// Migrations amended after release without changing the schema they make (plain index
/// builds rewritten as concurrent ones): version and the SHA-384 checksum sqlx recorded for
/// the released text (kept in `tests/fixtures/released/`).
pub const AMENDED: &[(i64, &str)] = &[
    (
        5,
        "b35ba24f69ea1fe36e22d4fdfa73ff1c6e0537fbf92ec4efe7ce4daf58555d29cedf3a877263b25ceab3c8755f268d9a",
    ),
    (
        6,
        "213d9a45214e892a2c7157aaffa9c0a967a64edc31510536394212d25da7de8bb51f7e03c35508bbe908cf4d2c7187de",
    ),
];

/// Records the current checksum of each [`AMENDED`] migration applied with its released text,
/// so sqlx accepts the database. Only the exact released checksum is replaced.
async fn reconcile_amended(conn: &PgPool) -> sqlx::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(conn)
            .await?;
    if !exists {
        return Ok(());
    }
    for (version, released) in AMENDED {
        let Some(current) = MIGRATOR
            .iter()
            .find(|m| m.version == *version && m.migration_type.is_up_migration())
        else {
            continue;
        };
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND encode(checksum, 'hex') = $3",
        )
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(released)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// The indexes this binary's migrations build concurrently.
fn concurrent_index_names() -> Vec<String> {
    MIGRATOR
        .iter()
        .flat_map(|m| index_ddl::index_statements(m.sql.as_str()))
        .filter(|d| d.create && d.concurrently)
        .flat_map(|d| d.names)
        .collect()
}

/// Drops invalid indexes our concurrent builds left behind (a build that gave up on a lock or
/// was killed), so that `CREATE INDEX CONCURRENTLY IF NOT EXISTS` builds them again.
async fn drop_failed_builds(conn: &PgPool) -> sqlx::Result<()> {
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE NOT i.indisvalid AND c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)",
    )
    .bind(concurrent_index_names())
    .fetch_all(conn)
    .await?;
    for name in invalid {
        tracing::warn!(index = %name, "dropping an invalid index left by a failed concurrent build");
        // The name comes from pg_class and matches one of our migrations' index names.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS \"{}\"",
            name.replace('"', "\"\"")
        )))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// One attempt in a fresh session: clean up, then move from `from` to `target`.
async fn attempt(
    pool: &PgPool,
    settings: &Settings,
    from: i64,
    target: i64,
) -> std::result::Result<(), sqlx::migrate::MigrateError> {
    let session = session::connect(pool, settings).await?;
    let result = async {
        reconcile_amended(&session).await?;
        drop_failed_builds(&session).await?;
        if target > from {
            MIGRATOR.run_to(target, &session).await
        } else if target < from {
            MIGRATOR.undo(&session, target).await
        } else {
            Ok(())
        }
    }
    .await;
    // Closing the session also releases the migrator's advisory lock, which sqlx keeps when a
    // step fails.
    session.close().await;
    result
}

/// What [`migrate_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Revision before.
    pub from: i64,
    /// Revision after.
    pub to: i64,
}

/// [`migrate_with`] and the default [`Settings`].
pub async fn migrate_to(pool: &PgPool, target: Option<i64>) -> Result<Outcome> {
    migrate_with(pool, target, &Settings::default()).await
}

/// Refuses a move from `from` down to `target` across an irreversible revision (unless the
/// settings allow it), naming the lowest one: a backup from before it is the way back.
fn refuse_irreversible(settings: &Settings, from: i64, target: i64) -> Result<()> {
    if settings.allow_irreversible {
        return Ok(());
    }
    // The plan goes down in order: the lowest irreversible revision comes last.
    match plan(from, target)
        .into_iter()
        .rev()
        .find_map(|s| s.irreversible.map(|why| (s.revision, why)))
    {
        Some((revision, why)) => Err(Error::IrreversibleMigration {
            revision,
            why,
            current: from,
            target,
        }),
        None => Ok(()),
    }
}

/// Waits, up to `wait`, while the database is in recovery: a PostgreSQL just restored (it
/// replays WAL, then promotes) or a standby being promoted accepts sessions, and is ready to
/// a TCP or `pg_isready` probe, before it takes writes.
async fn wait_writable(pool: &PgPool, wait: std::time::Duration) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(pool)
            .await
            .map_err(|source| Error::Database {
                context: "asking whether the database is in recovery",
                source,
            })?;
        if !in_recovery {
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(Error::DatabaseInRecovery {
                waited_secs: started.elapsed().as_secs(),
            });
        }
        tracing::info!(
            "the database is in recovery (read-only, being restored or promoted): waiting for it to take writes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// [`migrate_to`], going down across irreversible revisions too: for a test database or a
/// development reset, whose data may go.
pub async fn reset_to(pool: &PgPool, target: Option<i64>) -> Result<Outcome> {
    let settings = Settings {
        allow_irreversible: true,
        ..Settings::default()
    };
    migrate_with(pool, target, &settings).await
}

/// Moves the schema to `target` (default: head), up or down, one step at a time, in migration
/// sessions with `lock_timeout`; a step that times out on a lock is retried
/// `settings.retries` times with a growing pause, then reported.
pub async fn migrate_with(
    pool: &PgPool,
    target: Option<i64>,
    settings: &Settings,
) -> Result<Outcome> {
    let known = known_revisions();
    let target = target.unwrap_or_else(head);
    if target != 0 && !known.contains(&target) {
        return Err(Error::UnknownRevision {
            requested: target,
            known,
        });
    }
    wait_writable(pool, settings.recovery_wait).await?;
    let from = current(pool).await?;
    if from > head() {
        // sqlx would refuse too (the applied migration is missing here); say what to do.
        return Err(Error::NewerSchema {
            current: from,
            head: head(),
        });
    }
    refuse_irreversible(settings, from, target)?;
    let context = if target >= from {
        format!("applying up to revision {target}")
    } else {
        format!("reverting down to revision {target}")
    };
    let mut tries = 0u32;
    loop {
        // Each attempt starts where the last one stopped (steps are recorded one by one).
        let at = current(pool).await?;
        // Again on every attempt: another `migrate` may have moved the schema meanwhile.
        refuse_irreversible(settings, at, target)?;
        match attempt(pool, settings, at, target).await {
            Ok(()) => break,
            Err(source) if session::is_lock_timeout(&source) => {
                if tries >= settings.retries {
                    return Err(Error::MigrationLockTimeout {
                        context,
                        attempts: tries + 1,
                        lock_timeout_ms: settings.lock_timeout.as_millis(),
                        source,
                    });
                }
                tries += 1;
                let delay = settings.delay(tries);
                tracing::warn!(error = %source, retry = tries, retry_in_ms = delay.as_millis() as u64, "migration gave up waiting for a lock; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(source) => return Err(Error::Migrate { context, source }),
        }
    }
    let to = current(pool).await?;
    Ok(Outcome { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The online rule of the module documentation, for every migration this binary has.
    #[test]
    fn indexes_on_existing_tables_are_built_and_dropped_concurrently_outside_a_transaction() {
        let mut checked = 0;
        for m in MIGRATOR.iter() {
            let sql = m.sql.as_str();
            let new_tables = index_ddl::created_tables(sql);
            let up = m.migration_type.is_up_migration();
            let what = format!(
                "migration {} ({})",
                m.version,
                if up { "up" } else { "down" }
            );
            for ddl in index_ddl::index_statements(sql) {
                checked += 1;
                let on_new_table =
                    up && ddl.create && ddl.table.as_ref().is_some_and(|t| new_tables.contains(t));
                if on_new_table {
                    continue;
                }
                assert!(
                    ddl.concurrently,
                    "{what}: {ddl:?} must use CONCURRENTLY (the table exists and takes writes)"
                );
                assert!(
                    if ddl.create {
                        sql.contains("IF NOT EXISTS")
                    } else {
                        sql.contains("IF EXISTS")
                    },
                    "{what}: a concurrent index statement is retried, so it says IF [NOT] EXISTS"
                );
            }
            let concurrent = index_ddl::index_statements(sql)
                .iter()
                .any(|d| d.concurrently);
            if concurrent {
                assert!(
                    m.no_tx,
                    "{what}: CONCURRENTLY needs `-- no-transaction` as the first line"
                );
                assert_eq!(
                    index_ddl::statements(sql).len(),
                    1,
                    "{what}: a no-transaction migration holds one statement (several would run as one implicit transaction)"
                );
            }
        }
        assert!(
            checked >= 2,
            "no index statement found: the reader is broken"
        );
    }

    #[test]
    fn only_the_listed_migrations_were_amended_and_their_released_text_is_kept() {
        let released = [
            (
                5,
                include_str!("../tests/fixtures/released/0005_outbox_purge_index.up.sql"),
            ),
            (
                6,
                include_str!("../tests/fixtures/released/0006_dedup_purge_index.up.sql"),
            ),
        ];
        assert_eq!(released.len(), AMENDED.len());
        for ((version, text), (amended, checksum)) in released.iter().zip(AMENDED) {
            assert_eq!(version, amended);
            let m = sqlx::migrate::Migration::new(
                *version,
                "released".into(),
                sqlx::migrate::MigrationType::ReversibleUp,
                sqlx::SqlSafeStr::into_sql_str(*text),
                false,
            );
            assert_eq!(hex(&m.checksum), *checksum, "revision {version}");
            // Same index, built online now.
            let old = index_ddl::index_statements(text);
            let new = MIGRATOR
                .iter()
                .find(|m| m.version == *version && m.migration_type.is_up_migration())
                .map(|m| index_ddl::index_statements(m.sql.as_str()))
                .unwrap_or_default();
            assert_eq!(old.len(), 1);
            assert_eq!(new.len(), 1);
            assert_eq!(
                (&old[0].names, &old[0].table),
                (&new[0].names, &new[0].table)
            );
        }
    }

    #[test]
    fn a_down_path_reports_the_steps_that_lose_data() {
        // The revisions whose down step drops user data say so; index steps and revision 10
        // (whose down step refuses by itself while it holds attachments) do not.
        let declared: Vec<i64> = known_revisions()
            .into_iter()
            .filter(|r| irreversible(*r).is_some())
            .collect();
        assert_eq!(declared, vec![1, 2, 3, 4, 7, 13]);
        let steps = plan(13, 9);
        assert_eq!(
            steps.iter().map(|s| (s.revision, s.up)).collect::<Vec<_>>(),
            vec![(13, false), (12, false), (11, false), (10, false)]
        );
        assert!(
            steps[0]
                .irreversible
                .as_deref()
                .is_some_and(|w| w.contains("transfer"))
        );
        assert!(steps[1..].iter().all(|s| s.irreversible.is_none()));
        assert!(plan(9, 13).iter().all(|s| s.up && s.irreversible.is_none()));
        assert!(plan(11, 11).is_empty());
    }

    #[test]
    fn every_migration_is_reversible_and_numbered_without_gaps() {
        let ups = known_revisions();
        assert_eq!(ups, (1..=ups.len() as i64).collect::<Vec<_>>());
        for rev in &ups {
            assert!(
                MIGRATOR
                    .iter()
                    .any(|m| m.version == *rev && m.migration_type.is_down_migration()),
                "revision {rev} has no down migration"
            );
        }
    }
}
