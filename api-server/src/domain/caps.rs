//! Caps on how much one user or list may hold, so that no account can grow the database
//! (or a list's page) without bound. Pure: callers count, these rules decide.

/// The caps (each from its configuration variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `MAX_ITEMS_PER_LIST`, default 1000.
    pub items_per_list: u32,
    /// `MAX_MEMBERS_PER_LIST`, default 100 (the creator counts).
    pub members_per_list: u32,
    /// `MAX_LISTS_PER_USER`, default 1000: lists a user has created.
    pub lists_per_user: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            items_per_list: 1000,
            members_per_list: 100,
            lists_per_user: 1000,
        }
    }
}

/// A cap that one more would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReached {
    /// The configuration variable of the cap.
    pub limit: &'static str,
    /// What it counts.
    pub what: &'static str,
    /// Its value.
    pub max: u64,
}

fn room(count: i64, max: u32, limit: &'static str, what: &'static str) -> Result<(), CapReached> {
    if count < i64::from(max) {
        Ok(())
    } else {
        Err(CapReached {
            limit,
            what,
            max: u64::from(max),
        })
    }
}

impl Caps {
    /// Whether a list with `items` items may get one more.
    pub fn room_for_item(&self, items: i64) -> Result<(), CapReached> {
        room(
            items,
            self.items_per_list,
            "MAX_ITEMS_PER_LIST",
            "items in a list",
        )
    }

    /// Whether a list with `members` members may get one more.
    pub fn room_for_member(&self, members: i64) -> Result<(), CapReached> {
        room(
            members,
            self.members_per_list,
            "MAX_MEMBERS_PER_LIST",
            "members of a list",
        )
    }

    /// Whether a user who has created `lists` lists may create one more.
    pub fn room_for_list(&self, lists: i64) -> Result<(), CapReached> {
        room(
            lists,
            self.lists_per_user,
            "MAX_LISTS_PER_USER",
            "lists per user",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_more_is_allowed_below_the_cap_and_refused_at_it() {
        let caps = Caps {
            items_per_list: 2,
            members_per_list: 3,
            lists_per_user: 1,
        };
        assert_eq!(caps.room_for_item(1), Ok(()));
        let reached = caps.room_for_item(2).unwrap_err();
        assert_eq!((reached.limit, reached.max), ("MAX_ITEMS_PER_LIST", 2));
        assert_eq!(caps.room_for_member(2), Ok(()));
        assert_eq!(
            caps.room_for_member(3).unwrap_err().limit,
            "MAX_MEMBERS_PER_LIST"
        );
        assert_eq!(caps.room_for_list(0), Ok(()));
        assert_eq!(
            caps.room_for_list(5).unwrap_err().limit,
            "MAX_LISTS_PER_USER"
        );
    }
}
