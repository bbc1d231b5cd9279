//! Schema migrations: numbered, reversible, one transaction per step.
//!
//! The schema revision is the number of the last applied migration (0 = empty schema).
//! `migrate --to N` moves up or down to N; this is what the operator's migration and
//! schema-revert Jobs run.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::{Error, Result};

/// The migrations in `api-server/migrations`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

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

/// What [`migrate_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Revision before.
    pub from: i64,
    /// Revision after.
    pub to: i64,
}

/// Moves the schema to `target` (default: head), up or down, one transaction per step.
pub async fn migrate_to(pool: &PgPool, target: Option<i64>) -> Result<Outcome> {
    let known = known_revisions();
    let target = target.unwrap_or_else(head);
    if target != 0 && !known.contains(&target) {
        return Err(Error::UnknownRevision {
            requested: target,
            known,
        });
    }
    let from = current(pool).await?;
    if from > head() {
        // sqlx would refuse too (the applied migration is missing here); say what to do.
        return Err(Error::NewerSchema {
            current: from,
            head: head(),
        });
    }
    if target > from {
        MIGRATOR
            .run_to(target, pool)
            .await
            .map_err(|source| Error::Migrate {
                context: format!("applying up to revision {target}"),
                source,
            })?;
    } else if target < from {
        MIGRATOR
            .undo(pool, target)
            .await
            .map_err(|source| Error::Migrate {
                context: format!("reverting down to revision {target}"),
                source,
            })?;
    }
    let to = current(pool).await?;
    Ok(Outcome { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

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
