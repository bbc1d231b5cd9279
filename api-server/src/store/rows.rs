//! Rows to domain values.

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::domain::{ItemView, ListDetail, ListView, Rendered, Role, SuggestionView};
use crate::{Error, Result};

pub(super) fn role_of(row: &PgRow) -> Result<Role> {
    let s: String = row.try_get("role").map_err(Error::db("reading a role"))?;
    Role::parse(&s).ok_or_else(|| Error::Data(format!("unknown role {s:?} in the database")))
}

pub(super) fn list_view(row: &PgRow) -> Result<ListView> {
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

/// A list's row with its `items` and `members` written as JSON by the database (see
/// [`super::LIST_DETAIL_QUERY`]), answered as they are.
pub(super) fn list_detail(row: &PgRow) -> Result<ListDetail> {
    Ok(ListDetail {
        list: list_view(row)?,
        items: rendered(row, "items", "reading items")?,
        members: rendered(row, "members", "reading members")?,
    })
}

/// A text column holding JSON the query wrote in `T`'s exact form (NULL, an error, when it
/// could not write one of its values).
fn rendered<T>(row: &PgRow, column: &str, context: &'static str) -> Result<Rendered<T>> {
    let text: String = row.try_get(column).map_err(Error::db(context))?;
    Rendered::trusted(text).map_err(Error::json(context))
}

pub(super) fn item_view(row: &PgRow) -> Result<ItemView> {
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
        created_at: row
            .try_get("created_at")
            .map_err(get("suggestion created_at"))?,
        completed_at: row
            .try_get("completed_at")
            .map_err(get("suggestion completed_at"))?,
    })
}

pub(super) const ITEM_COLUMNS: &str =
    "id, name, quantity, unit, category, note, checked, position, created_at, updated_at";

pub(super) const SUGGESTION_COLUMNS: &str =
    "id, list_id, status, provider, suggestions, error, created_at, completed_at";
