//! The AI adapters: the suggestion providers (Perplexity, offline) and the worker that
//! consumes suggestion requests from RabbitMQ.

mod offline;
mod perplexity;
mod worker;

pub use offline::OfflineProvider;
pub use perplexity::PerplexityProvider;
pub use worker::Worker;

pub use crate::domain::MAX_SUGGESTIONS;
pub use crate::usecases::{CONSUMER, Handled, cache_key};
