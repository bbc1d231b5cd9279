//! The Perplexity chat-completions API as a suggestion provider.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{ItemSummary, MAX_SUGGESTIONS, Suggestion};
use crate::ports::{BoxFuture, SuggestionProvider};
use crate::{Error, Result};

/// The Perplexity chat-completions API.
#[derive(Clone)]
pub struct PerplexityProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
    timeout: Duration,
}

impl std::fmt::Debug for PerplexityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerplexityProvider")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatMessage {
    role: String,
    content: String,
}

fn provider_err(reason: impl Into<String>) -> Error {
    Error::Provider {
        provider: "perplexity",
        reason: reason.into(),
    }
}

/// An error worth retrying later (429, 5xx, timeout, no connection).
fn unavailable(reason: impl Into<String>, retry_after: Option<Duration>) -> Error {
    Error::ProviderUnavailable {
        provider: "perplexity",
        reason: reason.into(),
        retry_after,
    }
}

/// The pause a `Retry-After` value asks for: delay-seconds, or an HTTP-date (a date in the
/// past asks for none); `None` when absent or unreadable.
pub fn retry_after(value: Option<&str>, now: std::time::SystemTime) -> Option<Duration> {
    let value = value?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl PerplexityProvider {
    /// A client for `base_url` (`https://api.perplexity.ai` in production).
    pub fn new(base_url: &str, api_key: &str, model: &str, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| provider_err(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            model: model.to_owned(),
            timeout,
        })
    }

    fn prompt(items: &[ItemSummary]) -> String {
        let listed: Vec<String> = items
            .iter()
            .map(|i| match &i.category {
                Some(c) => format!("- {} ({c})", i.name),
                None => format!("- {}", i.name),
            })
            .collect();
        format!(
            "My shopping list:\n{}\n\nSuggest up to {MAX_SUGGESTIONS} other items I probably need. \
             Answer only with a JSON array of objects with the keys \"name\", \"category\" and \"reason\".",
            if listed.is_empty() {
                "(empty)".to_owned()
            } else {
                listed.join("\n")
            }
        )
    }

    /// Parses the assistant's answer: a JSON array, possibly inside a code fence. The entries
    /// are model output: the job validates them like user input
    /// ([`crate::domain::validate_suggestions`]), which also caps their number.
    pub fn parse_content(content: &str) -> Result<Vec<Suggestion>> {
        let start = content.find('[');
        let end = content.rfind(']');
        let (Some(start), Some(end)) = (start, end) else {
            return Err(provider_err("the answer holds no JSON array"));
        };
        if end < start {
            return Err(provider_err("the answer holds no JSON array"));
        }
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            category: Option<String>,
            reason: Option<String>,
        }
        let raw: Vec<Raw> = serde_json::from_str(&content[start..=end])
            .map_err(|e| provider_err(format!("the answer is not the JSON asked for: {e}")))?;
        Ok(raw
            .into_iter()
            .filter(|r| !r.name.trim().is_empty())
            .map(|r| Suggestion {
                name: r.name.trim().to_lowercase(),
                category: r
                    .category
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty()),
                reason: r.reason.unwrap_or_default(),
            })
            .collect())
    }

    #[tracing::instrument(name = "ai.provider", skip_all, fields(otel.kind = "client", provider = "perplexity", items = items.len()))]
    async fn call(&self, items: &[ItemSummary]) -> Result<Vec<Suggestion>> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You help people complete their shopping lists. Be concise."},
                {"role": "user", "content": Self::prompt(items)},
            ],
        });
        let response = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    unavailable(
                        format!("timed out after {} ms", self.timeout.as_millis()),
                        None,
                    )
                } else if e.is_connect() {
                    unavailable(format!("request failed: {e}"), None)
                } else {
                    provider_err(format!("request failed: {e}"))
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                std::time::SystemTime::now(),
            );
            let text = response.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (check PPLX_API_KEY)",
                429 => " (rate limited)",
                _ => "",
            };
            let excerpt: String = text.chars().take(200).collect();
            let reason = format!("HTTP {status}{hint}: {excerpt}");
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                unavailable(reason, wait)
            } else {
                provider_err(reason)
            });
        }
        let parsed: ChatResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                unavailable(
                    format!("timed out after {} ms", self.timeout.as_millis()),
                    None,
                )
            } else {
                provider_err(format!("unexpected response body: {e}"))
            }
        })?;
        let content = parsed
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .ok_or_else(|| provider_err("the response has no choices"))?;
        Self::parse_content(&content)
    }
}

impl SuggestionProvider for PerplexityProvider {
    fn name(&self) -> &'static str {
        "perplexity"
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        Box::pin(self.call(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_from_fenced_json() {
        let content = "Here you go:\n```json\n[{\"name\": \" Butter \", \"category\": \"Dairy\", \"reason\": \"toast\"}, {\"name\": \"\"}]\n```";
        let parsed = PerplexityProvider::parse_content(content).unwrap();
        assert_eq!(
            parsed,
            vec![Suggestion {
                name: "butter".to_owned(),
                category: Some("dairy".to_owned()),
                reason: "toast".to_owned()
            }]
        );
        assert!(PerplexityProvider::parse_content("no json here").is_err());
        assert!(PerplexityProvider::parse_content("[not json]").is_err());
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(Some(" 3 "), now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            retry_after(Some(&later), now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(Some(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(None, now), None);
    }
}
