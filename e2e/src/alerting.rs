//! The local alert path: the shipped alert rules in the real Prometheus, the real Alertmanager
//! routing what fires with `config/alertmanager/alertmanager.yml`, and a Slack-compatible
//! receiver that records what Alertmanager posts (its incoming-webhook payload).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use warp::Filter;

use crate::services::Services;
use crate::{Error, Result};

/// The shipped alert rules (the Helm chart carries a byte-identical copy).
pub const RULES_FILE: &str = "config/prometheus/listacompra-rules.yaml";

/// One Slack message as Alertmanager posted it.
#[derive(Debug, Clone)]
pub struct SlackMessage {
    /// The `channel` field.
    pub channel: String,
    /// The titles and texts of its attachments, one per line.
    pub text: String,
    /// The whole payload.
    pub raw: Value,
}

impl SlackMessage {
    fn from_payload(raw: Value) -> Self {
        let channel = raw["channel"].as_str().unwrap_or_default().to_owned();
        let text = raw["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| [&a["title"], &a["text"]])
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        Self { channel, text, raw }
    }
}

/// A local stand-in for Slack's incoming webhooks: every JSON body posted to it is recorded.
/// While it lives, the local Alertmanager's Slack URL (a Secret in a cluster, a file here)
/// points at it; dropping it points the URL back at a closed port.
#[derive(Debug)]
pub struct SlackReceiver {
    messages: Arc<Mutex<Vec<SlackMessage>>>,
    url_file: PathBuf,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl SlackReceiver {
    /// Starts the receiver on a loopback port and points Alertmanager at it.
    pub async fn start(services: &Services) -> Result<Self> {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        let route = warp::post()
            .and(warp::body::json())
            .map(move |payload: Value| {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(SlackMessage::from_payload(payload));
                // What Slack answers.
                "ok"
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io {
                action: "binding the Slack receiver".to_owned(),
                source,
            })?;
        let address: SocketAddr = listener.local_addr().map_err(|source| Error::Io {
            action: "reading the Slack receiver's address".to_owned(),
            source,
        })?;
        let server = tokio::spawn(warp::serve(route).incoming(listener).run());
        let url_file = PathBuf::from(services.slack_webhook_url_file()?);
        let url = format!("http://{address}/services/T0/B0/local-test\n");
        // Alertmanager reads the file at each notification.
        std::fs::write(&url_file, &url).map_err(|source| Error::Write {
            path: url_file.clone(),
            source,
        })?;
        Ok(Self {
            messages,
            url_file,
            url,
            server,
        })
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<SlackMessage> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The messages whose text contains `needle` (a release name, for example).
    pub fn mentioning(&self, needle: &str) -> Vec<SlackMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.text.contains(needle))
            .collect()
    }
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.server.abort();
        // Only while the URL is still ours: another receiver may have taken over since.
        if std::fs::read_to_string(&self.url_file).is_ok_and(|u| u == self.url) {
            let _ = std::fs::write(&self.url_file, "http://127.0.0.1:9/no-slack-receiver\n");
        }
    }
}

/// Alerting rules loaded into the real Prometheus for one test, removed again on drop. The
/// file is named after the process (`fast-<pid>-<name>.yml`), and files of processes that no
/// longer run (a test killed before its drop) are removed by the next install.
#[derive(Debug)]
pub struct LoadedRules {
    path: PathBuf,
    reload_url: String,
}

impl LoadedRules {
    /// The shipped rules with every `for:` shortened to 0s, so a test sees in seconds what
    /// production sees after minutes.
    pub async fn shipped_fast(services: &Services, name: &str) -> Result<Self> {
        let source = crate::env::repo_root().join(RULES_FILE);
        let text = std::fs::read_to_string(&source).map_err(|source_err| Error::Io {
            action: format!("reading {}", source.display()),
            source: source_err,
        })?;
        let fast: String = text
            .lines()
            .map(|line| match line.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 0s", &line[..line.len() - line.trim_start().len()]),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        Self::install(services, name, &fast).await
    }

    /// Rules of the test's own (a Prometheus rules file), named `name`.
    pub async fn install(services: &Services, name: &str, rules: &str) -> Result<Self> {
        let dir = services.prometheus_rules_dir()?;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let pid = file
                .strip_prefix("fast-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let path = dir.join(format!("fast-{}-{name}.yml", std::process::id()));
        std::fs::write(&path, rules).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        let loaded = Self {
            path,
            reload_url: format!("{}/-/reload", services.prometheus_url()?),
        };
        reqwest::Client::new()
            .post(&loaded.reload_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| Error::Http {
                action: "reloading Prometheus' rules".to_owned(),
                source,
            })?;
        Ok(loaded)
    }
}

impl Drop for LoadedRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // Drop cannot await; curl is installed by `make test`.
        let _ = std::process::Command::new("curl")
            .args(["-fsS", "-X", "POST", &self.reload_url])
            .output();
    }
}

/// The alerts the real Alertmanager holds whose labels match `filter` (Alertmanager matcher
/// syntax, e.g. `release="lc-1"`), as its API v2 returns them (with `status.state` and
/// `status.inhibitedBy`).
pub async fn alertmanager_alerts(services: &Services, filter: &str) -> Result<Vec<Value>> {
    let url = format!("{}/api/v2/alerts", services.alertmanager_url()?);
    let body: Value = reqwest::Client::new()
        .get(&url)
        .query(&[("filter", filter)])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|source| Error::Http {
            action: format!("listing Alertmanager's alerts ({filter})"),
            source,
        })?
        .json()
        .await
        .map_err(|source| Error::Http {
            action: "reading Alertmanager's alerts".to_owned(),
            source,
        })?;
    Ok(body.as_array().cloned().unwrap_or_default())
}
