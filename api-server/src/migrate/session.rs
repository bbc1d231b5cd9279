//! The session a migration runs in: its own connection, with `lock_timeout` set, so that DDL
//! waiting for a lock gives up quickly instead of queueing every request behind it; and the
//! bounded retry after such a give-up.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// `application_name` of migration sessions (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "listacompra-migrate";

/// Default `MIGRATION_LOCK_TIMEOUT_MS`: below the 350 ms request KPI, so a request queued
/// behind a migration's lock request waits at most this long for it.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// Default `MIGRATION_LOCK_RETRIES`.
pub const DEFAULT_LOCK_RETRIES: u32 = 10;

/// PostgreSQL's SQLSTATE for "lock_not_available" (what `lock_timeout` raises).
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How migration sessions wait for locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `MIGRATION_LOCK_TIMEOUT_MS`: `lock_timeout` of the migration session.
    pub lock_timeout: Duration,
    /// `MIGRATION_LOCK_RETRIES`: further attempts after a lock timeout.
    pub retries: u32,
    /// Pause before the first retry; doubles up to 5 s.
    pub retry_delay: Duration,
    /// `MIGRATION_ALLOW_IRREVERSIBLE`: go down across revisions whose down step loses data
    /// (see [`super::irreversible`]). Off by default: only for a database whose data may go.
    pub allow_irreversible: bool,
    /// `MIGRATION_RECOVERY_WAIT_SECONDS`: how long to wait for a database in recovery
    /// (read-only: just restored, or a standby being promoted) to take writes.
    pub recovery_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            retries: DEFAULT_LOCK_RETRIES,
            retry_delay: Duration::from_millis(250),
            allow_irreversible: false,
            recovery_wait: Duration::from_secs(300),
        }
    }
}

impl Settings {
    /// The pause before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(8);
        (self.retry_delay * factor).min(Duration::from_secs(5))
    }
}

/// A pool of one new connection to `pool`'s database (one session: the migrator's advisory
/// lock, the DDL and the bookkeeping share it), with `lock_timeout` set at start-up.
/// `statement_timeout` is left off: a concurrent index build on a big table may legitimately
/// take long, and it blocks no one. Close it after use: that ends the session.
pub async fn connect(pool: &PgPool, settings: &Settings) -> sqlx::Result<PgPool> {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(APPLICATION_NAME)
        .options([
            (
                "lock_timeout",
                format!("{}ms", settings.lock_timeout.as_millis()),
            ),
            // An index build may take long; only a lock wait is bounded.
            ("statement_timeout", "0".to_owned()),
        ]);
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect_with(options)
        .await
}

/// Whether `err` is a lock timeout (SQLSTATE 55P03) in a migration session.
pub fn is_lock_timeout(err: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    let sql = match err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e,
        _ => return false,
    };
    sql.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == LOCK_NOT_AVAILABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_five_seconds() {
        let s = Settings::default();
        assert_eq!(s.delay(1), Duration::from_millis(250));
        assert_eq!(s.delay(2), Duration::from_millis(500));
        assert_eq!(s.delay(5), Duration::from_secs(4));
        assert_eq!(s.delay(6), Duration::from_secs(5));
        assert_eq!(s.delay(60), Duration::from_secs(5));
        assert!(s.lock_timeout < Duration::from_millis(350));
    }
}
