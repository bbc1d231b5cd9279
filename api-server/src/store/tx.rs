//! One PostgreSQL transaction as a [`UnitOfWork`].

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::rows::{self, ITEM_COLUMNS, SUGGESTION_COLUMNS};
use crate::domain::{
    ItemFields, ItemPatch, ItemView, ListView, NewEvent, Role, Suggestion, SuggestionView,
};
use crate::outbox;
use crate::ports::UnitOfWork;
use crate::{Error, Result};

/// A `(id, role)` pair from a role column.
fn parse_role(id: Uuid, role: &str) -> Result<(Uuid, Role)> {
    Role::parse(role)
        .map(|r| (id, r))
        .ok_or_else(|| Error::Data(format!("unknown role {role:?} in the database")))
}

/// A transaction; dropped without [`UnitOfWork::commit`], it rolls back.
#[derive(Debug)]
pub struct PgUnitOfWork {
    pub(super) tx: Transaction<'static, Postgres>,
}

impl PgUnitOfWork {
    pub(super) fn new(tx: Transaction<'static, Postgres>) -> Self {
        Self { tx }
    }
}

impl UnitOfWork for PgUnitOfWork {
    #[tracing::instrument(name = "db.role", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn role(&mut self, list: Uuid, user: Uuid) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM list_members WHERE list_id = $1 AND user_id = $2")
            .bind(list)
            .bind(user)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(Error::db("reading membership"))?;
        row.as_ref().map(rows::role_of).transpose()
    }

    #[tracing::instrument(name = "db.insert_user", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_user(&mut self, id: Uuid, email: &str, password_hash: &str) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) \
             ON CONFLICT ((lower(email))) DO NOTHING",
        )
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::db("inserting a user"))?;
        Ok(inserted.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db.revoke_tokens", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn revoke_tokens(&mut self, user: Uuid) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE id = $1")
            .bind(user)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("revoking tokens"))
            .map_err(super::schema_too_old)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db.invite", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn invite(&mut self, list: Uuid, email: &str, role: Role) -> Result<Option<Uuid>> {
        sqlx::query_scalar(
            "INSERT INTO list_invitations (list_id, user_id, email, role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (list_id, lower(email)) DO NOTHING RETURNING user_id",
        )
        .bind(list)
        .bind(Uuid::new_v4())
        .bind(email)
        .bind(role.as_str())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("recording an invitation"))
        .map_err(super::schema_too_old)
    }

    #[tracing::instrument(name = "db.claim_invitations", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn claim_invitations(&mut self, user: Uuid, email: &str) -> Result<Vec<(Uuid, Role)>> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "WITH claimed AS (DELETE FROM list_invitations WHERE lower(email) = lower($2) \
               RETURNING list_id, role) \
             INSERT INTO list_members (list_id, user_id, role) SELECT list_id, $1, role FROM claimed \
             ON CONFLICT (list_id, user_id) DO NOTHING RETURNING list_id, role",
        )
        .bind(user)
        .bind(email)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(Error::db("claiming invitations"))
            .map_err(super::schema_too_old)?;
        rows.into_iter()
            .map(|(list, role)| parse_role(list, &role))
            .collect()
    }

    #[tracing::instrument(name = "db.lock_invitations", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_invitations(&mut self, list: Uuid) -> Result<Vec<(Uuid, Role)>> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT user_id, role FROM list_invitations WHERE list_id = $1 FOR UPDATE",
        )
        .bind(list)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(Error::db("locking invitations"))
        .map_err(super::schema_too_old)?;
        rows.into_iter()
            .map(|(id, role)| parse_role(id, &role))
            .collect()
    }

    #[tracing::instrument(name = "db.find_user", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn find_user(&mut self, email: &str) -> Result<Option<(Uuid, String)>> {
        sqlx::query_as("SELECT id, email FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(Error::db("finding a user by e-mail"))
    }

    #[tracing::instrument(name = "db.insert_list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_list(&mut self, owner: Uuid, name: &str) -> Result<Option<ListView>> {
        let id = Uuid::new_v4();
        let row = sqlx::query(
            "INSERT INTO lists (id, owner_id, name) \
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2) \
             RETURNING id, owner_id, name, created_at, updated_at, 'owner' AS role",
        )
        .bind(id)
        .bind(owner)
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("inserting a list"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query("INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(owner)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("inserting the owner"))?;
        rows::list_view(&row).map(Some)
    }

    #[tracing::instrument(name = "db.rename_list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn rename_list(
        &mut self,
        owner: Uuid,
        list: Uuid,
        name: &str,
    ) -> Result<Option<ListView>> {
        let row = sqlx::query(
            "UPDATE lists l SET name = $3, updated_at = now() FROM list_members m \
             WHERE l.id = $1 AND m.list_id = l.id AND m.user_id = $2 AND m.role = 'owner' \
             RETURNING l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role",
        )
        .bind(list)
        .bind(owner)
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("renaming a list"))?;
        row.as_ref().map(rows::list_view).transpose()
    }

    #[tracing::instrument(name = "db.delete_list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_list(&mut self, owner: Uuid, list: Uuid) -> Result<bool> {
        // The creator only (`owner_id`), whatever the caller checked before.
        let done = sqlx::query("DELETE FROM lists WHERE id = $1 AND owner_id = $2")
            .bind(list)
            .bind(owner)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("deleting a list"))?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db.lock_list_counts", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_list_counts(&mut self, list: Uuid) -> Result<(i64, i64)> {
        sqlx::query("SELECT 1 FROM lists WHERE id = $1 FOR UPDATE")
            .bind(list)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("locking a list"))?;
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM items WHERE list_id = $1), \
                    (SELECT count(*) FROM list_members WHERE list_id = $1) \
                  + (SELECT count(*) FROM list_invitations WHERE list_id = $1)",
        )
        .bind(list)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(Error::db("counting a list's items and members"))
        .map_err(super::schema_too_old)
    }

    #[tracing::instrument(name = "db.lock_user_count_lists", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_user_count_lists(&mut self, user: Uuid) -> Result<i64> {
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("locking a user"))?;
        sqlx::query_scalar("SELECT count(*) FROM lists WHERE owner_id = $1")
            .bind(user)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(Error::db("counting a user's lists"))
    }

    #[tracing::instrument(name = "db.list_creator", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn list_creator(&mut self, list: Uuid, user: Uuid) -> Result<Option<Uuid>> {
        sqlx::query_scalar(
            "SELECT l.owner_id FROM lists l \
             JOIN list_members m ON m.list_id = l.id AND m.user_id = $2 WHERE l.id = $1",
        )
        .bind(list)
        .bind(user)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("reading a list's creator"))
    }

    #[tracing::instrument(name = "db.lock_members", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_members(&mut self, list: Uuid) -> Result<Vec<(Uuid, Role)>> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT user_id, role FROM list_members WHERE list_id = $1 FOR UPDATE")
                .bind(list)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(Error::db("locking members"))?;
        rows.into_iter()
            .map(|(id, role)| {
                Role::parse(&role)
                    .map(|r| (id, r))
                    .ok_or_else(|| Error::Data(format!("unknown role {role:?} in the database")))
            })
            .collect()
    }

    #[tracing::instrument(name = "db.offer_transfer", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn offer_transfer(&mut self, list: Uuid, from: Uuid, to: Uuid) -> Result<()> {
        sqlx::query(
            "INSERT INTO list_transfer_offers (list_id, from_id, to_id) VALUES ($1, $2, $3) \
             ON CONFLICT (list_id) DO UPDATE SET from_id = $2, to_id = $3, offered_at = now()",
        )
        .bind(list)
        .bind(from)
        .bind(to)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::db("offering a list"))
        .map_err(transfer_offers_missing)?;
        Ok(())
    }

    #[tracing::instrument(name = "db.take_transfer_offer", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn take_transfer_offer(&mut self, list: Uuid, to: Uuid) -> Result<Option<Uuid>> {
        // Only an offer made while the recipient is the member they are now: removing them
        // withdraws it, and sharing the list with them again does not bring it back.
        sqlx::query_scalar(
            "DELETE FROM list_transfer_offers o WHERE o.list_id = $1 AND o.to_id = $2 \
             AND o.offered_at >= (SELECT m.added_at FROM list_members m \
                                  WHERE m.list_id = $1 AND m.user_id = $2) \
             RETURNING o.from_id",
        )
        .bind(list)
        .bind(to)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("taking a list's offer"))
        .map_err(transfer_offers_missing)
    }

    #[tracing::instrument(name = "db.transfer_list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn transfer_list(
        &mut self,
        list: Uuid,
        from: Uuid,
        to: Uuid,
    ) -> Result<Option<ListView>> {
        sqlx::query("UPDATE list_members SET role = 'owner' WHERE list_id = $1 AND user_id = $2")
            .bind(list)
            .bind(to)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("making the new creator an owner"))?;
        let row = sqlx::query(
            "UPDATE lists l SET owner_id = $3, updated_at = now() FROM list_members m \
             WHERE l.id = $1 AND l.owner_id = $2 AND m.list_id = l.id AND m.user_id = $2 \
             RETURNING l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role",
        )
        .bind(list)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("transferring a list"))?;
        row.as_ref().map(rows::list_view).transpose()
    }

    #[tracing::instrument(name = "db.add_member", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn add_member(&mut self, list: Uuid, user: Uuid, role: Role) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (list_id, user_id) DO NOTHING",
        )
        .bind(list)
        .bind(user)
        .bind(role.as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(Error::db("adding a member"))?;
        Ok(inserted.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db.remove_member", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn remove_member(&mut self, list: Uuid, user: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM list_members WHERE list_id = $1 AND user_id = $2")
            .bind(list)
            .bind(user)
            .execute(&mut *self.tx)
            .await
            .map_err(Error::db("removing a member"))?;
        let invitation =
            sqlx::query("DELETE FROM list_invitations WHERE list_id = $1 AND user_id = $2")
                .bind(list)
                .bind(user)
                .execute(&mut *self.tx)
                .await
                .map_err(Error::db("removing an invitation"))
                .map_err(super::schema_too_old)?;
        Ok(done.rows_affected() + invitation.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db.append_item", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn append_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: &ItemFields,
    ) -> Result<Option<ItemView>> {
        // Lock the list (if the caller is a member) so concurrent appends get unique positions.
        let member: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $2 \
             WHERE l.id = $1 FOR UPDATE OF l",
        )
        .bind(list)
        .bind(user)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("locking a list"))?;
        if member.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO items (id, list_id, name, quantity, unit, category, note, position) \
             SELECT $1, $2, $3, $4, $5, $6, $7, coalesce(max(position) + 1, 0) FROM items WHERE list_id = $2 \
             RETURNING {ITEM_COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(list)
        .bind(&item.name)
        .bind(item.quantity)
        .bind(&item.unit)
        .bind(&item.category)
        .bind(&item.note)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(Error::db("inserting an item"))?;
        rows::item_view(&row).map(Some)
    }

    #[tracing::instrument(name = "db.update_item", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn update_item(
        &mut self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
        patch: &ItemPatch,
    ) -> Result<Option<ItemView>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE items SET \
               name = coalesce($3, name), \
               quantity = coalesce($4, quantity), \
               unit = CASE WHEN $5 THEN $6 ELSE unit END, \
               category = CASE WHEN $7 THEN $8 ELSE category END, \
               note = CASE WHEN $9 THEN $10 ELSE note END, \
               checked = coalesce($11, checked), \
               updated_at = now() \
             WHERE id = $2 AND list_id = $1 \
               AND EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = $1 AND m.user_id = $12) \
             RETURNING {ITEM_COLUMNS}"
        )))
        .bind(list)
        .bind(item)
        .bind(&patch.name)
        .bind(patch.quantity)
        .bind(patch.unit.is_some())
        .bind(patch.unit.clone().flatten())
        .bind(patch.category.is_some())
        .bind(patch.category.clone().flatten())
        .bind(patch.note.is_some())
        .bind(patch.note.clone().flatten())
        .bind(patch.checked)
        .bind(user)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("updating an item"))?;
        row.as_ref().map(rows::item_view).transpose()
    }

    #[tracing::instrument(name = "db.delete_item", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn delete_item(&mut self, user: Uuid, list: Uuid, item: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM items WHERE id = $2 AND list_id = $1 \
             AND EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = $1 AND m.user_id = $3)",
        )
        .bind(list)
        .bind(item)
        .bind(user)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::db("deleting an item"))?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db.lock_item_ids", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn lock_item_ids(&mut self, list: Uuid) -> Result<Vec<Uuid>> {
        sqlx::query_scalar("SELECT id FROM items WHERE list_id = $1 FOR UPDATE")
            .bind(list)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(Error::db("locking items"))
    }

    #[tracing::instrument(name = "db.set_order", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn set_order(&mut self, list: Uuid, order: &[Uuid]) -> Result<Vec<ItemView>> {
        sqlx::query(
            "UPDATE items i SET position = o.pos - 1, updated_at = now() \
             FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, pos) \
             WHERE i.id = o.id AND i.list_id = $1",
        )
        .bind(list)
        .bind(order)
        .execute(&mut *self.tx)
        .await
        .map_err(Error::db("reordering items"))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE list_id = $1 ORDER BY position"
        )))
        .bind(list)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(Error::db("reading items"))?;
        rows::item_views(&rows)
    }

    #[tracing::instrument(name = "db.insert_suggestion_request", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn insert_suggestion_request(
        &mut self,
        user: Uuid,
        list: Uuid,
    ) -> Result<Option<SuggestionView>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO suggestion_requests (id, list_id, requested_by) \
             SELECT $1, $2, $3 WHERE EXISTS \
               (SELECT 1 FROM list_members m WHERE m.list_id = $2 AND m.user_id = $3) \
             RETURNING {SUGGESTION_COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(list)
        .bind(user)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(Error::db("inserting a suggestion request"))?;
        row.as_ref().map(rows::suggestion_view).transpose()
    }

    #[tracing::instrument(name = "db.first_delivery", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn first_delivery(&mut self, consumer: &str, event_id: Uuid) -> Result<bool> {
        outbox::first_delivery(&mut self.tx, consumer, event_id).await
    }

    #[tracing::instrument(name = "db.finish_suggestion_request", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn finish_suggestion_request(
        &mut self,
        request: Uuid,
        provider: &str,
        outcome: &std::result::Result<Vec<Suggestion>, String>,
    ) -> Result<bool> {
        finish_suggestion_request(&mut self.tx, request, Some(provider), outcome).await
    }

    #[tracing::instrument(name = "db.publish", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn publish(&mut self, event: &NewEvent) -> Result<()> {
        outbox::enqueue(
            &mut self.tx,
            event.event_type,
            event.aggregate_id,
            event.payload.clone(),
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(name = "db.commit", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(Error::db("committing"))
    }
}

/// The revision that adds ownership transfer offers (`list_transfer_offers`).
pub const TRANSFER_OFFERS_SCHEMA: i64 = 13;

/// A missing `list_transfer_offers` table: the schema predates transfer offers (503 naming
/// the revision; the rest of the API serves).
fn transfer_offers_missing(err: Error) -> Error {
    super::missing_from_schema(err, "list_transfer_offers", TRANSFER_OFFERS_SCHEMA)
}

/// Records how a pending suggestion request ended (its suggestions, or why it failed), once:
/// a request that already ended is left as it is (false). The AI worker's use case records
/// its results so, and the outbox relay the failure of a request whose event it gave up on.
pub(crate) async fn finish_suggestion_request(
    tx: &mut Transaction<'static, Postgres>,
    request: Uuid,
    provider: Option<&str>,
    outcome: &std::result::Result<Vec<Suggestion>, String>,
) -> Result<bool> {
    let (status, suggestions, error) = match outcome {
        Ok(list) => (
            "done",
            Some(serde_json::to_value(list).map_err(Error::json("encoding suggestions"))?),
            None,
        ),
        Err(err) => ("failed", None, Some(err.as_str())),
    };
    let done = sqlx::query(
        "UPDATE suggestion_requests SET status = $2, provider = $3, suggestions = $4, \
         error = $5, completed_at = now() WHERE id = $1 AND status = 'pending'",
    )
    .bind(request)
    .bind(status)
    .bind(provider)
    .bind(suggestions)
    .bind(error)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("recording a suggestion result"))?;
    Ok(done.rows_affected() == 1)
}
