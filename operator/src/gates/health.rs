//! The health gate: consecutive passing or failing checks of `/health` and `/ready`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::health::HealthGateSpec;
use listacompra_crds::status::HealthProgress;

/// Where the health gate stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthVerdict {
    /// No verdict from this check: not enough checks in a row yet, or the gate had passed
    /// and still holds.
    Pending,
    /// This check made `successThreshold` checks in a row pass (once per gate).
    Passed,
    /// `failureThreshold` checks in a row failed, before or after the gate passed.
    Failed,
}

/// Whether the next check is due at `now`: `intervalSeconds` have gone by since the last
/// check (at once before the first), the last one being the later of the one in `progress`
/// and `last_watch`, the last watch check of a gate that passed (those that pass are not
/// written to `progress`). A gate that passed is still watched this way while its release is
/// verified.
pub fn watch_due(
    progress: &HealthProgress,
    spec: &HealthGateSpec,
    last_watch: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    now >= next_check(progress, spec, last_watch)
}

/// When the next check is due (see [`watch_due`]).
pub fn next_check(
    progress: &HealthProgress,
    spec: &HealthGateSpec,
    last_watch: Option<Timestamp>,
) -> Timestamp {
    let last = progress
        .last_check_time
        .as_ref()
        .map(|t| t.0)
        .max(last_watch);
    last.map_or(Timestamp::UNIX_EPOCH, |t| {
        t + SignedDuration::from_secs(i64::from(spec.interval_seconds))
    })
}

/// Whether the next check of a gate that stops at its pass (a rotation's) is due at `now`.
pub fn due(progress: &HealthProgress, spec: &HealthGateSpec, now: Timestamp) -> bool {
    !progress.passed && watch_due(progress, spec, None, now)
}

/// Folds one check (`Ok` or the reason it failed) into the gate's progress.
pub fn record(
    progress: &HealthProgress,
    outcome: &Result<(), String>,
    spec: &HealthGateSpec,
    now: Time,
) -> (HealthProgress, HealthVerdict) {
    if progress.passed && progress.consecutive_failures == 0 && outcome.is_ok() {
        // A passing watch check: nothing to write (the schedule is the caller's).
        return (progress.clone(), HealthVerdict::Pending);
    }
    let mut next = progress.clone();
    next.last_check_time = Some(now);
    match outcome {
        Ok(()) => {
            next.consecutive_failures = 0;
            next.message = Some(if next.passed {
                format!(
                    "{} and {} answer again (the gate passed; watched until the verdict)",
                    spec.liveness_path, spec.readiness_path
                )
            } else {
                next.consecutive_successes += 1;
                format!(
                    "{} and {} answered ({} of {} checks in a row)",
                    spec.liveness_path,
                    spec.readiness_path,
                    next.consecutive_successes,
                    spec.success_threshold
                )
            });
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
    } else if !next.passed && next.consecutive_successes >= spec.success_threshold {
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
    fn a_passed_gate_is_watched_and_fails_on_failures_in_a_row() {
        let now = Time(Timestamp::UNIX_EPOCH);
        let at = |secs| Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs);
        let passed = HealthProgress {
            consecutive_successes: 2,
            passed: true,
            last_check_time: Some(now.clone()),
            ..HealthProgress::default()
        };
        assert!(
            !due(&passed, &spec(), at(60)),
            "a rotation's gate stops at its pass"
        );
        assert!(watch_due(&passed, &spec(), None, at(5)));
        assert!(!watch_due(&passed, &spec(), None, at(4)));
        assert!(
            !watch_due(&passed, &spec(), Some(at(3)), at(5)),
            "the later of the written check and the watch's own counts"
        );
        let (p, v) = record(&passed, &Ok(()), &spec(), Time(at(5)));
        assert_eq!(v, HealthVerdict::Pending, "a pass is reported once");
        assert_eq!(p, passed, "a passing watch check changes nothing");
        let failing = Err("GET /ready failed: connection refused".to_owned());
        let (p, v) = record(&p, &failing, &spec(), Time(at(5)));
        assert_eq!(
            (v, p.passed, p.consecutive_failures),
            (HealthVerdict::Pending, true, 1)
        );
        let (again, v) = record(&p, &Ok(()), &spec(), Time(at(10)));
        assert_eq!((v, again.consecutive_failures), (HealthVerdict::Pending, 0));
        assert!(again.message.unwrap_or_default().contains("answer again"));
        let (p, v) = record(&p, &failing, &spec(), Time(at(10)));
        assert_eq!(v, HealthVerdict::Failed);
        assert!(p.message.unwrap_or_default().contains("2 of 2 failures"));
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
