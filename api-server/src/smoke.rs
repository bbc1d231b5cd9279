//! `listacompra-api smoke`: the runbook's smoke test, done the way a user would, against a
//! running API. The operator runs it as a Job of the new image against the new pods after a
//! rollout, and of the stable image against the stable pods after a rollback.
//!
//! Steps: health and readiness (awaited up to `ready_timeout`), register a throwaway
//! account, log in, create a list, add an item and read it back, ask for AI suggestions and
//! wait for their answer, then clean up (delete the list, log out). The first step that fails ends the run with an error naming
//! the step, the HTTP status and the answer's body; the list is deleted also then. The
//! throwaway account stays (the API has no account deletion): its e-mail,
//! `smoke-<uuid>@smoke.listacompra.test`, tells it apart.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Error, Result};

/// How the smoke test runs.
#[derive(Debug, Clone)]
pub struct SmokeConfig {
    /// Base URL of the API, e.g. `http://listacompra-api.staging.svc:8080`.
    pub base_url: String,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
    /// Longest wait for the AI suggestions to be ready (the worker answers through RabbitMQ).
    pub suggestion_timeout: Duration,
    /// How long `/health` and then `/ready` are awaited, together, before the step that
    /// waits fails (its last try may take up to `request_timeout` more).
    pub ready_timeout: Duration,
}

/// How often the health and readiness steps ask again.
const READY_POLL: Duration = Duration::from_millis(500);

/// One step that passed, and how long it took.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the step did.
    pub name: &'static str,
    /// How long it took.
    pub took: Duration,
}

/// Runs the smoke test; `on_step` hears of each step as it passes.
///
/// # Errors
/// [`Error::Smoke`] naming the first step that failed.
pub async fn run(config: &SmokeConfig, mut on_step: impl FnMut(&Step)) -> Result<Vec<Step>> {
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(|e| Error::Smoke {
            step: "start",
            message: format!("cannot build an HTTP client: {e}"),
        })?;
    let mut session = Session {
        http,
        base: config.base_url.trim_end_matches('/').to_owned(),
        token: None,
        list: None,
    };
    let mut passed = Vec::new();
    let mut record = |step: &Step| {
        on_step(step);
        passed.push(step.clone());
    };
    let outcome = session.steps(config, &mut record).await;
    // Clean up whatever the run created, also when a step failed.
    let cleanup = session.clean_up(&mut record).await;
    match (outcome, cleanup) {
        (Ok(()), Ok(())) => Ok(passed),
        (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err),
        // The first failure is the verdict; a clean-up that failed too is said with it.
        (Err(Error::Smoke { step, message }), Err(also)) => Err(Error::Smoke {
            step,
            message: format!("{message} (and the clean-up failed: {also})"),
        }),
        (Err(err), Err(_)) => Err(err),
    }
}

struct Session {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    list: Option<Uuid>,
}

impl Session {
    async fn steps(&mut self, config: &SmokeConfig, on_step: &mut impl FnMut(&Step)) -> Result<()> {
        // Health and readiness are states the API reaches (after a rollback, or once a
        // dependency recovers): awaited within one bound, as `kubectl wait` would. Every
        // later step gets one try.
        let ready_by = Instant::now() + config.ready_timeout;
        for (name, path) in [("health", "/health"), ("readiness", "/ready")] {
            self.step(name, on_step, |s| {
                s.await_ok(path, config.ready_timeout, ready_by)
            })
            .await?;
        }
        let email = format!("smoke-{}@smoke.listacompra.test", Uuid::new_v4().simple());
        let password = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let credentials = json!({ "email": email, "password": password });
        self.step("register", on_step, |s| {
            let body = credentials.clone();
            async move {
                s.call(
                    Method::POST,
                    "/v1/auth/register",
                    Some(body),
                    StatusCode::CREATED,
                )
                .await
                .map(drop)
            }
        })
        .await?;
        let login = self
            .step("log in", on_step, |s| {
                let body = credentials.clone();
                async move {
                    s.call(Method::POST, "/v1/auth/login", Some(body), StatusCode::OK)
                        .await
                }
            })
            .await?;
        self.token = Some(field(&login, "token", "log in")?);
        let list = self
            .step("create a list", on_step, |s| async move {
                s.call(
                    Method::POST,
                    "/v1/lists",
                    Some(json!({ "name": "smoke test" })),
                    StatusCode::CREATED,
                )
                .await
            })
            .await?;
        let list = uuid_field(&list, "id", "create a list")?;
        self.list = Some(list);
        let item = self
            .step("add an item", on_step, |s| async move {
                s.call(
                    Method::POST,
                    &format!("/v1/lists/{list}/items"),
                    Some(json!({ "name": "leche", "quantity": 2, "category": "lácteos" })),
                    StatusCode::CREATED,
                )
                .await
            })
            .await?;
        let item = uuid_field(&item, "id", "add an item")?;
        self.step("read the item back", on_step, |s| async move {
            let detail = s
                .call(
                    Method::GET,
                    &format!("/v1/lists/{list}"),
                    None,
                    StatusCode::OK,
                )
                .await?;
            let found = detail["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i["id"] == json!(item) && i["name"] == json!("leche"))
            });
            if found {
                Ok(())
            } else {
                Err(format!(
                    "GET /v1/lists/{list} does not show item {item}: {detail}"
                ))
            }
        })
        .await?;
        let timeout = config.suggestion_timeout;
        self.step("AI suggestions", on_step, |s| async move {
            let asked = s
                .call(
                    Method::POST,
                    &format!("/v1/lists/{list}/suggestions"),
                    None,
                    StatusCode::ACCEPTED,
                )
                .await?;
            let id = asked["id"]
                .as_str()
                .ok_or_else(|| format!("the answer has no suggestion id: {asked}"))?;
            let path = format!("/v1/lists/{list}/suggestions/{id}");
            let deadline = Instant::now() + timeout;
            loop {
                let view = s.call(Method::GET, &path, None, StatusCode::OK).await?;
                match view["status"].as_str() {
                    Some("done") => return Ok(()),
                    Some("pending") if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Some("pending") => {
                        return Err(format!(
                            "still pending after {}s (is the AI worker running?): {view}",
                            timeout.as_secs()
                        ));
                    }
                    _ => return Err(format!("the suggestions failed: {view}")),
                }
            }
        })
        .await
    }

    /// Deletes the list and logs out, when the run got that far (logs out also when the
    /// deletion failed); the first failure is returned.
    async fn clean_up(&mut self, on_step: &mut impl FnMut(&Step)) -> Result<()> {
        let mut deleted = Ok(());
        if let Some(list) = self.list.take() {
            deleted = self
                .step("delete the list", on_step, |s| async move {
                    s.call(
                        Method::DELETE,
                        &format!("/v1/lists/{list}"),
                        None,
                        StatusCode::NO_CONTENT,
                    )
                    .await
                    .map(drop)
                })
                .await;
        }
        let mut logged_out = Ok(());
        if self.token.is_some() {
            logged_out = self
                .step("log out", on_step, |s| async move {
                    s.call(
                        Method::POST,
                        "/v1/auth/logout",
                        None,
                        StatusCode::NO_CONTENT,
                    )
                    .await
                    .map(drop)
                })
                .await;
            self.token = None;
        }
        deleted.and(logged_out)
    }

    /// Runs one step, timing it; a failure becomes [`Error::Smoke`] naming it.
    async fn step<'s, T, F, Fut>(
        &'s self,
        name: &'static str,
        on_step: &mut impl FnMut(&Step),
        body: F,
    ) -> Result<T>
    where
        F: FnOnce(&'s Session) -> Fut,
        Fut: Future<Output = std::result::Result<T, String>> + 's,
    {
        let started = Instant::now();
        match body(self).await {
            Ok(value) => {
                on_step(&Step {
                    name,
                    took: started.elapsed(),
                });
                Ok(value)
            }
            Err(message) => Err(Error::Smoke {
                step: name,
                message,
            }),
        }
    }

    /// GET `path` until it answers 200, every [`READY_POLL`], until `by` (a last try may
    /// take up to the request timeout more); the error names the bound and the last answer.
    async fn await_ok(
        &self,
        path: &str,
        bound: Duration,
        by: Instant,
    ) -> std::result::Result<(), String> {
        loop {
            let last = match self.call(Method::GET, path, None, StatusCode::OK).await {
                Ok(_) => return Ok(()),
                Err(last) => last,
            };
            if Instant::now() + READY_POLL > by {
                return Err(format!(
                    "not answered within {}s; last: {last}",
                    bound.as_secs()
                ));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// One request; any status but `expected` is an error with the status and the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> std::result::Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {}", chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{method} {url}: reading the answer: {}", chain(&e)))?;
        if status != expected {
            return Err(format!(
                "{method} {path} answered {status} (expected {expected}): {}",
                one_line(&text, 300)
            ));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{method} {path}: the answer is not JSON ({e}): {}",
                one_line(&text, 300)
            )
        })
    }
}

/// An error with its causes, on one line ("error sending request ...: Connection refused").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// `text` on one line, at most `max` characters: the operator quotes the last line of a
/// failed smoke test's output, which must carry the whole error.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

fn field(value: &Value, name: &str, step: &'static str) -> Result<String> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Smoke {
            step,
            message: format!("the answer has no {name:?}: {value}"),
        })
}

fn uuid_field(value: &Value, name: &str, step: &'static str) -> Result<Uuid> {
    field(value, name, step)?.parse().map_err(|e| Error::Smoke {
        step,
        message: format!("{name:?} is not a UUID ({e}): {value}"),
    })
}
