//! Authorization rules: what owners and members may do with a list.
//!
//! A caller who is not a member cannot tell another user's list from a missing one, so
//! "not a member" is [`Denied::NotFound`]; a member asking for an owner's action is
//! [`Denied::Forbidden`].

use uuid::Uuid;

use super::Role;

/// What a caller wants to do with a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the list, its items, members and suggestion requests.
    Read,
    /// Add, change, remove or reorder items.
    EditItems,
    /// Ask for AI suggestions.
    RequestSuggestions,
    /// Rename the list.
    Rename,
    /// Delete the list: an owner's action, and of the owners only the creator's (see
    /// [`deletion`]).
    Delete,
    /// Add or remove members.
    Share,
}

impl Role {
    /// Whether this role may rename, delete or share the list.
    pub fn can_manage(self) -> bool {
        self == Self::Owner
    }

    /// Whether this role may do `action`.
    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Read | Action::EditItems | Action::RequestSuggestions => true,
            Action::Rename | Action::Delete | Action::Share => self.can_manage(),
        }
    }
}

/// Why an action on a list is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The caller is not a member: the list does not exist for them.
    NotFound,
    /// The caller is a member, but only owners may do this.
    Forbidden,
    /// The caller is an owner, but only the list's creator (`owner_id`) may do this.
    NotTheCreator,
}

/// Checks that a caller with `role` in a list (`None`: not a member) may do `action`.
pub fn authorize(role: Option<Role>, action: Action) -> Result<Role, Denied> {
    match role {
        None => Err(Denied::NotFound),
        Some(role) if role.may(action) => Ok(role),
        Some(_) => Err(Denied::Forbidden),
    }
}

/// Checks that `actor`, an owner of a list created by `creator` (see [`authorize`] with
/// [`Action::Delete`]), may delete it: only the creator may. A co-owner cannot take the
/// creator's list away from them; they may leave it instead.
pub fn deletion(creator: Uuid, actor: Uuid) -> Result<(), Denied> {
    if actor == creator {
        Ok(())
    } else {
        Err(Denied::NotTheCreator)
    }
}

/// Why a member cannot be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Not a member of the list.
    NotMember,
    /// The only owner: a list always keeps one.
    LastOwner,
    /// The list's creator (`owner_id`): nobody removes them and they cannot leave, or
    /// `owner_id` would name someone who is no longer a member. They can delete the list.
    Creator,
    /// A member (not an owner) removing someone else.
    NotAnOwner,
}

/// Checks that `actor`, a member with `actor_role`, may remove `member` from a list created
/// by `creator` whose members are `members`: anyone may leave (remove themselves), owners may
/// remove others, nobody removes the creator, and a list keeps at least one owner.
pub fn removal(
    members: &[(Uuid, Role)],
    creator: Uuid,
    actor: Uuid,
    actor_role: Role,
    member: Uuid,
) -> Result<(), Removal> {
    if actor != member && !actor_role.can_manage() {
        return Err(Removal::NotAnOwner);
    }
    let Some((_, role)) = members.iter().find(|(id, _)| *id == member) else {
        return Err(Removal::NotMember);
    };
    if member == creator {
        return Err(Removal::Creator);
    }
    let owners = members.iter().filter(|(_, r)| *r == Role::Owner).count();
    if *role == Role::Owner && owners <= 1 {
        return Err(Removal::LastOwner);
    }
    Ok(())
}

/// Why a list's ownership cannot pass to someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Only the list's creator (`owner_id`) hands the list over; co-owners cannot.
    NotTheCreator,
    /// The new creator must already be a member of the list.
    NotMember,
    /// The new creator is the current one.
    AlreadyCreator,
}

/// Checks that `actor` may make `to` the creator of a list created by `creator` whose
/// members are `members`: only the creator may, and only to another member. The new creator
/// becomes an owner; the former creator stays an owner (and may then leave).
pub fn transfer(
    members: &[(Uuid, Role)],
    creator: Uuid,
    actor: Uuid,
    to: Uuid,
) -> Result<(), Transfer> {
    if actor != creator {
        return Err(Transfer::NotTheCreator);
    }
    if to == creator {
        return Err(Transfer::AlreadyCreator);
    }
    if !members.iter().any(|(id, _)| *id == to) {
        return Err(Transfer::NotMember);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_and_edit_items_and_only_owners_manage() {
        for action in [Action::Read, Action::EditItems, Action::RequestSuggestions] {
            assert_eq!(authorize(Some(Role::Member), action), Ok(Role::Member));
            assert_eq!(authorize(Some(Role::Owner), action), Ok(Role::Owner));
        }
        for action in [Action::Rename, Action::Delete, Action::Share] {
            assert_eq!(
                authorize(Some(Role::Member), action),
                Err(Denied::Forbidden)
            );
            assert_eq!(authorize(Some(Role::Owner), action), Ok(Role::Owner));
        }
    }

    #[test]
    fn strangers_do_not_see_the_list_at_all() {
        for action in [Action::Read, Action::EditItems, Action::Share] {
            assert_eq!(authorize(None, action), Err(Denied::NotFound));
        }
    }

    #[test]
    fn only_the_creator_deletes_a_list() {
        let (creator, co_owner) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(deletion(creator, creator), Ok(()));
        assert_eq!(deletion(creator, co_owner), Err(Denied::NotTheCreator));
    }

    #[test]
    fn a_list_keeps_its_creator_and_at_least_one_owner() {
        let (creator, b, c, d) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let members = [(creator, Role::Owner), (b, Role::Owner), (c, Role::Member)];
        let by = |actor, role, member| removal(&members, creator, actor, role, member);
        // Owners remove members and other co-owners, never the creator.
        assert_eq!(by(creator, Role::Owner, c), Ok(()));
        assert_eq!(by(creator, Role::Owner, b), Ok(()));
        assert_eq!(by(b, Role::Owner, creator), Err(Removal::Creator));
        assert_eq!(by(creator, Role::Owner, d), Err(Removal::NotMember));
        // Anyone but the creator may leave.
        assert_eq!(by(c, Role::Member, c), Ok(()));
        assert_eq!(by(b, Role::Owner, b), Ok(()));
        assert_eq!(by(creator, Role::Owner, creator), Err(Removal::Creator));
        // Members remove nobody else.
        assert_eq!(by(c, Role::Member, b), Err(Removal::NotAnOwner));
        // The last-owner rule still holds for lists whose creator is gone (older data).
        let orphan = [(b, Role::Owner), (c, Role::Member)];
        assert_eq!(
            removal(&orphan, creator, b, Role::Owner, b),
            Err(Removal::LastOwner)
        );
    }

    #[test]
    fn only_the_creator_hands_the_list_to_another_member() {
        let (creator, co_owner, member, stranger) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let members = [
            (creator, Role::Owner),
            (co_owner, Role::Owner),
            (member, Role::Member),
        ];
        assert_eq!(transfer(&members, creator, creator, member), Ok(()));
        assert_eq!(transfer(&members, creator, creator, co_owner), Ok(()));
        assert_eq!(
            transfer(&members, creator, co_owner, co_owner),
            Err(Transfer::NotTheCreator)
        );
        assert_eq!(
            transfer(&members, creator, member, member),
            Err(Transfer::NotTheCreator)
        );
        assert_eq!(
            transfer(&members, creator, creator, stranger),
            Err(Transfer::NotMember)
        );
        assert_eq!(
            transfer(&members, creator, creator, creator),
            Err(Transfer::AlreadyCreator)
        );
    }
}
