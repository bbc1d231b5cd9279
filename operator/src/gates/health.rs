//! The health gate: consecutive passing or failing checks of `/health` and `/ready`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::health::HealthGateSpec;
use listacompra_crds::status::HealthProgress;

/// Where the health gate stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Not enough checks in a row yet.
    Pending,
    /// `successThreshold` checks in a row passed.
    Passed,
    /// `failureThreshold` checks in a row failed.
    Failed,
}

/// Whether the next health check is due at `now`: the gate has not passed and
/// `intervalSeconds` have gone by since the last check (at once before the first).
pub fn due(progress: &HealthProgress, spec: &HealthGateSpec, now: Timestamp) -> bool {
    let next = progress
        .last_check_time
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| {
            t.0 + SignedDuration::from_secs(i64::from(spec.interval_seconds))
        });
    !progress.passed && now >= next
}

/// Folds one check (`Ok` or the reason it failed) into the gate's progress.
pub fn record(
    progress: &HealthProgress,
    outcome: &Result<(), String>,
    spec: &HealthGateSpec,
    now: Time,
) -> (HealthProgress, HealthVerdict) {
    let mut next = progress.clone();
    next.last_check_time = Some(now);
    match outcome {
        Ok(()) => {
            next.consecutive_successes += 1;
            next.consecutive_failures = 0;
            next.message = Some(format!(
                "{} and {} answered ({} of {} checks in a row)",
                spec.liveness_path,
                spec.readiness_path,
                next.consecutive_successes,
                spec.success_threshold
            ));
        }
        Err(reason) => {
            next.consecutive_failures += 1;
            next.consecutive_successes = 0;
            next.message = Some(format!(
                "{reason} ({} of {} failures in a row)",
                next.consecutive_failures, spec.failure_threshold
            ));
        }
    }
    let verdict = if next.consecutive_failures >= spec.failure_threshold {
        HealthVerdict::Failed
    } else if next.consecutive_successes >= spec.success_threshold {
        next.passed = true;
        HealthVerdict::Passed
    } else {
        HealthVerdict::Pending
    };
    (next, verdict)
}

/// Performs one check: GET liveness then readiness, each within `timeoutSeconds`, with the
/// token header when a token is given. `Ok` only when both answer 2xx.
pub async fn check(
    http: &reqwest::Client,
    base_url: &str,
    spec: &HealthGateSpec,
    token: Option<&str>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::try_from(spec.timeout_seconds).unwrap_or(1));
    for path in [&spec.liveness_path, &spec.readiness_path] {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let mut request = http.get(&url).timeout(timeout);
        if let Some(token) = token {
            request = request.header(spec.token_header.as_str(), token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => return Err(format!("GET {path} answered {}", response.status())),
            Err(e) if e.is_timeout() => {
                return Err(format!("GET {path} timed out after {timeout:?}"));
            }
            Err(e) => return Err(format!("GET {path} failed: {}", without_url(&e))),
        }
    }
    Ok(())
}

/// reqwest errors repeat the URL; the path is already in our message.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn spec() -> HealthGateSpec {
        HealthGateSpec {
            success_threshold: 2,
            failure_threshold: 2,
            ..HealthGateSpec::default()
        }
    }

    #[test]
    fn passes_after_the_success_threshold_and_resets_on_failure() {
        let now = Time(Timestamp::UNIX_EPOCH);
        let (p, v) = record(&HealthProgress::default(), &Ok(()), &spec(), now.clone());
        assert_eq!((v, p.consecutive_successes), (HealthVerdict::Pending, 1));
        let (p, v) = record(
            &p,
            &Err("GET /ready answered 503".into()),
            &spec(),
            now.clone(),
        );
        assert_eq!(
            (v, p.consecutive_successes, p.consecutive_failures),
            (HealthVerdict::Pending, 0, 1)
        );
        let (p, v) = record(&p, &Ok(()), &spec(), now.clone());
        assert_eq!(v, HealthVerdict::Pending);
        let (p, v) = record(&p, &Ok(()), &spec(), now);
        assert_eq!(v, HealthVerdict::Passed);
        assert!(p.passed);
    }

    #[test]
    fn fails_after_the_failure_threshold_naming_the_cause() {
        let now = Time(Timestamp::UNIX_EPOCH);
        let failing = Err("GET /ready answered 503 Service Unavailable".to_owned());
        let (p, _) = record(&HealthProgress::default(), &failing, &spec(), now.clone());
        let (p, v) = record(&p, &failing, &spec(), now);
        assert_eq!(v, HealthVerdict::Failed);
        assert!(
            p.message
                .unwrap_or_default()
                .contains("/ready answered 503")
        );
    }
}
