//! The domain's data: users, lists, items, members and suggestion requests as the API
//! shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member's role in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the list or was made owner: may rename, delete and share it.
    Owner,
    /// May read the list and edit its items.
    Member,
}

impl Role {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
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
    /// Token version: tokens carry the version they were issued at and stop working when it
    /// is incremented (logout).
    pub token_version: i64,
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
    #[serde(serialize_with = "super::rfc3339::time")]
    pub created_at: DateTime<Utc>,
    /// Last renamed or changed.
    #[serde(serialize_with = "super::rfc3339::time")]
    pub updated_at: DateTime<Utc>,
}

/// An offer of a list's ownership, waiting for its recipient to accept it. The same for a
/// member with an account and for a pending invitation.
#[derive(Debug, Clone, Serialize)]
pub struct TransferOffer {
    /// The list.
    pub list_id: Uuid,
    /// Who may accept it (the id the share answered).
    pub user_id: Uuid,
    /// Always `offered`: nothing changes until the recipient accepts.
    pub status: &'static str,
}

/// An item.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(serialize_with = "super::rfc3339::time")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "super::rfc3339::time")]
    pub updated_at: DateTime<Utc>,
}

/// A member of a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Items in order (by position, then creation).
    pub items: Vec<ItemView>,
    /// Members and pending invitations, owners first, then in the order they were added.
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
    #[serde(serialize_with = "super::rfc3339::time")]
    pub created_at: DateTime<Utc>,
    /// Finished.
    #[serde(serialize_with = "super::rfc3339::time_or_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a suggestion provider gets: the list's items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSummary {
    /// Item name.
    pub name: String,
    /// Item category, if any.
    pub category: Option<String>,
}

/// One suggested item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// What to add.
    pub name: String,
    /// Its category, if known.
    pub category: Option<String>,
    /// Why.
    pub reason: String,
}
