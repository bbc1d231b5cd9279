//! A small client of the Prometheus HTTP API (instant queries only).

use std::time::Duration;

use serde::Deserialize;

use super::analysis::QueryOutcome;

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
            return QueryOutcome::Error(format!("Prometheus did not answer within {timeout:?}"));
        }
        Err(e) if e.is_connect() => {
            return QueryOutcome::Error(format!("Prometheus at {address} is unreachable"));
        }
        Err(e) => return QueryOutcome::Error(format!("request to Prometheus failed: {e}")),
    };
    let status = response.status();
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => return QueryOutcome::Error(format!("reading the Prometheus answer failed: {e}")),
    };
    if !status.is_success() && status.as_u16() != 400 && status.as_u16() != 422 {
        return QueryOutcome::Error(format!("Prometheus answered {status}"));
    }
    parse(&body)
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
}
