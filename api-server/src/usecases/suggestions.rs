//! AI suggestions: requesting them (HTTP), reading them, and the worker's job.
//!
//! The job reads what it needs, lets go of the database while the provider answers (a slow
//! HTTP call must not hold a transaction), then records the result in a short transaction
//! together with its deduplication record, so a redelivered request has no second effect.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::{AppResult, UseCases, allowed};
use crate::Result;
use crate::domain::{Action, ItemSummary, NewEvent, Suggestion, SuggestionJob, SuggestionView};
use crate::error::AppError;
use crate::ports::{Store, SuggestionCache, SuggestionProvider, UnitOfWork};

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
            cache,
        }
    }

    async fn suggestions(&self, items: &[ItemSummary]) -> Result<Vec<Suggestion>> {
        let key = cache_key(self.provider.name(), items);
        if let Some(cache) = &self.cache {
            match cache.get(&key).await {
                Ok(Some(hit)) => return Ok(hit),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "AI cache read failed; asking the provider")
                }
            }
        }
        let fresh = self.provider.suggest(items).await?;
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
        // 2. Ask the provider (or the cache) outside any transaction.
        let outcome = self.suggestions(&items).await.map_err(|e| e.to_string());
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
            .finish_suggestion_request(job.request_id, self.provider.name(), &outcome)
            .await?;
        tx.commit().await?;
        Ok(match (finished, outcome.is_ok()) {
            (false, _) => Handled::Ignored,
            (true, true) => Handled::Done,
            (true, false) => Handled::Failed,
        })
    }
}
