//! Attachments in PostgreSQL: [`AttachmentReads`] and [`AttachmentWrites`].
//!
//! The attachments table arrives with revision 10; on an older schema every statement here
//! answers [`Error::SchemaTooOld`] (503 naming the revision), while the rest of the API runs.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, PgUnitOfWork, rows};
use crate::domain::{AttachmentState, AttachmentView};
use crate::ports::{AttachmentReads, AttachmentWrites};
use crate::{Error, Result};

/// The revision that adds attachments.
pub const ATTACHMENTS_SCHEMA: i64 = 10;

const COLUMNS: &str = "a.id, a.list_id, a.item_id, a.uploader_id, a.name, a.content_type, \
     a.size_bytes, a.sha256, a.object_key, a.state, a.upload_expires_at, a.created_at, \
     a.confirmed_at";

/// A missing table or column means the schema predates attachments.
pub(crate) fn older_schema(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| {
        super::missing_from_schema(
            Error::Database { context, source },
            "attachments",
            ATTACHMENTS_SCHEMA,
        )
    }
}

fn view(row: &PgRow) -> Result<AttachmentView> {
    let get = Error::db;
    let state: String = row.try_get("state").map_err(get("attachment state"))?;
    Ok(AttachmentView {
        id: row.try_get("id").map_err(get("attachment id"))?,
        list_id: row.try_get("list_id").map_err(get("attachment list"))?,
        item_id: row.try_get("item_id").map_err(get("attachment item"))?,
        uploaded_by: row
            .try_get("uploader_id")
            .map_err(get("attachment uploader"))?,
        name: row.try_get("name").map_err(get("attachment name"))?,
        content_type: row
            .try_get("content_type")
            .map_err(get("attachment type"))?,
        size_bytes: row.try_get("size_bytes").map_err(get("attachment size"))?,
        sha256: row.try_get("sha256").map_err(get("attachment checksum"))?,
        object_key: row.try_get("object_key").map_err(get("attachment key"))?,
        state: AttachmentState::parse(&state)
            .ok_or_else(|| Error::Data(format!("unknown attachment state {state:?}")))?,
        upload_expires_at: rows::time(row, "upload_expires_at", "attachment upload expiry")?,
        created_at: rows::time(row, "created_at", "attachment created_at")?,
        confirmed_at: rows::time_or_none(row, "confirmed_at", "attachment confirmed_at")?,
    })
}

impl AttachmentReads for PgStore {
    #[tracing::instrument(name = "db.attachments", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn attachments(&self, user: Uuid, list: Uuid) -> Result<Option<Vec<AttachmentView>>> {
        let mut conn = self.conn("reading membership").await?;
        let member: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM list_members WHERE list_id = $1 AND user_id = $2")
                .bind(list)
                .bind(user)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db("reading membership"))?;
        if member.is_none() {
            conn.done();
            return Ok(None);
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments a \
             WHERE a.list_id = $1 AND a.state = 'ready' ORDER BY a.created_at, a.id"
        )))
        .bind(list)
        .fetch_all(&mut *conn)
        .await
        .map_err(older_schema("reading attachments"))?;
        conn.done();
        rows.iter().map(view).collect::<Result<Vec<_>>>().map(Some)
    }

    #[tracing::instrument(name = "db.attachment", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn attachment(&self, user: Uuid, list: Uuid, id: Uuid) -> Result<Option<AttachmentView>> {
        let mut conn = self.conn("reading an attachment").await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments a \
             JOIN list_members m ON m.list_id = a.list_id AND m.user_id = $2 \
             WHERE a.list_id = $1 AND a.id = $3"
        )))
        .bind(list)
        .bind(user)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(older_schema("reading an attachment"))?;
        conn.done();
        row.as_ref().map(view).transpose()
    }
}

impl AttachmentWrites for PgUnitOfWork {
    #[tracing::instrument(name = "db.lock_user_attachment_bytes", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_user_attachment_bytes(&mut self, user: Uuid) -> Result<i64> {
        // NO KEY: foreign key checks against the user (its other writes) do not wait.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(user)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("locking a user"))?;
        sqlx::query_scalar(
            "SELECT coalesce(sum(size_bytes), 0)::bigint FROM attachments WHERE uploader_id = $1",
        )
        .bind(user)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(older_schema("summing a user's attachments"))
    }

    #[tracing::instrument(name = "db.count_attachments", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn count_attachments(&mut self, list: Uuid) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM attachments WHERE list_id = $1")
            .bind(list)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(older_schema("counting a list's attachments"))
    }

    #[tracing::instrument(name = "db.item_in_list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn item_in_list(&mut self, list: Uuid, item: Uuid) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM items WHERE list_id = $1 AND id = $2")
                .bind(list)
                .bind(item)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(Error::db("reading an item"))?;
        Ok(found.is_some())
    }

    #[tracing::instrument(name = "db.insert_attachment", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_attachment(&mut self, a: &AttachmentView) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO attachments (id, list_id, item_id, uploader_id, name, content_type, \
             size_bytes, sha256, object_key, state, upload_expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(a.id)
        .bind(a.list_id)
        .bind(a.item_id)
        .bind(a.uploaded_by)
        .bind(&a.name)
        .bind(&a.content_type)
        .bind(a.size_bytes)
        .bind(&a.sha256)
        .bind(&a.object_key)
        .bind(a.state.as_str())
        .bind(a.upload_expires_at)
        .bind(a.created_at)
        .execute(&mut *self.tx)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            // A foreign key violation: the list, item or user is gone.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => Ok(false),
            Err(e) => Err(older_schema("recording an attachment")(e)),
        }
    }

    #[tracing::instrument(name = "db.confirm_attachment", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn confirm_attachment(&mut self, list: Uuid, id: Uuid) -> Result<Option<AttachmentView>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE attachments a SET state = 'ready', confirmed_at = coalesce(a.confirmed_at, now()) \
             WHERE a.list_id = $1 AND a.id = $2 RETURNING {COLUMNS}"
        )))
        .bind(list)
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(older_schema("confirming an attachment"))?;
        row.as_ref().map(view).transpose()
    }

    #[tracing::instrument(name = "db.delete_attachment", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_attachment(&mut self, list: Uuid, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM attachments WHERE list_id = $1 AND id = $2")
            .bind(list)
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(older_schema("deleting an attachment"))?;
        Ok(done.rows_affected() == 1)
    }
}
