//! Ports: what the core needs from the outside, as traits with more than one adapter.

use std::future::Future;
use std::pin::Pin;

use crate::Result;
use crate::domain::{ItemSummary, Suggestion};

/// A boxed, sendable future (the ports are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that suggests items for a list: Perplexity, or the offline rules.
pub trait SuggestionProvider: Send + Sync + std::fmt::Debug {
    /// Short name, stored with the results and used in cache keys.
    fn name(&self) -> &'static str;
    /// Suggestions for a list with these items.
    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>>;
}

/// A key-value cache with expiry (Redis in production).
pub trait SuggestionCache: Send + Sync + std::fmt::Debug {
    /// The cached suggestions under `key`, if any (errors are reported, not fatal).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Suggestion>>>>;
    /// Stores suggestions under `key` for the configured TTL.
    fn put<'a>(&'a self, key: &'a str, value: &'a [Suggestion]) -> BoxFuture<'a, Result<()>>;
}
