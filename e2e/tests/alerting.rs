//! Alert routing as the runbook has it (Alertmanager integrated with Slack,
//! `#alerts-listacompra`), checked with the real tools:
//!
//! - `config/alertmanager/alertmanager.yml` passes `amtool check-config`; the cases of
//!   `config/alertmanager/tests/routes.yaml`, and every alert the shipped rules can raise, in
//!   both environments, reach the receivers `amtool config routes test` must find;
//! - end to end, with the real API binary, the real Prometheus running the shipped rules (their
//!   `for:` shortened), the real Alertmanager with the shipped configuration and a local
//!   Slack-compatible receiver: a KPI breach of a production release ends as one message in
//!   `#alerts-listacompra` naming the release, the version and the KPI; while the operator
//!   rolls the release back (its real metrics, served by its real `/metrics` endpoint), the KPI
//!   alert is inhibited; the rollback ends as one message naming the release and the version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::alerting::{LoadedRules, RULES_FILE, SlackMessage, SlackReceiver, alertmanager_alerts};
use e2e::api::ApiProcess;
use e2e::env::{Component, ensure_blocking, repo_root};
use e2e::services::Services;
use listacompra_crds::Phase;
use listacompra_operator::telemetry::Metrics;
use serde_json::{Value, json};

const CONFIG: &str = "config/alertmanager/alertmanager.yml";
const ROUTE_CASES: &str = "config/alertmanager/tests/routes.yaml";
const PRODUCTION_CHANNEL: &str = "#alerts-listacompra";

fn amtool(args: &[&str]) -> Result<(bool, String)> {
    // Starting Alertmanager through the harness also installs amtool (Debian's package).
    ensure_blocking(&[Component::Alertmanager])?;
    let output = Command::new("amtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .context("run amtool (Debian package prometheus-alertmanager)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// Whether Alertmanager routes an alert with `labels` to exactly `receivers`.
fn routes_to(labels: &BTreeMap<String, String>, receivers: &[String]) -> Result<(bool, String)> {
    let config = format!("--config.file={CONFIG}");
    let verify = format!("--verify.receivers={}", receivers.join(","));
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["config", "routes", "test", &config, &verify];
    args.extend(pairs.iter().map(String::as_str));
    amtool(&args)
}

fn read_yaml(relative: &str) -> Result<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(repo_root().join(relative))
        .with_context(|| format!("read {relative}"))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parse {relative}"))
}

#[test]
fn the_alertmanager_configuration_passes_amtool_check_config() -> Result<()> {
    let (ok, text) = amtool(&["check-config", CONFIG])?;
    ensure!(ok, "amtool check-config {CONFIG} failed:\n{text}");
    ensure!(
        text.contains("4 receivers") && text.contains("2 inhibit rules"),
        "{text}"
    );
    Ok(())
}

#[test]
fn every_routing_case_reaches_its_receivers() -> Result<()> {
    let cases = read_yaml(ROUTE_CASES)?;
    let cases = cases["cases"].as_sequence().context("cases")?;
    ensure!(cases.len() >= 8, "{ROUTE_CASES} has too few cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().context("name")?;
        let labels: BTreeMap<String, String> = serde_yaml_ng::from_value(case["labels"].clone())?;
        let receivers: Vec<String> = serde_yaml_ng::from_value(case["receivers"].clone())?;
        let (ok, text) = routes_to(&labels, &receivers)?;
        if !ok {
            failures.push(format!(
                "{name}: expected {receivers:?}, amtool says {text}"
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The alerts of the shipped rules with their own labels (severity, kpi).
fn shipped_alerts() -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let rules = read_yaml(RULES_FILE)?;
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().context("groups")? {
        for rule in group["rules"].as_sequence().context("rules")? {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let labels: BTreeMap<String, String> =
                serde_yaml_ng::from_value(rule["labels"].clone()).unwrap_or_default();
            alerts.push((alert.to_owned(), labels));
        }
    }
    ensure!(alerts.len() >= 10, "too few alerts in {RULES_FILE}");
    Ok(alerts)
}

#[test]
fn every_shipped_alert_is_routed_by_environment_and_severity() -> Result<()> {
    let mut failures = Vec::new();
    for (alert, rule_labels) in shipped_alerts()? {
        let severity = rule_labels.get("severity").context("severity")?.clone();
        // The operator's own health concerns production too, whatever its namespace.
        let platform = alert.starts_with("ListaCompraOperator") || alert == "ListaCompraApiAbsent";
        for namespace in ["production", "staging"] {
            let mut labels = rule_labels.clone();
            labels.insert("alertname".to_owned(), alert.clone());
            labels.insert("namespace".to_owned(), namespace.to_owned());
            let expected = match (severity.as_str(), namespace == "production" || platform) {
                ("info", _) => "null",
                ("critical", true) => "slack-production-critical",
                (_, true) => "slack-production",
                (_, false) => "slack-staging",
            };
            let (ok, text) = routes_to(&labels, &[expected.to_owned()])?;
            if !ok {
                failures.push(format!(
                    "{alert} in {namespace}: expected {expected}, {text}"
                ));
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// A scrape target file for the real Prometheus, removed on drop.
struct Target(PathBuf);

impl Target {
    fn write(dir: &Path, name: &str, address: &str, labels: Value) -> Result<Self> {
        let path = dir.join(format!("{name}.json"));
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(
            &tmp,
            json!([{ "targets": [address], "labels": labels }]).to_string(),
        )?;
        std::fs::rename(&tmp, &path)?;
        Ok(Self(path))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Polls `check` every second until it returns `Some`, or fails after `timeout` naming `what`
/// and what the Slack receiver holds.
async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    slack: &SlackReceiver,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    e2e::cluster::poll(what, timeout, Duration::from_secs(1), check)
        .await
        .map_err(|e| {
            let received: Vec<String> = slack
                .messages()
                .iter()
                .map(|m| format!("{}: {}", m.channel, m.text))
                .collect();
            e.context(format!("Slack received:\n{}", received.join("\n---\n")))
        })
}

fn titled<'a>(messages: &'a [SlackMessage], alert: &str) -> Vec<&'a SlackMessage> {
    messages
        .iter()
        .filter(|m| {
            m.raw["attachments"][0]["title"]
                .as_str()
                .is_some_and(|t| t.contains(alert))
        })
        .collect()
}

#[tokio::test]
async fn a_kpi_breach_and_the_operator_rollback_each_reach_slack_once() -> Result<()> {
    let services = Services::start(&[
        Component::Postgres,
        Component::Redis,
        Component::RabbitMq,
        Component::Alertmanager,
        Component::Prometheus,
    ])
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let release = format!("alerting-{run}");
    let version = "1.3.0";
    let slack = SlackReceiver::start(&services).await?;
    let _rules = LoadedRules::shipped_fast(&services, &format!("alerting-{run}")).await?;
    let targets = services.prometheus_targets_dir()?;

    // The release's API: the real binary, 600 ms added to every /v1 request (a bad build).
    let api = ApiProcess::start(
        &services,
        &format!("alerting_{run}"),
        &[
            ("APP_VERSION", version),
            ("RUN_WORKER", "false"),
            ("FAULT_LATENCY_MS", "600"),
        ],
        std::env::temp_dir().join(format!("alerting-{run}-api.log")),
    )
    .await?;
    let (port, base) = (api.port, api.base.clone());
    let log = api.log_path().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // Scraped as the pods of `release` in production are (ServiceMonitor relabeling).
    let api_target = Target::write(
        &targets,
        &format!("alerting-{run}-api"),
        &format!("127.0.0.1:{port}"),
        json!({ "namespace": "production", "release": release }),
    )?;

    // The operator's real metrics endpoint, while it verifies the release.
    let metrics = Arc::new(Metrics::new()?);
    metrics.set_phase("production", &release, Some((Phase::Verifying, version)));
    let (operator_address, operator_server) = listacompra_operator::server::serve(
        "127.0.0.1:0".parse()?,
        metrics.clone(),
        Arc::new(AtomicBool::new(true)),
    )
    .await?;
    let operator_server = tokio::spawn(operator_server);
    let _operator_target = Target::write(
        &targets,
        &format!("alerting-{run}-operator"),
        &operator_address.to_string(),
        json!({}),
    )?;

    // Traffic keeps the latency histogram moving until the rollback stops the bad build.
    let traffic_on = Arc::new(AtomicBool::new(true));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, on) = (http.clone(), format!("{base}/v1/lists"), traffic_on.clone());
            tokio::spawn(async move {
                // Bounded: at most 10 minutes of requests, whatever happens to the test.
                let stop = tokio::time::Instant::now() + Duration::from_secs(600);
                while on.load(Ordering::Relaxed) && tokio::time::Instant::now() < stop {
                    let _ = http.get(&url).send().await;
                }
            })
        })
        .collect();

    let result = async {
        // 1. The KPI breach: one message in the production channel naming release, version, KPI.
        let breach = wait_for(
            "the p95 latency alert in Slack",
            Duration::from_secs(180),
            &slack,
            || async {
                let found = slack.mentioning(&release);
                Ok(titled(&found, "ListaCompraApiLatencyHigh")
                    .first()
                    .map(|m| (*m).clone()))
            },
        )
        .await?;
        ensure!(breach.channel == PRODUCTION_CHANNEL, "{breach:?}");
        for part in [
            format!("release: `{release}`"),
            format!("version: `{version}`"),
            "KPI: `p95-latency-ms`".to_owned(),
            "[FIRING:1]".to_owned(),
        ] {
            ensure!(
                breach.text.contains(&part),
                "{part:?} missing in {}",
                breach.text
            );
        }

        // 2. The operator rolls the release back: the KPI alert is inhibited, not re-sent.
        metrics.set_phase("production", &release, Some((Phase::RollingBack, version)));
        let filter = format!("release=\"{release}\"");
        wait_for(
            "the KPI alert to be inhibited",
            Duration::from_secs(60),
            &slack,
            || async {
                let alerts = alertmanager_alerts(&services, &filter).await?;
                Ok(alerts
                    .iter()
                    .find(|a| {
                        a["labels"]["alertname"] == "ListaCompraApiLatencyHigh"
                            && a["status"]["state"] == "suppressed"
                            && a["status"]["inhibitedBy"]
                                .as_array()
                                .is_some_and(|i| !i.is_empty())
                    })
                    .map(|_| ()))
            },
        )
        .await?;

        // 3. Rolled back: the bad build is gone, one message names the release and version.
        traffic_on.store(false, Ordering::Relaxed);
        drop(api_target);
        metrics.set_phase("production", &release, Some((Phase::RolledBack, version)));
        let rolled_back = wait_for(
            "the rollback alert in Slack",
            Duration::from_secs(120),
            &slack,
            || async {
                let found = slack.mentioning(&release);
                Ok(titled(&found, "ListaCompraReleaseRolledBack")
                    .first()
                    .map(|m| (*m).clone()))
            },
        )
        .await?;
        ensure!(rolled_back.channel == PRODUCTION_CHANNEL, "{rolled_back:?}");
        ensure!(
            rolled_back
                .text
                .contains(&format!("production/{release} {version}")),
            "{}",
            rolled_back.text
        );

        // Once each, nothing for the rollback in progress, nothing in another channel.
        let all = slack.mentioning(&release);
        ensure!(
            titled(&all, "ListaCompraApiLatencyHigh").len() == 1,
            "{all:#?}"
        );
        ensure!(
            titled(&all, "ListaCompraReleaseRolledBack").len() == 1,
            "{all:#?}"
        );
        ensure!(
            titled(&all, "ListaCompraReleaseRollingBack").is_empty(),
            "{all:#?}"
        );
        ensure!(
            all.iter().all(|m| m.channel == PRODUCTION_CHANNEL),
            "{all:#?}"
        );
        anyhow::Ok(())
    }
    .await;
    traffic_on.store(false, Ordering::Relaxed);
    for task in traffic {
        let _ = task.await;
    }
    operator_server.abort();
    let result = result.with_context(|| format!("API log: {}", log.display()));
    if result.is_ok() {
        api.stop(&services).await?;
    }
    result
}
