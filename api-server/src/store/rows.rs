//! Rows to domain values.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Column, ColumnIndex, Decode, Postgres, Row, Type};

use crate::domain::{ItemView, ListDetail, ListView, MemberView, Role, SuggestionView};
use crate::{Error, Result};

pub(super) fn role_of(row: &PgRow) -> Result<Role> {
    role_in(row, "role")
}

fn role_in(row: &PgRow, column: impl ColumnIndex<PgRow>) -> Result<Role> {
    let s: String = row.try_get(column).map_err(Error::db("reading a role"))?;
    Role::parse(&s).ok_or_else(|| Error::Data(format!("unknown role {s:?} in the database")))
}

pub(super) fn list_view(row: &PgRow) -> Result<ListView> {
    let get = Error::db;
    Ok(ListView {
        id: row.try_get("id").map_err(get("list id"))?,
        name: row.try_get("name").map_err(get("list name"))?,
        owner_id: row.try_get("owner_id").map_err(get("list owner"))?,
        role: role_of(row)?,
        created_at: time(row, "created_at", "list created_at")?,
        updated_at: time(row, "updated_at", "list updated_at")?,
    })
}

/// The rows of [`super::LIST_DETAIL_QUERY`]: the list (none when the caller is not a member
/// of it or the token is revoked), its items, then its members and invitations, each row
/// beside the list's columns.
pub(super) fn list_detail(rows: &[PgRow]) -> Result<Option<ListDetail>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut detail = ListDetail {
        list: list_view(first)?,
        items: Vec::with_capacity(rows.len()),
        members: Vec::new(),
    };
    let get = Error::db;
    // Every row has the same columns: each is found by name once, not once per row.
    let at = |name: &str| ordinal(first, name);
    let (kind, id, email, role) = (
        at("member")?,
        at("entry_id")?,
        at("email")?,
        at("member_role")?,
    );
    let item_columns = ItemColumns::of(first, &LISTED_ITEM)?;
    for row in rows {
        let member: Option<bool> = row.try_get(kind).map_err(get("list entry kind"))?;
        match member {
            // A list with no entries at all (the caller is one, so never in practice).
            None => {}
            Some(false) => detail.items.push(item(row, &item_columns)?),
            Some(true) => detail.members.push(MemberView {
                user_id: row.try_get(id).map_err(get("member id"))?,
                email: row.try_get(email).map_err(get("member email"))?,
                role: role_in(row, role)?,
            }),
        }
    }
    Ok(Some(detail))
}

/// A `timestamptz` column as an instant; an error, not a panic, for one chrono cannot hold
/// (`infinity`, or past year 262142): sqlx's own decoding adds the stored microseconds to
/// its epoch with `+`, which panics there.
pub(crate) fn time(
    row: &PgRow,
    column: impl ColumnIndex<PgRow>,
    context: &'static str,
) -> Result<DateTime<Utc>> {
    row.try_get::<Instant, _>(column)
        .map(|t| t.0)
        .map_err(Error::db(context))
}

/// [`time`] of a column that may be NULL.
pub(super) fn time_or_none(
    row: &PgRow,
    column: impl ColumnIndex<PgRow>,
    context: &'static str,
) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<Instant>, _>(column)
        .map(|t| t.map(|t| t.0))
        .map_err(Error::db(context))
}

/// [`time`]'s decoding.
struct Instant(DateTime<Utc>);

impl Type<Postgres> for Instant {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Instant {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        if value.format() == PgValueFormat::Text {
            return <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Self);
        }
        // Microseconds since 2000-01-01T00:00:00Z, PostgreSQL's epoch.
        let micros = <i64 as Decode<Postgres>>::decode(value)?;
        DateTime::from_timestamp(946_684_800, 0)
            .and_then(|epoch| epoch.checked_add_signed(TimeDelta::microseconds(micros)))
            .map(Self)
            .ok_or_else(|| {
                format!("{micros} µs from 2000-01-01 is no time the API can hold (infinity?)")
                    .into()
            })
    }
}

/// A row of [`ITEM_COLUMNS`].
pub(super) fn item_view(row: &PgRow) -> Result<ItemView> {
    item(row, &ItemColumns::of(row, &ITEM)?)
}

/// Rows of [`ITEM_COLUMNS`], each column found by name once.
pub(super) fn item_views(rows: &[PgRow]) -> Result<Vec<ItemView>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let at = ItemColumns::of(first, &ITEM)?;
    rows.iter().map(|row| item(row, &at)).collect()
}

/// The names of the item's columns that a list read renames beside the list's own.
struct ItemNames {
    id: &'static str,
    name: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
}

/// An item's row as the table names its columns.
const ITEM: ItemNames = ItemNames {
    id: "id",
    name: "name",
    created_at: "created_at",
    updated_at: "updated_at",
};

/// An item's columns in a row of [`super::LIST_DETAIL_QUERY`].
const LISTED_ITEM: ItemNames = ItemNames {
    id: "entry_id",
    name: "item_name",
    created_at: "item_created_at",
    updated_at: "item_updated_at",
};

/// Where an item's columns are in a row, found by name once per read: sqlx finds a column
/// named in `try_get` in a hash map each time, 10 columns for each of a list's items.
struct ItemColumns {
    id: usize,
    name: usize,
    quantity: usize,
    unit: usize,
    category: usize,
    note: usize,
    checked: usize,
    position: usize,
    created_at: usize,
    updated_at: usize,
}

impl ItemColumns {
    fn of(row: &PgRow, names: &ItemNames) -> Result<Self> {
        let at = |name: &str| ordinal(row, name);
        Ok(Self {
            id: at(names.id)?,
            name: at(names.name)?,
            quantity: at("quantity")?,
            unit: at("unit")?,
            category: at("category")?,
            note: at("note")?,
            checked: at("checked")?,
            position: at("position")?,
            created_at: at(names.created_at)?,
            updated_at: at(names.updated_at)?,
        })
    }
}

/// The position of the column `name` in `row`.
fn ordinal(row: &PgRow, name: &str) -> Result<usize> {
    row.try_column(name)
        .map(Column::ordinal)
        .map_err(Error::db("a column of the answer"))
}

fn item(row: &PgRow, at: &ItemColumns) -> Result<ItemView> {
    let get = Error::db;
    Ok(ItemView {
        id: row.try_get(at.id).map_err(get("item id"))?,
        name: row.try_get(at.name).map_err(get("item name"))?,
        quantity: row.try_get(at.quantity).map_err(get("item quantity"))?,
        unit: row.try_get(at.unit).map_err(get("item unit"))?,
        category: row.try_get(at.category).map_err(get("item category"))?,
        note: row.try_get(at.note).map_err(get("item note"))?,
        checked: row.try_get(at.checked).map_err(get("item checked"))?,
        position: row.try_get(at.position).map_err(get("item position"))?,
        created_at: time(row, at.created_at, "item created_at")?,
        updated_at: time(row, at.updated_at, "item updated_at")?,
    })
}

pub(super) fn suggestion_view(row: &PgRow) -> Result<SuggestionView> {
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
        created_at: time(row, "created_at", "suggestion created_at")?,
        completed_at: time_or_none(row, "completed_at", "suggestion completed_at")?,
    })
}

pub(super) const ITEM_COLUMNS: &str =
    "id, name, quantity, unit, category, note, checked, position, created_at, updated_at";

pub(super) const SUGGESTION_COLUMNS: &str =
    "id, list_id, status, provider, suggestions, error, created_at, completed_at";
