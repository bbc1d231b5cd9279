//! The PostgreSQL adapter (sqlx): implements [`Store`] and [`UnitOfWork`](crate::ports::UnitOfWork).
//!
//! Ownership is enforced in the queries: every statement about a list joins the caller's
//! membership, so another user's list is indistinguishable from a missing one.

mod attachments;
mod handoff;
mod rows;
mod tx;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::domain::{ItemSummary, ListDetail, ListPage, Page, SuggestionView, User};
use crate::migrate::MIN_SCHEMA;
use crate::ports::{Store, TokenSubject};
use crate::{Error, Result};
use handoff::{Handoff, Lease};

/// The user's token version (`$1`: user id), read before every authenticated request but the
/// list read, whose statement checks it itself ([`LIST_DETAIL_QUERY`]).
const TOKEN_VERSION_QUERY: &str = "SELECT token_version FROM users WHERE id = $1";

/// The query of `GET /v1/lists/{id}` (`$1`: list id, `$2`: the caller's user id, `$3`: the
/// token version their token was issued at): the whole request's reading in one round trip
/// and one snapshot, the token's revocation check included. One row per item, then one per
/// member or pending invitation, each beside the list's row (`member` tells which; none when
/// the caller is not a member or the token is revoked), in the order the API answers them.
/// Typed columns, not JSON: the database, which every replica of the API shares, only reads
/// rows and the API writes the answer (with PostgreSQL writing the JSON it did about twice
/// the work per read: the README's `make bench-compare`). Ties are broken by id, so two
/// reads answer one order. Public so that `make bench-compare` runs the same text in
/// pgbench.
pub const LIST_DETAIL_QUERY: &str = "\
    SELECT l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role, \
      e.member, e.id AS entry_id, e.name AS item_name, e.quantity, e.unit, e.category, \
      e.note, e.checked, e.position, e.created_at AS item_created_at, \
      e.updated_at AS item_updated_at, e.email, e.role AS member_role \
    FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $2 \
    JOIN users reader ON reader.id = m.user_id AND reader.token_version = $3 \
    LEFT JOIN LATERAL ( \
      SELECT false AS member, i.id, i.name, i.quantity, i.unit, i.category, i.note, \
        i.checked, i.position, i.created_at, i.updated_at, NULL::text AS email, \
        NULL::text AS role, row_number() OVER (ORDER BY i.position, i.created_at, i.id) AS n \
      FROM items i WHERE i.list_id = l.id \
      UNION ALL \
      SELECT true, o.user_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
        o.email, o.role, row_number() OVER (ORDER BY o.role DESC, o.added_at, o.user_id) \
      FROM ( \
        SELECT p.user_id, u.email, p.role, p.added_at FROM list_members p \
          JOIN users u ON u.id = p.user_id WHERE p.list_id = l.id \
        UNION ALL \
        SELECT v.user_id, v.email, v.role, v.invited_at FROM list_invitations v \
          WHERE v.list_id = l.id \
      ) AS o \
    ) AS e ON true \
    WHERE l.id = $1 \
    ORDER BY e.member, e.n";

pub use attachments::ATTACHMENTS_SCHEMA;
pub(crate) use attachments::older_schema;
pub(crate) use rows::time;
pub use tx::PgUnitOfWork;
pub(crate) use tx::finish_suggestion_request;

/// How many connections a pool keeps open (`min`, opened by [`warm`]) and may open (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Kept open: opened before the server reports ready ([`warm`]).
    pub min: u32,
    /// At most open at once.
    pub max: u32,
}

impl From<u32> for PoolSize {
    /// At most `max`, none kept open (tools and tests).
    fn from(max: u32) -> Self {
        Self { min: 0, max }
    }
}

/// A connection pool that connects lazily (start-up does not need PostgreSQL up).
///
/// With `statement_timeout` (the server's pools: `HTTP_REQUEST_TIMEOUT_SECONDS`), PostgreSQL
/// ends any statement that runs longer: a request cut by its deadline does not leave its
/// query, its locks and its pool connection behind. Migrations set their own session.
pub fn pool(
    url: &str,
    size: impl Into<PoolSize>,
    statement_timeout: Option<std::time::Duration>,
) -> Result<PgPool> {
    let size = size.into();
    let mut options = PgConnectOptions::from_str(url)
        .map_err(Error::db("configuring the pool from DATABASE_URL"))?;
    if let Some(timeout) = statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    let fixed = size.min == size.max;
    Ok(PgPoolOptions::new()
        .max_connections(size.max)
        .min_connections(size.min)
        .acquire_timeout(std::time::Duration::from_secs(5))
        // A fixed pool keeps its connections: closing them for idleness or age (sqlx's 10
        // and 30 minutes) would have requests open their replacements, all at once for a pool
        // opened at once. A broken connection is still replaced.
        .idle_timeout((!fixed).then_some(std::time::Duration::from_secs(600)))
        .max_lifetime((!fixed).then_some(std::time::Duration::from_secs(1800)))
        // sqlx pings a connection when it takes it back (always; under load the store's
        // statements skip the pool: `handoff`) and, by default, again when it hands it out:
        // two round trips to PostgreSQL besides each query, each waking a backend. A
        // connection in steady use was just checked on its way back; only one idle for
        // PING_IDLE or longer (a restarted PostgreSQL, a cut network since) is pinged when
        // handed out, and replaced if dead (sqlx then logs a warning).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// How long a pooled connection may sit idle before it is pinged when handed out (see
/// [`pool`]).
const PING_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens connections until `pool` holds its minimum ([`PoolSize::min`]): takes the idle ones
/// and as many new ones as are missing, all at once, and gives them back. The server's
/// readiness check runs it, so a pod joins its Service with its connections open: a request
/// that finds none idle opens one itself and waits for it, whatever other requests give back
/// meanwhile, so a slow connect under the first requests would fail them after the acquire
/// timeout. Run it while the server is not ready yet: it takes the idle connections too.
pub async fn warm(pool: &PgPool) -> std::result::Result<(), sqlx::Error> {
    let min = pool.options().get_min_connections();
    let missing = min.saturating_sub(pool.size()) as usize;
    if missing == 0 {
        return Ok(());
    }
    let held =
        futures::future::try_join_all((0..missing + pool.num_idle()).map(|_| pool.acquire()))
            .await?;
    drop(held);
    Ok(())
}

/// A query that failed because a column or table it names does not exist (SQLSTATE 42703,
/// 42P01: the database is at a revision older than [`MIN_SCHEMA`]) becomes
/// [`Error::SchemaTooOld`], which names the revision and the fix and is answered 503, not 500.
pub(crate) fn schema_too_old(err: Error) -> Error {
    missing_from_schema(err, "users.token_version and list_invitations", MIN_SCHEMA)
}

/// `err` as [`Error::SchemaTooOld`] naming `what` and the revision `needs` that adds it, when
/// it is a missing column or table (SQLSTATE 42703, 42P01); unchanged otherwise.
pub(crate) fn missing_from_schema(err: Error, what: &'static str, needs: i64) -> Error {
    match &err {
        Error::Database {
            source: sqlx::Error::Database(db),
            ..
        } if matches!(db.code().as_deref(), Some("42703" | "42P01")) => {
            Error::SchemaTooOld { what, needs }
        }
        _ => err,
    }
}

/// The PostgreSQL store. Its clones share their hand-offs ([`handoff`]).
#[derive(Debug, Clone)]
pub struct PgStore {
    handoff: Arc<Handoff>,
}

impl PgStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            handoff: Arc::new(Handoff::new(pool)),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        self.handoff.pool()
    }

    /// A transaction, which waits for its connection in turn with the store's reads
    /// ([`handoff`]); for the workers that write outside [`Store`]'s unit of work.
    pub async fn transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.handoff
            .begin()
            .await
            .map_err(Error::db("starting a transaction"))
    }

    /// A connection for statements outside a transaction: handed over by one that ran to its
    /// end ([`Lease::done`]) or from the pool.
    async fn conn(&self, context: &'static str) -> Result<Lease<'_>> {
        self.handoff.acquire().await.map_err(Error::db(context))
    }
}

impl Store for PgStore {
    type Tx = PgUnitOfWork;

    #[tracing::instrument(name = "db.begin", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn begin(&self) -> Result<PgUnitOfWork> {
        Ok(PgUnitOfWork::new(self.transaction().await?))
    }

    #[tracing::instrument(name = "db.user_by_email", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let mut conn = self.conn("reading a user").await?;
        let row = sqlx::query(
            "SELECT id, email, password_hash, token_version FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("reading a user"))
        .map_err(schema_too_old)?;
        conn.done();
        row.map(|r| {
            Ok(User {
                id: r.try_get("id").map_err(Error::db("user id"))?,
                email: r.try_get("email").map_err(Error::db("user email"))?,
                password_hash: r.try_get("password_hash").map_err(Error::db("user hash"))?,
                token_version: r
                    .try_get("token_version")
                    .map_err(Error::db("user token version"))?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(name = "db.token_version", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn token_version(&self, user: Uuid) -> Result<Option<i64>> {
        let mut conn = self.conn("reading a token version").await?;
        let version = sqlx::query_scalar(TOKEN_VERSION_QUERY)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("reading a token version"))
            .map_err(schema_too_old)?;
        conn.done();
        Ok(version)
    }

    #[tracing::instrument(name = "db.my_lists", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn my_lists(&self, user: Uuid, page: Page) -> Result<ListPage> {
        let mut conn = self.conn("listing lists").await?;
        let rows = sqlx::query(
            "SELECT l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role \
             FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $1 \
             ORDER BY l.created_at DESC, l.id LIMIT $2 OFFSET $3",
        )
        .bind(user)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("listing lists"))?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM list_members WHERE user_id = $1")
            .bind(user)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("counting lists"))?;
        conn.done();
        Ok(ListPage {
            lists: rows.iter().map(rows::list_view).collect::<Result<_>>()?,
            total,
            limit: page.limit,
            offset: page.offset,
        })
    }

    #[tracing::instrument(name = "db.list_detail", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_detail(&self, reader: TokenSubject, list: Uuid) -> Result<Option<ListDetail>> {
        let mut conn = self.conn("reading a list").await?;
        let rows = sqlx::query(LIST_DETAIL_QUERY)
            .bind(list)
            .bind(reader.user)
            .bind(reader.version)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db("reading a list"))
            .map_err(schema_too_old)?;
        conn.done();
        rows::list_detail(&rows)
    }

    #[tracing::instrument(name = "db.suggestion_request", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn suggestion_request(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> Result<Option<SuggestionView>> {
        let mut conn = self.conn("reading a suggestion request").await?;
        let row = sqlx::query(
            "SELECT s.id, s.list_id, s.status, s.provider, s.suggestions, s.error, s.created_at, s.completed_at \
             FROM suggestion_requests s JOIN list_members m ON m.list_id = s.list_id AND m.user_id = $3 \
             WHERE s.id = $2 AND s.list_id = $1",
        )
        .bind(list)
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("reading a suggestion request"))?;
        conn.done();
        row.as_ref().map(rows::suggestion_view).transpose()
    }

    #[tracing::instrument(name = "db.already_processed", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn already_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        let mut conn = self.conn("reading processed events").await?;
        let processed = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)",
        )
        .bind(consumer)
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("reading processed events"))?;
        conn.done();
        Ok(processed)
    }

    #[tracing::instrument(name = "db.pending_request_items", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn pending_request_items(&self, request: Uuid) -> Result<Option<Vec<ItemSummary>>> {
        let mut conn = self.conn("reading a suggestion request").await?;
        let pending: Option<Uuid> = sqlx::query_scalar(
            "SELECT list_id FROM suggestion_requests WHERE id = $1 AND status = 'pending'",
        )
        .bind(request)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("reading a suggestion request"))?;
        let Some(list) = pending else {
            conn.done();
            return Ok(None);
        };
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, category FROM items WHERE list_id = $1 ORDER BY position")
                .bind(list)
                .fetch_all(&mut *conn)
                .await
                .map_err(Error::db("reading items for suggestions"))?;
        conn.done();
        Ok(Some(
            rows.into_iter()
                .map(|(name, category)| ItemSummary { name, category })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    /// `make bench-compare` runs [`super::LIST_DETAIL_QUERY`] in pgbench, where a colon before
    /// a name is a variable.
    #[test]
    fn no_colon_precedes_a_name_which_pgbench_would_take_for_a_variable() {
        let sql = super::LIST_DETAIL_QUERY;
        let bytes = sql.as_bytes();
        for (at, pair) in bytes.windows(2).enumerate() {
            let before = at.checked_sub(1).map(|b| bytes[b]);
            assert!(
                !(pair[0] == b':'
                    && before != Some(b':')
                    && (pair[1].is_ascii_alphanumeric() || pair[1] == b'_' || pair[1] >= 0x80)),
                "a pgbench variable at {at} in {sql}"
            );
        }
    }
}
