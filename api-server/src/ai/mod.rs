//! The AI adapters: the suggestion providers (Perplexity, offline) and the worker that
//! consumes suggestion requests from RabbitMQ.

pub mod backlog;
mod offline;
mod perplexity;
mod retry;
mod worker;

pub use offline::OfflineProvider;
pub use perplexity::{PerplexityProvider, retry_after};
pub use retry::{FIRST_RETRY_DELAY, RetryPolicy, Retrying};
pub use worker::{ATTEMPTS_HEADER, DEFAULT_MAX_ATTEMPTS, LAST_ERROR_HEADER, Worker, attempts_of};

pub use crate::domain::MAX_SUGGESTIONS;
pub use crate::usecases::{CONSUMER, Handled, cache_key};
