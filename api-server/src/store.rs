//! The PostgreSQL adapter: users, lists, members, items and suggestion requests.
//!
//! Ownership is enforced in the queries: every statement about a list joins the caller's
//! membership, so another user's list is indistinguishable from a missing one (404).
//! Every change writes its event to the outbox in the same transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{self, ItemFields, ItemPatch, ItemSummary, Page, Role, Suggestion};
use crate::error::AppError;
use crate::outbox;
use crate::{Error, Result};

type AppResult<T> = std::result::Result<T, AppError>;

/// A connection pool that connects lazily (start-up does not need PostgreSQL up).
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy(url)
        .map_err(Error::db("configuring the pool from DATABASE_URL"))
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Normalised e-mail.
    pub email: String,
    /// PHC string.
    pub password_hash: String,
}

/// A list as its members see it.
#[derive(Debug, Clone, Serialize)]
pub struct ListView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Who created it.
    pub owner_id: Uuid,
    /// The caller's role.
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last renamed or changed.
    pub updated_at: DateTime<Utc>,
}

/// An item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Quantity.
    pub quantity: f64,
    /// Unit.
    pub unit: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Ticked off.
    pub checked: bool,
    /// Order in the list (0-based).
    pub position: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A member of a list.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// User id.
    pub user_id: Uuid,
    /// E-mail.
    pub email: String,
    /// Role.
    pub role: Role,
}

/// A list with its items and members.
#[derive(Debug, Clone, Serialize)]
pub struct ListDetail {
    /// The list.
    #[serde(flatten)]
    pub list: ListView,
    /// Items in order.
    pub items: Vec<ItemView>,
    /// Members (owners first).
    pub members: Vec<MemberView>,
}

/// One page of lists.
#[derive(Debug, Clone, Serialize)]
pub struct ListPage {
    /// The lists, newest first.
    pub lists: Vec<ListView>,
    /// All lists of the caller.
    pub total: i64,
    /// The page size asked for.
    pub limit: i64,
    /// The offset asked for.
    pub offset: i64,
}

/// A suggestion request and, once done, its results.
#[derive(Debug, Clone, Serialize)]
pub struct SuggestionView {
    /// Id.
    pub id: Uuid,
    /// The list.
    pub list_id: Uuid,
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// Which provider answered.
    pub provider: Option<String>,
    /// The suggestions, when done.
    pub suggestions: Option<Vec<Suggestion>>,
    /// Why it failed.
    pub error: Option<String>,
    /// Requested.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
}

fn role_of(row: &PgRow) -> Result<Role> {
    let s: String = row.try_get("role").map_err(Error::db("reading a role"))?;
    Role::parse(&s).ok_or_else(|| Error::Data(format!("unknown role {s:?} in the database")))
}

fn list_view(row: &PgRow) -> Result<ListView> {
    let get = Error::db;
    Ok(ListView {
        id: row.try_get("id").map_err(get("list id"))?,
        name: row.try_get("name").map_err(get("list name"))?,
        owner_id: row.try_get("owner_id").map_err(get("list owner"))?,
        role: role_of(row)?,
        created_at: row.try_get("created_at").map_err(get("list created_at"))?,
        updated_at: row.try_get("updated_at").map_err(get("list updated_at"))?,
    })
}

fn item_view(row: &PgRow) -> Result<ItemView> {
    let get = Error::db;
    Ok(ItemView {
        id: row.try_get("id").map_err(get("item id"))?,
        name: row.try_get("name").map_err(get("item name"))?,
        quantity: row.try_get("quantity").map_err(get("item quantity"))?,
        unit: row.try_get("unit").map_err(get("item unit"))?,
        category: row.try_get("category").map_err(get("item category"))?,
        note: row.try_get("note").map_err(get("item note"))?,
        checked: row.try_get("checked").map_err(get("item checked"))?,
        position: row.try_get("position").map_err(get("item position"))?,
        created_at: row.try_get("created_at").map_err(get("item created_at"))?,
        updated_at: row.try_get("updated_at").map_err(get("item updated_at"))?,
    })
}

fn suggestion_view(row: &PgRow) -> Result<SuggestionView> {
    let get = Error::db;
    let suggestions: Option<serde_json::Value> =
        row.try_get("suggestions").map_err(get("suggestions"))?;
    Ok(SuggestionView {
        id: row.try_get("id").map_err(get("suggestion id"))?,
        list_id: row.try_get("list_id").map_err(get("suggestion list"))?,
        status: row.try_get("status").map_err(get("suggestion status"))?,
        provider: row
            .try_get("provider")
            .map_err(get("suggestion provider"))?,
        suggestions: suggestions
            .map(serde_json::from_value)
            .transpose()
            .map_err(Error::json("stored suggestions"))?,
        error: row.try_get("error").map_err(get("suggestion error"))?,
        created_at: row
            .try_get("created_at")
            .map_err(get("suggestion created_at"))?,
        completed_at: row
            .try_get("completed_at")
            .map_err(get("suggestion completed_at"))?,
    })
}

const ITEM_COLUMNS: &str =
    "id, name, quantity, unit, category, note, checked, position, created_at, updated_at";

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(Error::db("starting a transaction"))
    }

    async fn commit(tx: Transaction<'static, Postgres>) -> Result<()> {
        tx.commit().await.map_err(Error::db("committing"))
    }

    /// The caller's role in a list; `NotFound` when the list is missing or not theirs.
    async fn role(
        tx: &mut Transaction<'static, Postgres>,
        list: Uuid,
        user: Uuid,
    ) -> AppResult<Role> {
        let row = sqlx::query("SELECT role FROM list_members WHERE list_id = $1 AND user_id = $2")
            .bind(list)
            .bind(user)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db("reading membership"))?;
        match row {
            Some(row) => Ok(role_of(&row)?),
            None => Err(AppError::NotFound("list")),
        }
    }

    async fn owner(
        tx: &mut Transaction<'static, Postgres>,
        list: Uuid,
        user: Uuid,
    ) -> AppResult<()> {
        if Self::role(tx, list, user).await?.can_manage() {
            Ok(())
        } else {
            Err(AppError::Forbidden("only an owner of the list may do this"))
        }
    }

    // ----- users ------------------------------------------------------------------------

    /// Registers a user; `Conflict` when the e-mail is taken.
    pub async fn create_user(&self, email: &str, password_hash: &str) -> AppResult<Uuid> {
        let id = Uuid::new_v4();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) \
             ON CONFLICT ((lower(email))) DO NOTHING",
        )
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("inserting a user"))?;
        if inserted.rows_affected() == 0 {
            return Err(AppError::Conflict(
                "this e-mail is already registered".to_owned(),
            ));
        }
        outbox::enqueue(&mut tx, "user.registered", id, json!({ "user_id": id })).await?;
        Self::commit(tx).await?;
        Ok(id)
    }

    /// A user by e-mail.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, email, password_hash FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::db("reading a user"))?;
        row.map(|r| {
            Ok(User {
                id: r.try_get("id").map_err(Error::db("user id"))?,
                email: r.try_get("email").map_err(Error::db("user email"))?,
                password_hash: r.try_get("password_hash").map_err(Error::db("user hash"))?,
            })
        })
        .transpose()
    }

    // ----- lists ------------------------------------------------------------------------

    /// Creates a list owned by `user`.
    pub async fn create_list(&self, user: Uuid, name: &str) -> AppResult<ListView> {
        let id = Uuid::new_v4();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO lists (id, owner_id, name) VALUES ($1, $2, $3) \
             RETURNING id, owner_id, name, created_at, updated_at, 'owner' AS role",
        )
        .bind(id)
        .bind(user)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("inserting a list"))?;
        sqlx::query("INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("inserting the owner"))?;
        outbox::enqueue(
            &mut tx,
            "list.created",
            id,
            json!({ "list_id": id, "owner_id": user, "name": name }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(list_view(&row)?)
    }

    /// The caller's lists, newest first.
    pub async fn my_lists(&self, user: Uuid, page: Page) -> AppResult<ListPage> {
        let rows = sqlx::query(
            "SELECT l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role \
             FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $1 \
             ORDER BY l.created_at DESC, l.id LIMIT $2 OFFSET $3",
        )
        .bind(user)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("listing lists"))?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM list_members WHERE user_id = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .map_err(Error::db("counting lists"))?;
        Ok(ListPage {
            lists: rows.iter().map(list_view).collect::<Result<_>>()?,
            total,
            limit: page.limit,
            offset: page.offset,
        })
    }

    /// A list with items and members, if the caller is a member.
    pub async fn get_list(&self, user: Uuid, list: Uuid) -> AppResult<ListDetail> {
        let row = sqlx::query(
            "SELECT l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role \
             FROM lists l JOIN list_members m ON m.list_id = l.id AND m.user_id = $2 \
             WHERE l.id = $1",
        )
        .bind(list)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::db("reading a list"))?
        .ok_or(AppError::NotFound("list"))?;
        let items = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE list_id = $1 ORDER BY position, created_at"
        )))
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("reading items"))?;
        let members = sqlx::query(
            "SELECT m.user_id, u.email, m.role FROM list_members m JOIN users u ON u.id = m.user_id \
             WHERE m.list_id = $1 ORDER BY m.role DESC, m.added_at",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("reading members"))?;
        Ok(ListDetail {
            list: list_view(&row)?,
            items: items.iter().map(item_view).collect::<Result<_>>()?,
            members: members
                .iter()
                .map(|r| {
                    Ok(MemberView {
                        user_id: r.try_get("user_id").map_err(Error::db("member id"))?,
                        email: r.try_get("email").map_err(Error::db("member email"))?,
                        role: role_of(r)?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Renames a list (owners only).
    pub async fn rename_list(&self, user: Uuid, list: Uuid, name: &str) -> AppResult<ListView> {
        let mut tx = self.begin().await?;
        Self::owner(&mut tx, list, user).await?;
        let row = sqlx::query(
            "UPDATE lists l SET name = $3, updated_at = now() FROM list_members m \
             WHERE l.id = $1 AND m.list_id = l.id AND m.user_id = $2 AND m.role = 'owner' \
             RETURNING l.id, l.owner_id, l.name, l.created_at, l.updated_at, m.role",
        )
        .bind(list)
        .bind(user)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("renaming a list"))?
        .ok_or(AppError::NotFound("list"))?;
        outbox::enqueue(
            &mut tx,
            "list.renamed",
            list,
            json!({ "list_id": list, "name": name }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(list_view(&row)?)
    }

    /// Deletes a list (owners only).
    pub async fn delete_list(&self, user: Uuid, list: Uuid) -> AppResult<()> {
        let mut tx = self.begin().await?;
        Self::owner(&mut tx, list, user).await?;
        let done = sqlx::query(
            "DELETE FROM lists l USING list_members m \
             WHERE l.id = $1 AND m.list_id = l.id AND m.user_id = $2 AND m.role = 'owner'",
        )
        .bind(list)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("deleting a list"))?;
        if done.rows_affected() == 0 {
            return Err(AppError::NotFound("list"));
        }
        outbox::enqueue(&mut tx, "list.deleted", list, json!({ "list_id": list })).await?;
        Self::commit(tx).await?;
        Ok(())
    }

    /// Shares a list with the user registered under `email` (owners only).
    pub async fn share(
        &self,
        user: Uuid,
        list: Uuid,
        email: &str,
        role: Role,
    ) -> AppResult<MemberView> {
        let mut tx = self.begin().await?;
        Self::owner(&mut tx, list, user).await?;
        let target: Option<(Uuid, String)> =
            sqlx::query_as("SELECT id, email FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::db("finding the user to share with"))?;
        let (target, email) = target.ok_or_else(|| {
            domain::Invalid::new("email", "no user is registered with this e-mail")
        })?;
        let inserted = sqlx::query(
            "INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (list_id, user_id) DO NOTHING",
        )
        .bind(list)
        .bind(target)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(Error::db("adding a member"))?;
        if inserted.rows_affected() == 0 {
            return Err(AppError::Conflict(
                "this user is already a member of the list".to_owned(),
            ));
        }
        outbox::enqueue(
            &mut tx,
            "list.shared",
            list,
            json!({ "list_id": list, "user_id": target, "role": role }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(MemberView {
            user_id: target,
            email,
            role,
        })
    }

    /// Removes a member (owners only; the last owner cannot be removed).
    pub async fn unshare(&self, user: Uuid, list: Uuid, member: Uuid) -> AppResult<()> {
        let mut tx = self.begin().await?;
        Self::owner(&mut tx, list, user).await?;
        // Lock the memberships so two owners cannot remove each other at once.
        let roles: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT user_id, role FROM list_members WHERE list_id = $1 FOR UPDATE")
                .bind(list)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db("locking members"))?;
        let Some((_, role)) = roles.iter().find(|(id, _)| *id == member) else {
            return Err(AppError::NotFound("member"));
        };
        let owners = roles.iter().filter(|(_, r)| r == "owner").count();
        if role == "owner" && owners <= 1 {
            return Err(AppError::Conflict(
                "the last owner cannot be removed".to_owned(),
            ));
        }
        sqlx::query("DELETE FROM list_members WHERE list_id = $1 AND user_id = $2")
            .bind(list)
            .bind(member)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("removing a member"))?;
        outbox::enqueue(
            &mut tx,
            "list.unshared",
            list,
            json!({ "list_id": list, "user_id": member }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(())
    }

    // ----- items ------------------------------------------------------------------------

    /// Adds an item at the end (members and owners).
    pub async fn add_item(&self, user: Uuid, list: Uuid, item: &ItemFields) -> AppResult<ItemView> {
        let mut tx = self.begin().await?;
        Self::role(&mut tx, list, user).await?;
        // Serialise concurrent appends to one list so positions stay unique.
        sqlx::query("SELECT 1 FROM lists WHERE id = $1 FOR UPDATE")
            .bind(list)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("locking a list"))?;
        let id = Uuid::new_v4();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO items (id, list_id, name, quantity, unit, category, note, position) \
             SELECT $1, $2, $3, $4, $5, $6, $7, coalesce(max(position) + 1, 0) FROM items WHERE list_id = $2 \
             RETURNING {ITEM_COLUMNS}"
        )))
        .bind(id)
        .bind(list)
        .bind(&item.name)
        .bind(item.quantity)
        .bind(&item.unit)
        .bind(&item.category)
        .bind(&item.note)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("inserting an item"))?;
        let view = item_view(&row)?;
        outbox::enqueue(
            &mut tx,
            "item.added",
            list,
            json!({ "list_id": list, "item_id": id, "name": view.name, "by": user }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(view)
    }

    /// Changes an item (members and owners).
    pub async fn update_item(
        &self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
        patch: &ItemPatch,
    ) -> AppResult<ItemView> {
        let mut tx = self.begin().await?;
        Self::role(&mut tx, list, user).await?;
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
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("updating an item"))?
        .ok_or(AppError::NotFound("item"))?;
        let view = item_view(&row)?;
        outbox::enqueue(
            &mut tx,
            "item.updated",
            list,
            json!({ "list_id": list, "item_id": item, "checked": view.checked, "by": user }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(view)
    }

    /// Removes an item (members and owners).
    pub async fn delete_item(&self, user: Uuid, list: Uuid, item: Uuid) -> AppResult<()> {
        let mut tx = self.begin().await?;
        Self::role(&mut tx, list, user).await?;
        let done = sqlx::query(
            "DELETE FROM items WHERE id = $2 AND list_id = $1 \
             AND EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = $1 AND m.user_id = $3)",
        )
        .bind(list)
        .bind(item)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("deleting an item"))?;
        if done.rows_affected() == 0 {
            return Err(AppError::NotFound("item"));
        }
        outbox::enqueue(
            &mut tx,
            "item.removed",
            list,
            json!({ "list_id": list, "item_id": item, "by": user }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(())
    }

    /// Puts the items in the given order (members and owners); `order` names each item once.
    pub async fn reorder(
        &self,
        user: Uuid,
        list: Uuid,
        order: &[Uuid],
    ) -> AppResult<Vec<ItemView>> {
        let mut tx = self.begin().await?;
        Self::role(&mut tx, list, user).await?;
        let existing: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM items WHERE list_id = $1 FOR UPDATE")
                .bind(list)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db("locking items"))?;
        domain::reorder(&existing, order)?;
        sqlx::query(
            "UPDATE items i SET position = o.pos - 1, updated_at = now() \
             FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, pos) \
             WHERE i.id = o.id AND i.list_id = $1",
        )
        .bind(list)
        .bind(order)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("reordering items"))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE list_id = $1 ORDER BY position"
        )))
        .bind(list)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::db("reading items"))?;
        outbox::enqueue(
            &mut tx,
            "items.reordered",
            list,
            json!({ "list_id": list, "by": user }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(rows.iter().map(item_view).collect::<Result<_>>()?)
    }

    // ----- suggestions ------------------------------------------------------------------

    /// Records a suggestion request and its event in one transaction (members and owners).
    pub async fn request_suggestions(&self, user: Uuid, list: Uuid) -> AppResult<SuggestionView> {
        let mut tx = self.begin().await?;
        Self::role(&mut tx, list, user).await?;
        let id = Uuid::new_v4();
        let row = sqlx::query(
            "INSERT INTO suggestion_requests (id, list_id, requested_by) VALUES ($1, $2, $3) \
             RETURNING id, list_id, status, provider, suggestions, error, created_at, completed_at",
        )
        .bind(id)
        .bind(list)
        .bind(user)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("inserting a suggestion request"))?;
        outbox::enqueue(
            &mut tx,
            outbox::SUGGESTION_REQUESTED,
            list,
            json!({ "request_id": id, "list_id": list }),
        )
        .await?;
        Self::commit(tx).await?;
        Ok(suggestion_view(&row)?)
    }

    /// A suggestion request of a list the caller is a member of.
    pub async fn get_suggestions(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> AppResult<SuggestionView> {
        let row = sqlx::query(
            "SELECT s.id, s.list_id, s.status, s.provider, s.suggestions, s.error, s.created_at, s.completed_at \
             FROM suggestion_requests s JOIN list_members m ON m.list_id = s.list_id AND m.user_id = $3 \
             WHERE s.id = $2 AND s.list_id = $1",
        )
        .bind(list)
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::db("reading a suggestion request"))?
        .ok_or(AppError::NotFound("suggestion request"))?;
        Ok(suggestion_view(&row)?)
    }

    /// The items of a list, for the worker (no caller: the request was authorised).
    pub async fn item_summaries(&self, list: Uuid) -> Result<Vec<ItemSummary>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, category FROM items WHERE list_id = $1 ORDER BY position")
                .bind(list)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::db("reading items for suggestions"))?;
        Ok(rows
            .into_iter()
            .map(|(name, category)| ItemSummary { name, category })
            .collect())
    }
}
