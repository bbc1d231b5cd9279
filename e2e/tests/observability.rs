//! Alert rules and dashboards, checked with the real tools and against the code.
//!
//! - `config/prometheus/listacompra-rules.yaml` passes `promtool check rules`, and the unit
//!   tests in `config/prometheus/tests/` pass `promtool test rules` and fire every alert;
//! - the Helm chart ships the same rules byte for byte;
//! - rules and the Grafana dashboards in `config/grafana/` use only metric names the API
//!   (`listacompra_crds::metrics`) and the operator (`telemetry::names`) export;
//! - every dashboard query parses and runs in the real Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use e2e::env::{Component, ensure_blocking, repo_root};
use listacompra_crds::metrics as api;
use listacompra_operator::telemetry::names as operator;
use serde_json::Value;

const RULES: &str = "config/prometheus/listacompra-rules.yaml";
const CHART_RULES: &str = "helm/listacompra-operator/files/prometheus-rules.yaml";
const RULE_TESTS: &str = "config/prometheus/tests";
const DASHBOARDS: [&str; 3] = [
    "config/grafana/listacompra-api.json",
    "config/grafana/queue-latency.json",
    "config/grafana/listacompra-releases.json",
];

fn path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// Every metric name the code exports, plus Prometheus' own `up`.
fn exported_metrics() -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&str> = [
        api::HTTP_REQUEST_DURATION_SECONDS,
        api::AI_JOBS_TOTAL,
        api::OUTBOX_RETRIES_TOTAL,
        api::OUTBOX_BACKLOG,
        api::OUTBOX_QUEUE_LATENCY_SECONDS,
        api::DEAD_LETTERS_TOTAL,
        api::OUTBOX_DEAD,
        api::AI_QUEUE_MESSAGES,
        api::AI_OLDEST_PENDING_SECONDS,
    ]
    .into_iter()
    .collect();
    names.extend(operator::ALL);
    names.insert("up");
    names
}

/// The metric names a PromQL expression (or a Grafana `label_values(...)` query) reads:
/// every identifier that starts with `listacompra_` or is followed by a `{` selector, outside
/// quoted strings and `$variables`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect();
            let variable = start > 0 && chars[start - 1] == '$';
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if !variable && (token.starts_with("listacompra_") || next == Some(&'{')) {
                names.insert(token);
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Names in `used` that the code does not export (histogram series may end in `_bucket`,
/// `_count` or `_sum`).
fn unknown_metrics(used: &BTreeSet<String>) -> Vec<String> {
    let exported = exported_metrics();
    used.iter()
        .filter(|name| {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !exported.contains(name.as_str()) && !exported.contains(base)
        })
        .cloned()
        .collect()
}

fn read_yaml(relative: &str) -> Result<serde_yaml_ng::Value> {
    let text =
        std::fs::read_to_string(path(relative)).with_context(|| format!("read {relative}"))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parse {relative}"))
}

/// `alert name -> expr` of every alerting rule.
fn alerts() -> Result<BTreeMap<String, String>> {
    let rules = read_yaml(RULES)?;
    let mut alerts = BTreeMap::new();
    for group in rules["groups"].as_sequence().context("groups")? {
        for rule in group["rules"].as_sequence().context("rules")? {
            let expr = rule["expr"].as_str().context("expr")?.to_owned();
            if let Some(alert) = rule["alert"].as_str() {
                ensure!(
                    alerts.insert(alert.to_owned(), expr).is_none(),
                    "alert {alert} is defined twice"
                );
            }
        }
    }
    Ok(alerts)
}

fn rule_test_files() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path(RULE_TESTS))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    ensure!(!files.is_empty(), "no rule tests in {RULE_TESTS}");
    Ok(files)
}

fn promtool(args: &[&str], files: &[&Path]) -> Result<String> {
    // Starting Prometheus through the harness also installs promtool (Debian's prometheus).
    ensure_blocking(&[Component::Prometheus])?;
    let output = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(repo_root())
        .output()
        .context("run promtool (Debian package prometheus)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    Ok(text)
}

#[test]
fn alert_rules_pass_promtool_check() -> Result<()> {
    let out = promtool(&["check", "rules"], &[&path(RULES)])?;
    let count = alerts()?.len();
    ensure!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
    Ok(())
}

#[test]
fn alert_rule_unit_tests_pass_promtool_test() -> Result<()> {
    let files = rule_test_files()?;
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = promtool(&["test", "rules"], &refs)?;
    ensure!(!out.contains("FAILED"), "{out}");
    Ok(())
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it() -> Result<()> {
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in rule_test_files()? {
        let text = std::fs::read_to_string(&file)?;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
        for test in doc["tests"].as_sequence().context("tests")? {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().context("alertname")?.to_owned();
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected > 0 {
                    fired.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    let alerts = alerts()?;
    let never_fired: Vec<_> = alerts.keys().filter(|a| !fired.contains(*a)).collect();
    ensure!(
        never_fired.is_empty(),
        "alerts without a unit test that fires them: {never_fired:?}"
    );
    let unknown: Vec<_> = fired
        .union(&quiet)
        .filter(|a| !alerts.contains_key(*a))
        .collect();
    ensure!(unknown.is_empty(), "tests name unknown alerts: {unknown:?}");
    // Most alerts also have a case where they must stay quiet.
    ensure!(
        quiet.len() * 2 >= alerts.len(),
        "quiet cases only for {quiet:?}"
    );
    Ok(())
}

#[test]
fn the_helm_chart_ships_the_same_rules() -> Result<()> {
    let config = std::fs::read(path(RULES))?;
    let chart = std::fs::read(path(CHART_RULES))?;
    ensure!(
        config == chart,
        "{CHART_RULES} differs from {RULES}. Fix: cp {RULES} {CHART_RULES}"
    );
    let template = std::fs::read_to_string(path(
        "helm/listacompra-operator/templates/prometheusrule.yaml",
    ))?;
    ensure!(
        template.contains("files/prometheus-rules.yaml"),
        "{template}"
    );
    Ok(())
}

#[test]
fn alert_rules_use_only_exported_metric_names() -> Result<()> {
    for (alert, expr) in alerts()? {
        let used = metric_names(&expr);
        ensure!(!used.is_empty(), "{alert} reads no metric: {expr}");
        let unknown = unknown_metrics(&used);
        ensure!(
            unknown.is_empty(),
            "{alert} uses metrics the code does not export: {unknown:?}"
        );
    }
    Ok(())
}

#[test]
fn metric_name_extraction_skips_labels_strings_and_variables() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(listacompra_x_bucket{job="listacompra_y",version=~"$version"}[$__rate_interval]))) / up{job="a"} + absent(listacompra_z)"#,
    );
    let names: Vec<_> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["listacompra_x_bucket", "listacompra_z", "up"]);
    let unknown = unknown_metrics(
        &[
            "listacompra_http_request_duration_seconds_bucket",
            "listacompra_operator_leader",
            "listacompra_made_up_total",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    );
    assert_eq!(unknown, ["listacompra_made_up_total"]);
}

struct Dashboard {
    file: &'static str,
    json: Value,
}

fn dashboards() -> Result<Vec<Dashboard>> {
    DASHBOARDS
        .iter()
        .map(|file| {
            let text =
                std::fs::read_to_string(path(file)).with_context(|| format!("read {file}"))?;
            let json =
                serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            Ok(Dashboard { file, json })
        })
        .collect()
}

/// Every panel, including those nested in collapsed rows.
fn panels(json: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in json["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// `(panel title, expr)` of every query target.
fn exprs(json: &Value) -> Vec<(String, String)> {
    panels(json)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| t["expr"].as_str().map(|e| (title.clone(), e.to_owned())))
        })
        .collect()
}

/// Threshold step values of every panel.
fn thresholds(json: &Value) -> Vec<f64> {
    panels(json)
        .into_iter()
        .flat_map(|p| {
            p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["value"].as_f64())
        })
        .collect()
}

#[test]
fn dashboards_have_the_expected_structure() -> Result<()> {
    let expected_uids = ["listacompra-api", "queue-latency", "listacompra-releases"];
    for (dashboard, uid) in dashboards()?.iter().zip(expected_uids) {
        let (file, json) = (dashboard.file, &dashboard.json);
        ensure!(
            json["uid"] == uid,
            "{file}: uid is {}, want {uid}",
            json["uid"]
        );
        ensure!(
            json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: no title"
        );
        let vars = json["templating"]["list"]
            .as_array()
            .context("templating.list")?;
        let var = |name: &str| vars.iter().find(|v| v["name"] == name);
        ensure!(
            var("datasource")
                .is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{file}: needs a Prometheus `datasource` variable"
        );
        let scope = if uid == "listacompra-releases" {
            "release"
        } else {
            "version"
        };
        for name in ["namespace", scope] {
            let v = var(name).with_context(|| format!("{file}: no `{name}` variable"))?;
            ensure!(
                v["datasource"]["uid"] == "${datasource}",
                "{file}: variable {name} must use ${{datasource}}"
            );
        }
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for panel in panels(json) {
            let title = panel["title"].as_str().unwrap_or_default();
            ensure!(!title.is_empty(), "{file}: a panel without a title");
            ensure!(
                ids.insert(panel["id"].as_i64()),
                "{file}: duplicate panel id in {title}"
            );
            let grid = &panel["gridPos"];
            let (x, w) = (
                grid["x"].as_i64().context("gridPos.x")?,
                grid["w"].as_i64().context("gridPos.w")?,
            );
            ensure!(
                x >= 0 && w > 0 && x + w <= 24,
                "{file}: {title} is outside the 24-column grid"
            );
            if panel["type"] == "row" {
                continue;
            }
            ensure!(
                panel["datasource"]["uid"] == "${datasource}",
                "{file}: {title} must use the ${{datasource}} variable"
            );
            let targets = panel["targets"]
                .as_array()
                .with_context(|| format!("{file}: {title} has no targets"))?;
            ensure!(!targets.is_empty(), "{file}: {title} has no targets");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                ensure!(
                    !expr.trim().is_empty(),
                    "{file}: {title} has a target without expr"
                );
                ensure!(
                    target["refId"].is_string(),
                    "{file}: {title} target without refId"
                );
                queries += 1;
            }
        }
        ensure!(queries >= 5, "{file}: only {queries} queries");
    }
    Ok(())
}

#[test]
fn dashboards_draw_the_runbook_thresholds() -> Result<()> {
    let all = dashboards()?;
    let api = thresholds(&all[0].json);
    for (what, value) in [("350 ms latency", 0.35), ("98 % AI success", 0.98)] {
        ensure!(
            api.iter().any(|v| (v - value).abs() < 1e-9),
            "listacompra-api.json draws no {what} threshold ({value}); has {api:?}"
        );
    }
    ensure!(
        api.iter().any(|v| (5.0..5.01).contains(v)),
        "listacompra-api.json draws no 5 retries/hour threshold; has {api:?}"
    );
    Ok(())
}

#[test]
fn dashboards_use_only_exported_metric_names() -> Result<()> {
    for Dashboard { file, json } in dashboards()? {
        let mut used = BTreeSet::new();
        for (title, expr) in exprs(&json) {
            let names = metric_names(&expr);
            ensure!(!names.is_empty(), "{file}: {title} reads no metric: {expr}");
            used.extend(names);
        }
        for var in json["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(query) = var["definition"].as_str() {
                used.extend(metric_names(query));
            }
        }
        let unknown = unknown_metrics(&used);
        ensure!(
            unknown.is_empty(),
            "{file} uses metrics the code does not export: {unknown:?}"
        );
    }
    Ok(())
}

/// A dashboard query with Grafana's variables replaced by values Prometheus accepts.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
        .replace("$version", ".*")
        .replace("$release", ".*")
}

#[test]
fn slow_routes_link_to_their_traces_in_jaeger() -> Result<()> {
    let api = dashboards()?
        .into_iter()
        .find(|d| d.file.ends_with("listacompra-api.json"))
        .context("listacompra-api.json")?;
    let jaeger = api.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "jaeger")
        .context("no `jaeger` variable for the Jaeger UI's URL")?;
    ensure!(jaeger["type"] == "textbox", "{jaeger}");
    let mut linked = 0;
    for panel in panels(&api.json) {
        let title = panel["title"].as_str().unwrap_or_default();
        if !(title.starts_with("p95 latency by route") || title.starts_with("p99 latency by route"))
        {
            continue;
        }
        let link = &panel["fieldConfig"]["defaults"]["links"][0];
        let url = link["url"].as_str().unwrap_or_default();
        // The span name is `<METHOD> <route template>`, so the series must carry both.
        for part in [
            "${jaeger}/search?",
            "operation=${__field.labels.method}%20${__field.labels.route:percentencode}",
            "minDuration=350ms",
            "start=${__from}000",
        ] {
            ensure!(url.contains(part), "{title}: {part} missing in {url}");
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            ensure!(expr.contains("by (method, route, le)"), "{title}: {expr}");
        }
        linked += 1;
    }
    ensure!(linked == 2, "{linked} latency panels link to Jaeger");
    Ok(())
}

#[tokio::test]
async fn dashboard_queries_run_in_the_real_prometheus() -> Result<()> {
    let env = tokio::task::spawn_blocking(|| ensure_blocking(&[Component::Prometheus])).await??;
    let base = env.get("PROMETHEUS_URL")?.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let mut checked = 0;
    for Dashboard { file, json } in dashboards()? {
        for (title, expr) in exprs(&json) {
            let query = concrete(&expr);
            ensure!(
                !query.contains('$'),
                "{file}: {title}: unknown variable in {expr}"
            );
            let response = http
                .get(format!("{base}/api/v1/query"))
                .query(&[("query", query.as_str())])
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if !status.is_success() || body["status"] != "success" {
                bail!("{file}: {title}: Prometheus rejects {query}: {body}");
            }
            checked += 1;
        }
    }
    ensure!(checked > 30, "only {checked} queries checked");
    Ok(())
}
