//! A load generator playing the shopping-list clients: it registers a user, then at a steady
//! rate adds items, reads the list and asks for AI suggestions, through the Service. Every
//! item the API acknowledged is remembered, so a test can check afterwards that none was lost.
//!
//! Each request uses a new connection (no keep-alive), as many independent clients would, so
//! the Service spreads them over the pods that are up at that moment.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::{Error, Result};

/// Items per list before the generator starts a new list (keeps each read small).
const ITEMS_PER_LIST: usize = 50;

/// What the load generator saw so far.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed: non-2xx answers and transport errors.
    pub failed: u64,
    /// Item ids the API acknowledged, with their list id.
    pub written: Vec<(String, String)>,
    /// Suggestion requests accepted (202).
    pub suggestions: u64,
    /// The latest failures, for reports (at most 20).
    pub recent_errors: Vec<String>,
    /// Latency of every answered request, in order of completion.
    pub latencies: Vec<Duration>,
}

impl LoadStats {
    /// Latencies recorded since `before`.
    pub fn latencies_since(&self, before: &Self) -> &[Duration] {
        self.latencies
            .get(before.latencies.len()..)
            .unwrap_or_default()
    }

    /// Requests and failures since `before`.
    pub fn since(&self, before: &Self) -> (u64, u64) {
        (self.requests - before.requests, self.failed - before.failed)
    }
}

/// A running load generator. Stops when dropped.
#[derive(Debug)]
pub struct LoadGenerator {
    base_url: String,
    token: String,
    stats: Arc<Mutex<LoadStats>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Client {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|source| Error::Http {
            action: format!("calling {path}"),
            source,
        })?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| Error::Http {
            action: "building the load generator's client".to_owned(),
            source,
        })
}

fn lock(stats: &Mutex<LoadStats>) -> std::sync::MutexGuard<'_, LoadStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoadGenerator {
    /// Registers a user at `base_url` and starts sending `rate` requests per second.
    pub async fn start(base_url: &str, rate: u32) -> Result<Self> {
        let mut client = Client {
            http: http()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: None,
        };
        let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
        let credentials = json!({ "email": email, "password": "correct horse battery" });
        let (status, body) = client
            .call(Method::POST, "/v1/auth/register", Some(credentials.clone()))
            .await?;
        expect(status, StatusCode::CREATED, "register", &body)?;
        let (status, body) = client
            .call(Method::POST, "/v1/auth/login", Some(credentials))
            .await?;
        expect(status, StatusCode::OK, "login", &body)?;
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        client.token = Some(token.clone());

        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive(Arc::new(client), stats.clone(), rate.max(1), stopped));
        Ok(Self {
            base_url: base_url.to_owned(),
            token,
            stats,
            stop,
            task,
        })
    }

    /// The token of the generator's user (for a client acting as the same shopper).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A copy of the numbers so far.
    pub fn stats(&self) -> LoadStats {
        lock(&self.stats).clone()
    }

    /// Stops sending and waits for requests in flight.
    pub async fn stop(self) -> LoadStats {
        self.halt().await.0
    }

    /// Stops sending and waits (up to 15 s) for requests in flight: the numbers, and whether
    /// every request ended.
    async fn halt(self) -> (LoadStats, bool) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        let drained = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .is_ok();
        if !drained {
            abort.abort();
        }
        (lock(&self.stats).clone(), drained)
    }

    /// Stops sending, waits for requests in flight, then reads every list back: the numbers,
    /// and the acknowledged items that are missing. Reading back after the last write is
    /// what makes "none lost" cover every write the API acknowledged.
    pub async fn finish(self) -> Result<(LoadStats, Vec<String>)> {
        let client = Client {
            http: http()?,
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            token: Some(self.token.clone()),
        };
        let (stats, drained) = self.halt().await;
        if !drained {
            return Err(Error::Workload {
                message: "load generator: requests still in flight 15 s after it stopped"
                    .to_owned(),
            });
        }
        let mut lists: Vec<&str> = stats.written.iter().map(|(l, _)| l.as_str()).collect();
        lists.dedup();
        let mut present = std::collections::BTreeSet::new();
        for list in lists {
            let (status, body) = client
                .call(Method::GET, &format!("/v1/lists/{list}"), None)
                .await?;
            expect(status, StatusCode::OK, "reading a list back", &body)?;
            for item in body["items"].as_array().into_iter().flatten() {
                if let Some(id) = item["id"].as_str() {
                    present.insert(id.to_owned());
                }
            }
        }
        let lost = stats
            .written
            .iter()
            .filter(|(_, item)| !present.contains(item))
            .map(|(_, item)| item.clone())
            .collect();
        Ok((stats, lost))
    }
}

fn expect(got: StatusCode, want: StatusCode, what: &str, body: &Value) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Workload {
            message: format!("load generator: {what} answered {got}: {body}"),
        })
    }
}

/// The request loop: one operation per tick, each in its own task (at most 64 in flight).
async fn drive(
    client: Arc<Client>,
    stats: Arc<Mutex<LoadStats>>,
    rate: u32,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let in_flight = Arc::new(Semaphore::new(64));
    let list: Arc<tokio::sync::Mutex<Option<(String, usize)>>> = Arc::default();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        n += 1;
        let (client, stats, list) = (client.clone(), stats.clone(), list.clone());
        tokio::spawn(async move {
            let _permit = permit;
            operation(&client, &stats, &list, n).await;
        });
    }
    // Wait for the requests in flight.
    let _ = in_flight.acquire_many(64).await;
}

async fn operation(
    client: &Client,
    stats: &Mutex<LoadStats>,
    list: &tokio::sync::Mutex<Option<(String, usize)>>,
    n: u64,
) {
    let list_id = {
        let mut current = list.lock().await;
        if current
            .as_ref()
            .is_none_or(|(_, items)| *items >= ITEMS_PER_LIST)
        {
            let name = format!("Compra {n}");
            match client
                .call(Method::POST, "/v1/lists", Some(json!({ "name": name })))
                .await
            {
                Ok((StatusCode::CREATED, body)) => {
                    record(stats, Ok(()));
                    *current = body["id"].as_str().map(|id| (id.to_owned(), 0));
                }
                other => {
                    record(stats, Err(describe("create list", other)));
                    return;
                }
            }
        }
        match current.as_mut() {
            Some((id, items)) => {
                *items += 1;
                id.clone()
            }
            None => return,
        }
    };
    let started = std::time::Instant::now();
    let outcome = match n % 10 {
        0 => client
            .call(
                Method::POST,
                &format!("/v1/lists/{list_id}/suggestions"),
                None,
            )
            .await
            .and_then(|r| match r {
                (StatusCode::ACCEPTED, _) => {
                    lock(stats).suggestions += 1;
                    Ok(())
                }
                other => Err(unexpected("request suggestions", other)),
            }),
        n if n % 2 == 0 => client
            .call(Method::GET, &format!("/v1/lists/{list_id}"), None)
            .await
            .and_then(|r| match r {
                (StatusCode::OK, _) => Ok(()),
                other => Err(unexpected("read list", other)),
            }),
        _ => {
            let item = json!({ "name": format!("item {n}"), "quantity": 1 });
            client
                .call(
                    Method::POST,
                    &format!("/v1/lists/{list_id}/items"),
                    Some(item),
                )
                .await
                .and_then(|r| match r {
                    (StatusCode::CREATED, body) => {
                        if let Some(id) = body["id"].as_str() {
                            lock(stats).written.push((list_id.clone(), id.to_owned()));
                        }
                        Ok(())
                    }
                    other => Err(unexpected("add item", other)),
                })
        }
    };
    lock(stats).latencies.push(started.elapsed());
    record(stats, outcome.map_err(|e| e.to_string()));
}

fn unexpected(what: &str, (status, body): (StatusCode, Value)) -> Error {
    Error::Workload {
        message: format!("{what} answered {status}: {body}"),
    }
}

fn describe(what: &str, outcome: Result<(StatusCode, Value)>) -> String {
    match outcome {
        Ok(r) => unexpected(what, r).to_string(),
        Err(e) => format!("{what}: {e}"),
    }
}

fn record(stats: &Mutex<LoadStats>, outcome: std::result::Result<(), String>) {
    let mut s = lock(stats);
    s.requests += 1;
    match outcome {
        Ok(()) => s.ok += 1,
        Err(e) => {
            s.failed += 1;
            if s.recent_errors.len() >= 20 {
                s.recent_errors.remove(0);
            }
            s.recent_errors.push(e);
        }
    }
}
