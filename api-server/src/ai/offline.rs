//! The offline provider: the domain's deterministic rule, no network.

use crate::Result;
use crate::domain::{self, ItemSummary, MAX_SUGGESTIONS, Suggestion};
use crate::ports::{BoxFuture, SuggestionProvider};

/// Deterministic suggestions from the list's items and categories; needs no network.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineProvider;

impl SuggestionProvider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        Box::pin(async move { Ok(domain::offline_suggestions(items, MAX_SUGGESTIONS)) })
    }
}
