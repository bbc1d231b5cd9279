//! Adding, changing, removing and reordering items.

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::{self, Action, ItemPatch, ItemView, NewEvent};
use crate::error::AppError;
use crate::ports::{Store, UnitOfWork};

/// A new item as requested (validated by [`UseCases::add_item`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewItem {
    /// Name.
    pub name: String,
    /// Quantity (default 1).
    pub quantity: Option<f64>,
    /// Unit.
    pub unit: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Note.
    pub note: Option<String>,
}

impl<S: Store, H, T> UseCases<S, H, T> {
    /// Adds an item at the end of a list (members and owners).
    pub async fn add_item(&self, user: Uuid, list: Uuid, item: &NewItem) -> AppResult<ItemView> {
        let fields = domain::new_item(
            &item.name,
            item.quantity,
            item.unit.as_deref(),
            item.category.as_deref(),
            item.note.as_deref(),
        )?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        let (items, _) = tx.lock_list_counts(list).await?;
        self.caps
            .room_for_item(items)
            .map_err(AppError::CapReached)?;
        let view = tx
            .append_item(user, list, &fields)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        tx.publish(&NewEvent::item_added(list, view.id, &view.name, user))
            .await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Changes an item (members and owners).
    pub async fn update_item(
        &self,
        user: Uuid,
        list: Uuid,
        item: Uuid,
        changes: &ItemPatch,
    ) -> AppResult<ItemView> {
        let patch = changes.validated()?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        let view = tx
            .update_item(user, list, item, &patch)
            .await?
            .ok_or(AppError::NotFound("item"))?;
        tx.publish(&NewEvent::item_updated(list, item, view.checked, user))
            .await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Removes an item (members and owners).
    pub async fn delete_item(&self, user: Uuid, list: Uuid, item: Uuid) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        if !tx.delete_item(user, list, item).await? {
            return Err(AppError::NotFound("item"));
        }
        tx.publish(&NewEvent::item_removed(list, item, user))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts the items in the given order (members and owners); `order` names each once.
    pub async fn reorder(
        &self,
        user: Uuid,
        list: Uuid,
        order: &[Uuid],
    ) -> AppResult<Vec<ItemView>> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::EditItems).await?;
        let existing = tx.lock_item_ids(list).await?;
        domain::reorder(&existing, order)?;
        let items = tx.set_order(list, order).await?;
        tx.publish(&NewEvent::items_reordered(list, user)).await?;
        tx.commit().await?;
        Ok(items)
    }
}
