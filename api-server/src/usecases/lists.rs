//! Creating, listing, reading, renaming and deleting lists.

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::{self, Action, ListDetail, ListPage, ListView, NewEvent, Page};
use crate::error::AppError;
use crate::ports::{Store, TokenSubject, UnitOfWork};

impl<S: Store, H, T> UseCases<S, H, T> {
    /// Creates a list owned by `user`.
    pub async fn create_list(&self, user: Uuid, name: &str) -> AppResult<ListView> {
        let name = domain::list_name(name)?;
        let mut tx = self.store.begin().await?;
        let lists = tx.lock_user_count_lists(user).await?;
        self.caps
            .room_for_list(lists)
            .map_err(AppError::CapReached)?;
        // A validly signed token can outlive its user (or come from another database).
        let list = tx
            .insert_list(user, &name)
            .await?
            .ok_or(AppError::Unauthorized("the token's user does not exist"))?;
        tx.publish(&NewEvent::list_created(list.id, user, &name))
            .await?;
        tx.commit().await?;
        Ok(list)
    }

    /// The caller's lists, newest first, one page.
    pub async fn my_lists(
        &self,
        user: Uuid,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> AppResult<ListPage> {
        let page = Page::new(limit, offset)?;
        Ok(self.store.my_lists(user, page).await?)
    }

    /// A list with its items and members, if the token's user is a member; the token's
    /// version is checked in the same statement (one round trip for the whole request, the
    /// API's most frequent). When it reads nothing, one more read tells a revoked token
    /// (401) from a list the caller cannot see (404); versions only grow, so the answer is
    /// the one the first read would have given, or a logout that came after it.
    pub async fn get_list(&self, reader: TokenSubject, list: Uuid) -> AppResult<ListDetail> {
        if let Some(detail) = self.store.list_detail(reader, list).await? {
            return Ok(detail);
        }
        self.user(reader).await?;
        Err(AppError::NotFound("list"))
    }

    /// Renames a list (owners only).
    pub async fn rename_list(&self, user: Uuid, list: Uuid, name: &str) -> AppResult<ListView> {
        let name = domain::list_name(name)?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::Rename).await?;
        let view = tx
            .rename_list(user, list, &name)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        tx.publish(&NewEvent::list_renamed(list, &name)).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Deletes a list (its creator only: a co-owner may leave instead, see
    /// [`domain::deletion`]).
    pub async fn delete_list(&self, user: Uuid, list: Uuid) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::Delete).await?;
        let creator = tx
            .list_creator(list, user)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        domain::deletion(creator, user)?;
        if !tx.delete_list(user, list).await? {
            return Err(AppError::NotFound("list"));
        }
        tx.publish(&NewEvent::list_deleted(list)).await?;
        tx.commit().await?;
        Ok(())
    }
}
