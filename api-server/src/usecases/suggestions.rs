//! AI suggestions: requesting them (HTTP), reading them, and the worker's job.
//!
//! The job reads what it needs, lets go of the database while the provider answers (a slow
//! HTTP call must not hold a transaction), then records the result in a short transaction
//! together with its deduplication record, so a redelivered request has no second effect.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::domain::{
    Action, ItemSummary, NewEvent, Suggestion, SuggestionJob, SuggestionView, validate_suggestions,
};
use crate::error::AppError;
use crate::ports::{Store, SuggestionCache, SuggestionProvider, UnitOfWork};
use crate::{Error, Result};

/// Consumer name in `processed_events`.
pub const CONSUMER: &str = "ai-worker";

impl<S: Store, H, T> UseCases<S, H, T> {
    /// Records a suggestion request; the worker answers it later (members and owners).
    pub async fn request_suggestions(&self, user: Uuid, list: Uuid) -> AppResult<SuggestionView> {
        let mut tx = self.store.begin().await?;
        allowed(&mut tx, list, user, Action::RequestSuggestions).await?;
        let view = tx
            .insert_suggestion_request(user, list)
            .await?
            .ok_or(AppError::NotFound("list"))?;
        tx.publish(&NewEvent::suggestion_requested(view.id, list))
            .await?;
        tx.commit().await?;
        Ok(view)
    }

    /// A suggestion request of a list the caller is a member of.
    pub async fn get_suggestions(
        &self,
        user: Uuid,
        list: Uuid,
        id: Uuid,
    ) -> AppResult<SuggestionView> {
        self.store
            .suggestion_request(user, list, id)
            .await?
            .ok_or(AppError::NotFound("suggestion request"))
    }
}

/// The cache key of a provider's answer for these items (order and case do not matter).
pub fn cache_key(provider: &str, items: &[ItemSummary]) -> String {
    let mut normal: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i.name.trim().to_lowercase(),
                i.category.clone().unwrap_or_default().to_lowercase(),
            )
        })
        .collect();
    normal.sort();
    let mut h = std::hash::DefaultHasher::new();
    normal.hash(&mut h);
    format!("listacompra:ai:v1:{provider}:{:016x}", h.finish())
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Suggestions stored.
    Done,
    /// The provider failed; the request is marked failed.
    Failed,
    /// Seen before (a redelivery): no effect.
    Duplicate,
    /// Nothing to do: not a suggestion request we can read, or the request is gone or
    /// already finished.
    Ignored,
}

/// The worker's use case: answers suggestion requests.
#[derive(Debug, Clone)]
pub struct SuggestionJobs<S> {
    store: S,
    provider: Arc<dyn SuggestionProvider>,
    fallback: Option<Arc<dyn SuggestionProvider>>,
    cache: Option<Arc<dyn SuggestionCache>>,
}

impl<S: Store> SuggestionJobs<S> {
    /// Jobs over a store, a provider and an optional cache.
    pub fn new(
        store: S,
        provider: Arc<dyn SuggestionProvider>,
        cache: Option<Arc<dyn SuggestionCache>>,
    ) -> Self {
        Self {
            store,
            provider,
            fallback: None,
            cache,
        }
    }

    /// The jobs with a provider that answers when the first one fails.
    #[must_use]
    pub fn with_fallback(mut self, fallback: Arc<dyn SuggestionProvider>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// `provider`'s answer (or the cached one), validated like user input: invalid entries
    /// are dropped; an answer with entries but none valid is an error.
    async fn suggestions(
        &self,
        provider: &dyn SuggestionProvider,
        items: &[ItemSummary],
    ) -> Result<Vec<Suggestion>> {
        let key = cache_key(provider.name(), items);
        if let Some(cache) = &self.cache {
            match cache.get(&key).await {
                Ok(Some(hit)) => return Ok(hit),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "AI cache read failed; asking the provider")
                }
            }
        }
        let raw = provider.suggest(items).await?;
        let offered = raw.len();
        let (fresh, invalid) = validate_suggestions(raw);
        if invalid > 0 {
            tracing::warn!(
                provider = provider.name(),
                invalid,
                offered,
                "dropped invalid suggestions of the provider"
            );
        }
        if fresh.is_empty() && offered > 0 {
            return Err(Error::Provider {
                provider: provider.name(),
                reason: format!("none of the {offered} suggestions in the answer is valid"),
            });
        }
        if let Some(cache) = &self.cache
            && let Err(err) = cache.put(&key, &fresh).await
        {
            tracing::warn!(error = %err, "AI cache write failed");
        }
        Ok(fresh)
    }

    /// Answers one request. An `Err` means "try again later" (nothing was recorded).
    pub async fn handle(&self, job: SuggestionJob) -> Result<Handled> {
        // 1. Read what is needed; no transaction stays open.
        if self.store.already_processed(CONSUMER, job.event_id).await? {
            tracing::info!(event_id = %job.event_id, "duplicate delivery ignored");
            return Ok(Handled::Duplicate);
        }
        let Some(items) = self.store.pending_request_items(job.request_id).await? else {
            tracing::info!(request_id = %job.request_id, "suggestion request gone or finished");
            return Ok(Handled::Ignored);
        };
        // 2. Ask the provider (or the cache) outside any transaction; when it fails, the
        //    fallback provider if there is one.
        let (provider, outcome) = match self.suggestions(&*self.provider, &items).await {
            Ok(found) => (self.provider.name(), Ok(found)),
            Err(err) => match &self.fallback {
                Some(fallback) => {
                    tracing::warn!(request_id = %job.request_id, error = %err, fallback = fallback.name(), "AI provider failed; asking the fallback");
                    let answer = self.suggestions(&**fallback, &items).await;
                    (fallback.name(), answer.map_err(|e| e.to_string()))
                }
                None => (self.provider.name(), Err(err.to_string())),
            },
        };
        if let Err(err) = &outcome {
            tracing::warn!(request_id = %job.request_id, error = %err, "AI suggestion job failed");
        }
        // 3. Record the result and the delivery together, in a short transaction: if another
        //    delivery of the same event got here first, this one has no effect.
        let mut tx = self.store.begin().await?;
        if !tx.first_delivery(CONSUMER, job.event_id).await? {
            tracing::info!(event_id = %job.event_id, "duplicate delivery ignored");
            return Ok(Handled::Duplicate);
        }
        let finished = tx
            .finish_suggestion_request(job.request_id, provider, &outcome)
            .await?;
        tx.commit().await?;
        Ok(match (finished, outcome.is_ok()) {
            (false, _) => Handled::Ignored,
            (true, true) => Handled::Done,
            (true, false) => Handled::Failed,
        })
    }

    /// Gives up on a request whose job keeps failing: marks it failed with `reason`, once
    /// (a redelivery of the same event has no effect). `Failed` when it was marked.
    pub async fn give_up(&self, job: SuggestionJob, reason: &str) -> Result<Handled> {
        let mut tx = self.store.begin().await?;
        if !tx.first_delivery(CONSUMER, job.event_id).await? {
            return Ok(Handled::Duplicate);
        }
        let finished = tx
            .finish_suggestion_request(
                job.request_id,
                self.provider.name(),
                &Err(reason.to_owned()),
            )
            .await?;
        tx.commit().await?;
        Ok(if finished {
            Handled::Failed
        } else {
            Handled::Ignored
        })
    }
}
