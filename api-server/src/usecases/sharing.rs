//! Sharing a list with another user and removing members.

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::{self, Action, Invalid, MemberView, NewEvent, Removal, Role};
use crate::error::AppError;
use crate::ports::{Store, UnitOfWork};

impl<S: Store, H, T> UseCases<S, H, T> {
    /// Shares a list with the user registered under `email` (owners only).
    pub async fn share(
        &self,
        user: Uuid,
        list: Uuid,
        email: &str,
        role: Role,
    ) -> AppResult<MemberView> {
        let email = domain::email(email)?;
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::Share).await?;
        let (_, members) = tx.lock_list_counts(list).await?;
        self.caps
            .room_for_member(members)
            .map_err(AppError::CapReached)?;
        let (target, email) = tx
            .find_user(&email)
            .await?
            .ok_or_else(|| Invalid::new("email", "no user is registered with this e-mail"))?;
        if !tx.add_member(list, target, role).await? {
            return Err(AppError::Conflict(
                "this user is already a member of the list".to_owned(),
            ));
        }
        tx.publish(&NewEvent::list_shared(list, target, role))
            .await?;
        tx.commit().await?;
        Ok(MemberView {
            user_id: target,
            email,
            role,
        })
    }

    /// Removes a member: owners remove others, anyone may leave, nobody removes the list's
    /// creator, and the last owner stays (see [`domain::removal`]).
    pub async fn unshare(&self, user: Uuid, list: Uuid, member: Uuid) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        let role = allowed(&mut tx, list, user, Action::Read).await?;
        // Locked, so that two owners cannot remove each other at once.
        let members = tx.lock_members(list).await?;
        let creator = tx
            .list_creator(list, user)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        domain::removal(&members, creator, user, role, member).map_err(|why| match why {
            Removal::NotMember => AppError::NotFound("member"),
            Removal::LastOwner => AppError::Conflict("the last owner cannot be removed".to_owned()),
            Removal::Creator => AppError::Conflict(
                "the list's creator cannot be removed or leave; the creator can delete the list"
                    .to_owned(),
            ),
            Removal::NotAnOwner => {
                AppError::Forbidden("only an owner may remove other members; anyone may leave")
            }
        })?;
        tx.remove_member(list, member).await?;
        tx.publish(&NewEvent::list_unshared(list, member)).await?;
        tx.commit().await?;
        Ok(())
    }
}
