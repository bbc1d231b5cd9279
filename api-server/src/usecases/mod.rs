//! The use cases: what the API does, in terms of the domain and the ports only.
//!
//! Each use case validates its input (domain rules), reads the caller's role in the list
//! through the store, applies the domain's authorization rules, makes its change and records
//! its event in one transaction. The HTTP edge calls nothing else.

mod accounts;
mod attachments;
mod items;
mod lists;
mod sharing;
mod suggestions;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

pub use accounts::{Registered, Session};
pub use attachments::{Announced, AttachmentSettings, Downloadable};
pub use items::NewItem;
pub use suggestions::{CONSUMER, Handled, SuggestionJobs, cache_key};

use crate::domain::{Action, Caps, Denied, Role, authorize};
use crate::error::AppError;
use crate::ports::UnitOfWork;

/// Result of a use case.
pub type AppResult<T> = std::result::Result<T, AppError>;

/// The use cases over a store, a password hasher and a token issuer.
#[derive(Debug, Clone)]
pub struct UseCases<S, H, T> {
    store: S,
    hasher: H,
    tokens: T,
    caps: Caps,
    attachments: AttachmentSettings,
}

impl<S, H, T> UseCases<S, H, T> {
    /// Use cases over these adapters.
    pub fn new(store: S, hasher: H, tokens: T) -> Self {
        Self {
            store,
            hasher,
            tokens,
            caps: Caps::default(),
            attachments: AttachmentSettings::default(),
        }
    }

    /// With attachments (default: not configured, answered 501).
    #[must_use]
    pub fn with_attachments(mut self, attachments: AttachmentSettings) -> Self {
        self.attachments = attachments;
        self
    }

    /// With these caps on items, members and lists (default [`Caps::default`]).
    #[must_use]
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.caps = caps;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl From<Denied> for AppError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotFound => Self::NotFound("list"),
            Denied::Forbidden => Self::Forbidden("only an owner of the list may do this"),
            Denied::NotTheCreator => Self::Forbidden(
                "only the list's creator may delete it; a co-owner may leave the list instead",
            ),
        }
    }
}

/// The caller's role in `list` inside `tx`, if it allows `action`.
async fn allowed<U: UnitOfWork>(
    tx: &mut U,
    list: uuid::Uuid,
    user: uuid::Uuid,
    action: Action,
) -> AppResult<Role> {
    Ok(authorize(tx.role(list, user).await?, action)?)
}
