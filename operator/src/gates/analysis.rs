//! Judging KPI measurements: pure functions from query outcomes to verdicts.

use listacompra_crds::analysis::{Enforcement, Kpi, NoDataPolicy};
use listacompra_crds::status::{KpiResult, Verdict};

/// What a Prometheus instant query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutcome {
    /// One number.
    Value(f64),
    /// An empty result.
    NoData,
    /// The query could not be run or its answer not read (never a breach).
    Error(String),
}

/// Judges one KPI from its query outcome and, when it has one, its sample guard's outcome.
pub fn judge(kpi: &Kpi, value: &QueryOutcome, guard: Option<&QueryOutcome>) -> KpiResult {
    let result = |value: Option<f64>, verdict: Verdict, message: String| KpiResult {
        name: kpi.name.clone(),
        value,
        verdict,
        message: Some(message),
    };
    if let (Some(spec), Some(outcome)) = (&kpi.sample_guard, guard) {
        match outcome {
            QueryOutcome::Value(n) if *n >= spec.minimum => {}
            QueryOutcome::Value(n) => {
                return result(
                    None,
                    Verdict::Inconclusive,
                    format!("only {n} samples, {} needed", spec.minimum),
                );
            }
            QueryOutcome::NoData => {
                return result(
                    None,
                    Verdict::Inconclusive,
                    format!("no samples, {} needed", spec.minimum),
                );
            }
            QueryOutcome::Error(e) => {
                return result(
                    None,
                    Verdict::Inconclusive,
                    format!("sample guard query failed: {e}"),
                );
            }
        }
    }
    match value {
        QueryOutcome::Error(e) => result(None, Verdict::Inconclusive, format!("query failed: {e}")),
        QueryOutcome::Value(v) if v.is_nan() => no_data(kpi),
        QueryOutcome::NoData => no_data(kpi),
        QueryOutcome::Value(v) => {
            let v = *v;
            if let Some(max) = kpi.max.filter(|max| v > *max) {
                result(
                    Some(v),
                    Verdict::Fail,
                    format!("{} > max {}", round(v), round(max)),
                )
            } else if let Some(min) = kpi.min.filter(|min| v < *min) {
                result(
                    Some(v),
                    Verdict::Fail,
                    format!("{} < min {}", round(v), round(min)),
                )
            } else {
                result(
                    Some(v),
                    Verdict::Pass,
                    format!("{} within bounds", round(v)),
                )
            }
        }
    }
}

fn no_data(kpi: &Kpi) -> KpiResult {
    let verdict = match kpi.on_no_data {
        NoDataPolicy::Pass => Verdict::Pass,
        NoDataPolicy::Fail => Verdict::Fail,
        NoDataPolicy::Inconclusive => Verdict::Inconclusive,
    };
    KpiResult {
        name: kpi.name.clone(),
        value: None,
        verdict,
        message: Some(format!("no data (onNoData: {:?})", kpi.on_no_data)),
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The verdict of one measurement over all KPIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measurement {
    /// KPIs with `enforcement: Rollback` that failed.
    pub failed: Vec<String>,
    /// KPIs with `enforcement: Pause` that failed.
    pub paused: Vec<String>,
    /// Enforced KPIs that could not be judged.
    pub inconclusive: Vec<String>,
}

impl Measurement {
    /// Sorts the results of one measurement by what they demand. `Observe` KPIs only record.
    pub fn classify(kpis: &[Kpi], results: &[KpiResult]) -> Self {
        let mut m = Self::default();
        for result in results {
            let enforcement = kpis
                .iter()
                .find(|k| k.name == result.name)
                .map_or(Enforcement::Rollback, |k| k.enforcement);
            match (result.verdict, enforcement) {
                (_, Enforcement::Observe) | (Verdict::Pass, _) => {}
                (Verdict::Fail, Enforcement::Rollback) => m.failed.push(result.name.clone()),
                (Verdict::Fail, Enforcement::Pause) => m.paused.push(result.name.clone()),
                (Verdict::Inconclusive, _) => m.inconclusive.push(result.name.clone()),
            }
        }
        m
    }

    /// Failed: an enforced KPI breached.
    pub fn is_failure(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Inconclusive: nothing failed, but something could not be judged.
    pub fn is_inconclusive(&self) -> bool {
        self.failed.is_empty() && !self.inconclusive.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use listacompra_crds::analysis::{SampleGuard, default_kpis};

    fn kpi(min: Option<f64>, max: Option<f64>, on_no_data: NoDataPolicy) -> Kpi {
        Kpi {
            name: "k".into(),
            description: None,
            query: "q".into(),
            min,
            max,
            on_no_data,
            sample_guard: None,
            enforcement: Enforcement::Rollback,
        }
    }

    #[test]
    fn bounds_are_inclusive_and_breaches_name_the_bound() {
        let k = kpi(None, Some(350.0), NoDataPolicy::Inconclusive);
        assert_eq!(
            judge(&k, &QueryOutcome::Value(350.0), None).verdict,
            Verdict::Pass
        );
        let breach = judge(&k, &QueryOutcome::Value(412.3), None);
        assert_eq!(breach.verdict, Verdict::Fail);
        assert_eq!(breach.message.as_deref(), Some("412.3 > max 350"));
        let k = kpi(Some(98.0), None, NoDataPolicy::Inconclusive);
        assert_eq!(
            judge(&k, &QueryOutcome::Value(97.5), None).verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&k, &QueryOutcome::Value(99.0), None).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn no_data_follows_the_policy_and_errors_are_never_a_breach() {
        for (policy, verdict) in [
            (NoDataPolicy::Pass, Verdict::Pass),
            (NoDataPolicy::Fail, Verdict::Fail),
            (NoDataPolicy::Inconclusive, Verdict::Inconclusive),
        ] {
            let k = kpi(None, Some(1.0), policy);
            assert_eq!(judge(&k, &QueryOutcome::NoData, None).verdict, verdict);
            assert_eq!(
                judge(&k, &QueryOutcome::Value(f64::NAN), None).verdict,
                verdict
            );
            let err = judge(&k, &QueryOutcome::Error("connection refused".into()), None);
            assert_eq!(
                err.verdict,
                Verdict::Inconclusive,
                "an unreachable Prometheus is no breach"
            );
        }
    }

    #[test]
    fn a_thin_sample_is_inconclusive_even_when_the_value_breaches() {
        let mut k = kpi(None, Some(350.0), NoDataPolicy::Pass);
        k.sample_guard = Some(SampleGuard {
            query: "n".into(),
            minimum: 20.0,
        });
        let thin = judge(
            &k,
            &QueryOutcome::Value(900.0),
            Some(&QueryOutcome::Value(3.0)),
        );
        assert_eq!(thin.verdict, Verdict::Inconclusive);
        let enough = judge(
            &k,
            &QueryOutcome::Value(900.0),
            Some(&QueryOutcome::Value(25.0)),
        );
        assert_eq!(enough.verdict, Verdict::Fail);
    }

    #[test]
    fn classification_respects_enforcement() {
        let mut kpis = default_kpis();
        kpis[1].enforcement = Enforcement::Observe;
        kpis[2].enforcement = Enforcement::Pause;
        let r = |name: &str, verdict| KpiResult {
            name: name.into(),
            value: None,
            verdict,
            message: None,
        };
        let m = Measurement::classify(
            &kpis,
            &[
                r("p95-latency-ms", Verdict::Inconclusive),
                r("ai-worker-success-percent", Verdict::Fail),
                r("outbox-retries-per-hour", Verdict::Fail),
            ],
        );
        assert_eq!(m.failed, Vec::<String>::new());
        assert_eq!(m.paused, vec!["outbox-retries-per-hour".to_owned()]);
        assert!(m.is_inconclusive());
    }
}
