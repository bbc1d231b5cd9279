//! The KPI gate: Prometheus queries that the new version must keep within bounds.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::workload::SecretKeyRef;

/// How the operator analyses the new version's KPIs before it declares the release good.
///
/// After `initialDelaySeconds`, every `intervalSeconds` it runs each KPI query once (one
/// measurement), `measurements` times in all. A measurement fails when an enforced KPI is
/// out of bounds, and is inconclusive when a KPI cannot be judged (no data, too few samples,
/// Prometheus unreachable). More failed measurements than `failureLimit` fail the gate; more
/// inconclusive ones than `inconclusiveLimit` make it inconclusive (see
/// `spec.rollback.onInconclusive`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.failureLimit < self.measurements").message("analysis.failureLimit must be less than analysis.measurements, or the gate could never fail").field_path(".failureLimit"))]
#[x_kube(validation = Rule::new("self.inconclusiveLimit < self.measurements").message("analysis.inconclusiveLimit must be less than analysis.measurements").field_path(".inconclusiveLimit"))]
pub struct AnalysisSpec {
    /// The Prometheus server to query.
    pub prometheus: PrometheusSpec,
    /// Seconds to wait after the rollout before the first measurement.
    #[serde(default = "default_initial_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub initial_delay_seconds: i32,
    /// Seconds between two measurements.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: i32,
    /// Number of measurements the gate takes.
    #[serde(default = "default_measurements")]
    #[schemars(range(min = 1, max = 1000))]
    pub measurements: i32,
    /// Failed measurements tolerated; one more fails the gate.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failure_limit: i32,
    /// Inconclusive measurements tolerated; one more makes the gate inconclusive.
    #[serde(default = "default_inconclusive_limit")]
    #[schemars(range(min = 0))]
    pub inconclusive_limit: i32,
    /// The KPIs. When omitted, the runbook's three: p95 latency at most 350 ms, AI worker
    /// success at least 98 %, outbox retries at most 5 per hour.
    #[serde(default = "default_kpis")]
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub kpis: Vec<Kpi>,
}

/// Where Prometheus is and how to authenticate to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub address: String,
    /// Credentials, by Secret reference. Omit for an unauthenticated Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PrometheusAuth>,
    /// Seconds before one query times out.
    #[serde(default = "default_query_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: i32,
}

/// Prometheus credentials: a bearer token, or a user name and password (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.bearerTokenSecretRef) != has(self.basicAuth)").message("set exactly one of bearerTokenSecretRef or basicAuth"))]
pub struct PrometheusAuth {
    /// Secret key holding a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

/// HTTP basic authentication, both parts by Secret reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// One key performance indicator: a PromQL query whose value must stay within bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("a KPI needs a bound: set min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min < self.max").message("min must be less than max").field_path(".min"))]
pub struct Kpi {
    /// Name of the KPI, unique in the list (shown in status, Events and metrics).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What the KPI means, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// PromQL instant query that returns one number. `{{namespace}}`, `{{release}}` and
    /// `{{version}}` are replaced by the release's namespace, name and version, and
    /// `{{window:<duration>}}` (e.g. `rate(x[{{window:5m}}])`) by the lesser of that duration
    /// and the time this attempt's version has been verified, so the query never judges
    /// traffic from before the attempt (a retry after an incident, on the same pods); give
    /// `initialDelaySeconds` at least two scrape intervals.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Lowest passing value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest passing value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// What a query that returns no data means.
    #[serde(default)]
    pub on_no_data: NoDataPolicy,
    /// A query counting the samples behind the KPI; below `minimum`, the measurement of this
    /// KPI is inconclusive instead of judged on too little traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_guard: Option<SampleGuard>,
    /// What a breach of this KPI does.
    #[serde(default)]
    pub enforcement: Enforcement,
}

/// A minimum number of samples a KPI needs before it is judged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SampleGuard {
    /// PromQL instant query returning the number of samples (same placeholders as `query`).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// The fewest samples that make the KPI judgeable.
    #[schemars(range(min = 0.0))]
    pub minimum: f64,
}

/// The verdict for a KPI whose query returns no data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NoDataPolicy {
    /// No data passes (for example: no retries recorded means no retries).
    Pass,
    /// No data fails.
    Fail,
    /// No data cannot be judged; it counts towards `inconclusiveLimit`.
    #[default]
    Inconclusive,
}

/// What a breach of a KPI does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Enforcement {
    /// Record the value and verdict only.
    Observe,
    /// Pause the release for a person to decide.
    Pause,
    /// Fail the measurement, and roll back when the failure limit is passed.
    #[default]
    Rollback,
}

fn default_initial_delay() -> i32 {
    30
}
fn default_interval() -> i32 {
    30
}
fn default_measurements() -> i32 {
    5
}
fn default_inconclusive_limit() -> i32 {
    1
}
fn default_query_timeout() -> i32 {
    5
}

/// Label matchers that select the released version's own series.
const SELECTOR: &str = r#"namespace="{{namespace}}",version="{{version}}""#;

/// The runbook's KPIs, against the API server's own metric names.
pub fn default_kpis() -> Vec<Kpi> {
    let latency = metrics::HTTP_REQUEST_DURATION_SECONDS;
    let ai = metrics::AI_JOBS_TOTAL;
    let retries = metrics::OUTBOX_RETRIES_TOTAL;
    vec![
        Kpi {
            name: "p95-latency-ms".to_owned(),
            description: Some("95th percentile HTTP latency in milliseconds".to_owned()),
            query: format!(
                "histogram_quantile(0.95, sum by (le) (rate({latency}_bucket{{{SELECTOR}}}[{{{{window:5m}}}}]))) * 1000"
            ),
            min: None,
            max: Some(350.0),
            on_no_data: NoDataPolicy::Inconclusive,
            sample_guard: Some(SampleGuard {
                query: format!("sum(increase({latency}_count{{{SELECTOR}}}[{{{{window:5m}}}}]))"),
                minimum: 20.0,
            }),
            enforcement: Enforcement::Rollback,
        },
        Kpi {
            name: "ai-worker-success-percent".to_owned(),
            description: Some("share of AI suggestion jobs that succeed, in percent".to_owned()),
            query: format!(
                "100 * sum(increase({ai}{{{SELECTOR},outcome=\"success\"}}[{{{{window:15m}}}}])) / sum(increase({ai}{{{SELECTOR}}}[{{{{window:15m}}}}]))"
            ),
            min: Some(98.0),
            max: None,
            on_no_data: NoDataPolicy::Pass,
            sample_guard: None,
            enforcement: Enforcement::Rollback,
        },
        Kpi {
            name: "outbox-retries-per-hour".to_owned(),
            description: Some("outbox publish retries over the last hour".to_owned()),
            query: format!("sum(increase({retries}{{{SELECTOR}}}[{{{{window:1h}}}}]))"),
            min: None,
            max: Some(5.0),
            on_no_data: NoDataPolicy::Pass,
            sample_guard: None,
            enforcement: Enforcement::Rollback,
        },
    ]
}

/// Replaces `{{namespace}}`, `{{release}}` and `{{version}}` in a KPI query, and each
/// `{{window:<duration>}}` (a PromQL duration: `90s`, `5m`, `1h`) by the lesser of that
/// duration and `verified_for`, how long this attempt's version has been verified (whole
/// seconds, at least 1): a window that never reaches back before the attempt, so a retry
/// right after an incident is judged on its own traffic. Unknown: the duration as written.
pub fn render(
    query: &str,
    namespace: &str,
    release: &str,
    version: &str,
    verified_for: Option<std::time::Duration>,
) -> String {
    let mut out = query
        .replace("{{namespace}}", namespace)
        .replace("{{release}}", release)
        .replace("{{version}}", version);
    while let Some(start) = out.find("{{window:") {
        let Some(len) = out[start..].find("}}") else {
            break;
        };
        let written = &out[start + "{{window:".len()..start + len];
        let window = match (duration_seconds(written), verified_for) {
            (Some(max), Some(age)) => format!("{}s", age.as_secs().clamp(1, max)),
            _ => written.to_owned(),
        };
        out.replace_range(start..start + len + 2, &window);
    }
    out
}

/// Seconds of a PromQL duration of one unit (`90s`, `5m`, `1h`, `1d`).
fn duration_seconds(written: &str) -> Option<u64> {
    let unit = written.chars().last()?;
    let n: u64 = written[..written.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_rendered_for_the_release() {
        assert_eq!(
            render(
                r#"x{namespace="{{namespace}}",version="{{version}}",r="{{release}}"}"#,
                "prod",
                "lc",
                "1.2.0",
                None
            ),
            r#"x{namespace="prod",version="1.2.0",r="lc"}"#
        );
    }

    #[test]
    fn windows_never_reach_back_before_the_attempt() {
        let q = "rate(x[{{window:5m}}]) / rate(y[{{window:1h}}])";
        let at = |secs| Some(std::time::Duration::from_secs(secs));
        assert_eq!(
            render(q, "n", "r", "v", at(42)),
            "rate(x[42s]) / rate(y[42s])"
        );
        assert_eq!(
            render(q, "n", "r", "v", at(1_000)),
            "rate(x[300s]) / rate(y[1000s])"
        );
        assert_eq!(render(q, "n", "r", "v", at(0)), "rate(x[1s]) / rate(y[1s])");
        assert_eq!(
            render(q, "n", "r", "v", None),
            "rate(x[5m]) / rate(y[1h])",
            "not verified yet: as written"
        );
        assert_eq!(
            render("x[{{window:soon}}]", "n", "r", "v", at(5)),
            "x[soon]",
            "not a duration: left for Prometheus to refuse"
        );
        for kpi in default_kpis() {
            let rendered = render(&kpi.query, "n", "r", "v", at(60));
            assert!(!rendered.contains("{{"), "{rendered}");
            assert!(
                rendered.contains("[60s]"),
                "the runbook's KPIs are scoped: {rendered}"
            );
        }
    }
}
