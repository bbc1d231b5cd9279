//! Retries of a suggestion provider: a provider that is unavailable for now (429, 5xx,
//! timeout, connection refused) is asked again with exponential backoff and jitter
//! ([`backon`]), honouring its `Retry-After` up to a cap; other errors are returned at once.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::domain::{ItemSummary, Suggestion};
use crate::ports::{BoxFuture, SuggestionProvider};
use crate::{Error, Result};

/// The first pause between two calls (then doubling, with jitter).
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How a provider is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first call (`AI_PROVIDER_RETRIES`, default 3); 0 disables them.
    pub retries: usize,
    /// Longest pause between two calls (`AI_PROVIDER_MAX_DELAY_MS`, default 10 s). A
    /// `Retry-After` longer than this ends the retries (the provider asked for more time
    /// than a job may wait).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before the next call after `err`, given the backoff's proposal `next`
    /// (`None` once the retries are used up): the provider's `Retry-After` when it gave
    /// one, unless it exceeds `max_delay` (then no retry).
    pub fn pause(&self, err: &Error, next: Option<Duration>) -> Option<Duration> {
        let next = next?;
        match err.retry_after() {
            Some(after) if after > self.max_delay => None,
            Some(after) => Some(after),
            None => Some(next.min(self.max_delay)),
        }
    }
}

/// A provider retried by a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Retrying {
    inner: Arc<dyn SuggestionProvider>,
    policy: RetryPolicy,
}

impl Retrying {
    /// `inner`, retried by `policy`.
    pub fn new(inner: Arc<dyn SuggestionProvider>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

impl SuggestionProvider for Retrying {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(FIRST_RETRY_DELAY)
            .with_max_delay(self.policy.max_delay)
            .with_max_times(self.policy.retries)
            .with_jitter();
        let policy = self.policy;
        let name = self.inner.name();
        Box::pin(
            (|| self.inner.suggest(items))
                .retry(backoff)
                .sleep(tokio::time::sleep)
                .when(Error::is_provider_unavailable)
                .adjust(move |err, next| policy.pause(err, next))
                .notify(move |err, pause| {
                    tracing::warn!(provider = name, error = %err, retry_in_ms = pause.as_millis() as u64, "AI provider unavailable; retrying");
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(retry_after: Option<Duration>) -> Error {
        Error::ProviderUnavailable {
            provider: "test",
            reason: "HTTP 429".to_owned(),
            retry_after,
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_the_backoff_ends_the_retries() {
        let policy = RetryPolicy {
            retries: 3,
            max_delay: Duration::from_secs(10),
        };
        let next = Some(Duration::from_millis(700));
        assert_eq!(
            policy.pause(&busy(Some(Duration::from_secs(3))), next),
            Some(Duration::from_secs(3))
        );
        assert_eq!(policy.pause(&busy(None), next), next);
        assert_eq!(
            policy.pause(&busy(Some(Duration::from_secs(11))), next),
            None,
            "longer than the cap: give up now"
        );
        assert_eq!(
            policy.pause(&busy(Some(Duration::from_secs(1))), None),
            None,
            "retries used up"
        );
        assert_eq!(
            policy.pause(&busy(None), Some(Duration::from_secs(60))),
            Some(Duration::from_secs(10))
        );
    }
}
