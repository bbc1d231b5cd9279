//! Sharing a list with another user and removing members.

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::{
    self, Action, ListView, MemberView, NewEvent, Removal, Role, Transfer, TransferOffer,
};
use crate::error::AppError;
use crate::ports::{Store, UnitOfWork};

impl<S: Store, H, T> UseCases<S, H, T> {
    /// Shares a list with the user registered under `email` (owners only).
    ///
    /// An e-mail without an account gets the same answer as one with an account, and is
    /// recorded as a pending invitation that the list's members see like a member (with the
    /// id answered here): so neither the answer nor the list tells who has an account
    /// (account enumeration). Registering with that e-mail makes the invitee a member.
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
        let Some((target, email)) = tx.find_user(&email).await? else {
            let id = tx
                .invite(list, &email, role)
                .await?
                .ok_or_else(already_a_member)?;
            tx.commit().await?;
            return Ok(MemberView {
                user_id: id,
                email,
                role,
            });
        };
        if !tx.add_member(list, target, role).await? {
            return Err(already_a_member());
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

    /// Offers a list to another member (its creator only): nothing changes until `to`
    /// accepts ([`Self::accept_list`]); a new offer replaces the earlier one. `to` may be a
    /// member or a pending invitation (by the id the share answered), and both get the same
    /// answer, so it tells nobody who has an account (an offer to an invitation is never
    /// accepted: once registered, the invitee is a member with an id of their own, to whom
    /// the creator may offer the list again). No cap is checked here: the list counts
    /// towards the recipient's `MAX_LISTS_PER_USER` only when they accept.
    pub async fn offer_list(&self, user: Uuid, list: Uuid, to: Uuid) -> AppResult<TransferOffer> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::Read).await?;
        let mut members = tx.lock_members(list).await?;
        members.extend(tx.lock_invitations(list).await?);
        let creator = tx
            .list_creator(list, user)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        domain::transfer(&members, creator, user, to).map_err(transfer_refused)?;
        tx.offer_transfer(list, user, to).await?;
        tx.commit().await?;
        Ok(TransferOffer {
            list_id: list,
            user_id: to,
            status: "offered",
        })
    }

    /// Accepts the offer of a list made to the caller: they become its creator (`owner_id`)
    /// with the owner role, and the former creator stays an owner, free to leave. The list
    /// counts towards the caller's `MAX_LISTS_PER_USER` (409 naming it when full). Without an
    /// offer to the caller (or one made by someone no longer the creator): 404.
    pub async fn accept_list(&self, user: Uuid, list: Uuid) -> AppResult<ListView> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::Read).await?;
        // Locked, so that a concurrent removal of the caller waits for this transfer.
        let members = tx.lock_members(list).await?;
        let creator = tx
            .list_creator(list, user)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        let from = tx.take_transfer_offer(list, user).await?;
        if from != Some(creator) {
            return Err(AppError::NotFound("ownership offer"));
        }
        domain::transfer(&members, creator, creator, user).map_err(transfer_refused)?;
        let lists = tx.lock_user_count_lists(user).await?;
        self.caps
            .room_for_list(lists)
            .map_err(AppError::CapReached)?;
        let view = tx
            .transfer_list(list, creator, user)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        tx.publish(&NewEvent::list_transferred(list, creator, user))
            .await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Removes a member: owners remove others, anyone may leave, nobody removes the list's
    /// creator, and the last owner stays (see [`domain::removal`]).
    pub async fn unshare(&self, user: Uuid, list: Uuid, member: Uuid) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        let role = allowed(&mut tx, list, user, Action::Read).await?;
        // Locked, so that two owners cannot remove each other at once. Pending invitations
        // are removed like members (by the id their invitation was answered with).
        let mut members = tx.lock_members(list).await?;
        let invitations = tx.lock_invitations(list).await?;
        let pending = invitations.iter().any(|(id, _)| *id == member);
        members.extend(invitations);
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
        if !pending {
            // A withdrawn invitation is not an event: its id names no user.
            tx.publish(&NewEvent::list_unshared(list, member)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The answer to a transfer the domain refuses.
fn transfer_refused(why: Transfer) -> AppError {
    match why {
        Transfer::NotTheCreator => {
            AppError::Forbidden("only the list's creator may hand it to someone else")
        }
        Transfer::NotMember => AppError::NotFound("member"),
        Transfer::AlreadyCreator => {
            AppError::Conflict("this member already is the list's creator".to_owned())
        }
    }
}

/// The answer to sharing with someone who is already a member (or already invited).
fn already_a_member() -> AppError {
    AppError::Conflict("this user is already a member of the list".to_owned())
}
