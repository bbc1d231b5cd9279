//! A small client of the Prometheus HTTP API (instant queries only).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::analysis::QueryOutcome;
use crate::decide::FiringAlert;

/// Credentials resolved from the release's Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No authentication.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

/// Runs one instant query at `address` and reduces the answer to one number.
pub async fn query(
    http: &reqwest::Client,
    address: &str,
    credentials: &Credentials,
    timeout: Duration,
    promql: &str,
) -> QueryOutcome {
    match instant(http, address, credentials, timeout, promql).await {
        Ok(body) => parse(&body),
        Err(e) => QueryOutcome::Error(e),
    }
}

/// The alerts firing at `address` that carry every label of `match_labels`, or why
/// Prometheus could not say.
pub async fn firing_alerts(
    http: &reqwest::Client,
    address: &str,
    credentials: &Credentials,
    timeout: Duration,
    match_labels: &BTreeMap<String, String>,
) -> Result<Vec<FiringAlert>, String> {
    let body = instant(
        http,
        address,
        credentials,
        timeout,
        &alerts_query(match_labels),
    )
    .await?;
    parse_alerts(&body)
}

/// Sends one instant query; the answer's body, or why there is none.
async fn instant(
    http: &reqwest::Client,
    address: &str,
    credentials: &Credentials,
    timeout: Duration,
    promql: &str,
) -> Result<String, String> {
    let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let mut request = http.get(&url).query(&[("query", promql)]).timeout(timeout);
    request = match credentials {
        Credentials::None => request,
        Credentials::Bearer(token) => request.bearer_auth(token),
        Credentials::Basic { username, password } => request.basic_auth(username, Some(password)),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            return Err(format!("Prometheus did not answer within {timeout:?}"));
        }
        Err(e) if e.is_connect() => {
            return Err(format!("Prometheus at {address} is unreachable"));
        }
        Err(e) => return Err(format!("request to Prometheus failed: {e}")),
    };
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the Prometheus answer failed: {e}"))?;
    if !status.is_success() && status.as_u16() != 400 && status.as_u16() != 422 {
        return Err(format!("Prometheus answered {status}"));
    }
    Ok(body)
}

/// The PromQL selecting the firing alerts that carry `match_labels` (values quoted as
/// PromQL strings, so no value can change the query).
pub fn alerts_query(match_labels: &BTreeMap<String, String>) -> String {
    let quoted = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_owned());
    let matchers: Vec<String> = std::iter::once(r#"alertstate="firing""#.to_owned())
        .chain(
            match_labels
                .iter()
                .map(|(k, v)| format!("{k}={}", quoted(v))),
        )
        .collect();
    format!("ALERTS{{{}}}", matchers.join(","))
}

#[derive(Deserialize)]
struct AlertSample {
    metric: BTreeMap<String, String>,
}

/// Reads the firing alerts from an answer to [`alerts_query`].
pub fn parse_alerts(body: &str) -> Result<Vec<FiringAlert>, String> {
    #[derive(Deserialize)]
    struct Alerts {
        status: String,
        #[serde(default)]
        data: Option<AlertData>,
        #[serde(default)]
        error: Option<String>,
    }
    #[derive(Deserialize)]
    struct AlertData {
        result: Vec<AlertSample>,
    }
    let answer: Alerts = serde_json::from_str(body)
        .map_err(|e| format!("unreadable answer from Prometheus: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus rejected the query: {}",
            answer.error.unwrap_or_else(|| "no reason given".to_owned())
        ));
    }
    let mut alerts: Vec<FiringAlert> = answer
        .data
        .map(|d| d.result)
        .unwrap_or_default()
        .into_iter()
        .map(|sample| {
            let mut labels = sample.metric;
            let name = labels.remove("alertname").unwrap_or_default();
            labels.remove("alertstate");
            labels.remove("__name__");
            FiringAlert { name, labels }
        })
        .collect();
    alerts.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    Ok(alerts)
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

/// Reduces a Prometheus query answer to one number, no data, or an error.
pub fn parse(body: &str) -> QueryOutcome {
    let envelope: Envelope = match serde_json::from_str(body) {
        Ok(envelope) => envelope,
        Err(e) => return QueryOutcome::Error(format!("unreadable answer from Prometheus: {e}")),
    };
    if envelope.status != "success" {
        return QueryOutcome::Error(format!(
            "Prometheus rejected the query: {}",
            envelope
                .error
                .unwrap_or_else(|| "no reason given".to_owned())
        ));
    }
    let number = |text: &str| {
        text.parse::<f64>().map_or_else(
            |_| QueryOutcome::Error(format!("not a number: {text:?}")),
            QueryOutcome::Value,
        )
    };
    match envelope.data {
        Some(Data::Scalar((_, value))) => number(&value),
        Some(Data::Vector(samples)) => match samples.as_slice() {
            [] => QueryOutcome::NoData,
            [one] => number(&one.value.1),
            many => QueryOutcome::Error(format!(
                "the query returned {} series; aggregate it to one (for example with sum)",
                many.len()
            )),
        },
        Some(Data::Matrix(_) | Data::String(_)) => {
            QueryOutcome::Error("the query must be an instant vector or scalar".to_owned())
        }
        None => QueryOutcome::NoData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vectors_scalars_and_empty_results() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"412.25"]}]}}"#;
        assert_eq!(parse(one), QueryOutcome::Value(412.25));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(empty), QueryOutcome::NoData);
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"NaN"]}}"#;
        assert!(matches!(parse(scalar), QueryOutcome::Value(v) if v.is_nan()));
    }

    #[test]
    fn errors_are_errors_not_values() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(matches!(parse(bad), QueryOutcome::Error(e) if e.contains("parse error")));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert!(matches!(parse(two), QueryOutcome::Error(e) if e.contains("2 series")));
        assert!(matches!(parse("<html>"), QueryOutcome::Error(_)));
    }

    #[test]
    fn the_alerts_query_quotes_every_value() {
        let labels = BTreeMap::from([
            ("severity".to_owned(), "critical".to_owned()),
            (
                "service".to_owned(),
                r#"api"} or vector(1) or {a=""#.to_owned(),
            ),
        ]);
        assert_eq!(
            alerts_query(&labels),
            r#"ALERTS{alertstate="firing",service="api\"} or vector(1) or {a=\"",severity="critical"}"#
        );
    }

    #[test]
    fn reads_firing_alerts_by_name_and_labels() {
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"ALERTS","alertname":"OutboxRetries","alertstate":"firing","severity":"critical"},"value":[1,"1"]},
            {"metric":{"__name__":"ALERTS","alertname":"HighLatency","alertstate":"firing","severity":"critical","service":"api"},"value":[1,"1"]}]}}"#;
        let alerts = parse_alerts(two).expect("readable");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].name, "HighLatency");
        assert_eq!(
            alerts[0].labels,
            BTreeMap::from([
                ("service".to_owned(), "api".to_owned()),
                ("severity".to_owned(), "critical".to_owned())
            ])
        );
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_alerts(none), Ok(vec![]));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(parse_alerts(bad).is_err_and(|e| e.contains("parse error")));
        assert!(parse_alerts("<html>").is_err());
    }
}
