//! Verifying: the health gate, then the smoke test, then the KPI analysis; a release that
//! passes them all succeeds.

use listacompra_crds::status::{AnalysisReport, KpiResult, Outcome, condition};
use listacompra_crds::{InconclusivePolicy, Phase};

use super::machine::Machine;
use super::smoke::{self, SmokeGate};
use super::*;
use crate::gates::analysis::Measurement;
use crate::gates::health::{self, HealthVerdict};
use crate::naming::JobPurpose;

impl Machine<'_, '_> {
    pub(super) fn verifying(&mut self) {
        self.workload = Some(self.target());
        if let Some((reason, message)) = self.hold.clone() {
            return self.set_hold(reason, message);
        }
        if self.spec().paused {
            return self.pause();
        }
        if self.deadline_passed() {
            self.stop_smoke_test("the release deadline passed");
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "{} was not verified within {}s",
                    self.version(),
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        // The health gate runs first; once it passed, it keeps watching (at its interval)
        // through the smoke test and the analysis, so a version that stops answering while
        // it is measured fails as it would have before.
        let mut health = self.status.health.clone().unwrap_or_default();
        if let Some(outcome) = &self.o.health_check {
            let had_passed = health.passed;
            let (next, verdict) =
                health::record(&health, outcome, &self.spec().health, self.now.clone());
            let message = next.message.clone().unwrap_or_default();
            self.status.health = Some(next.clone());
            health = next;
            match verdict {
                HealthVerdict::Failed => {
                    let when = if had_passed {
                        " after it had passed"
                    } else {
                        ""
                    };
                    self.stop_smoke_test("the health gate failed");
                    return self.fail(
                        "HealthCheckFailed",
                        format!("health gate failed{when}: {message}"),
                    );
                }
                HealthVerdict::Passed => self.note(false, "HealthGatePassed", message),
                HealthVerdict::Pending => {}
            }
        }
        let interval = seconds(self.spec().health.interval_seconds);
        if !health.passed {
            return self.requeue_in(interval);
        }
        let last_watch = if self.o.health_check.is_some() {
            Some(self.o.now)
        } else {
            self.o.last_health_watch
        };
        let next_check = health::next_check(&health, &self.spec().health, last_watch);
        self.requeue_in(next_check.duration_since(self.o.now));
        // No verdict while the watch sees a failure streak: the next check ends it one way
        // or the other (within the deadline).
        let failing = health.consecutive_failures > 0;
        if self.spec().smoke_test.is_some() {
            match self.smoke_test(self.target(), JobPurpose::Smoke) {
                SmokeGate::Waiting => return,
                SmokeGate::Failed(message) => return self.fail("SmokeTestFailed", message),
                SmokeGate::Passed => {}
            }
        } else {
            self.stop_smoke_test("spec.smokeTest was removed");
        }
        let Some(analysis) = self.spec().analysis.clone() else {
            if failing {
                return;
            }
            return self.succeed();
        };
        if let Some(results) = &self.o.measurement {
            let previous = self.status.last_analysis.clone();
            let measurement = Measurement::classify(&analysis.kpis, results);
            let report = AnalysisReport {
                measured_at: self.now.clone(),
                measurement: previous.as_ref().map_or(0, |p| p.measurement) + 1,
                failures: previous.as_ref().map_or(0, |p| p.failures)
                    + i32::from(measurement.is_failure()),
                inconclusives: previous.as_ref().map_or(0, |p| p.inconclusives)
                    + i32::from(measurement.is_inconclusive()),
                kpis: results.clone(),
            };
            let summary = summarize(results);
            let n = report.measurement;
            self.status.last_analysis = Some(report.clone());
            if measurement.is_failure() {
                self.note(
                    true,
                    "KpiBreached",
                    format!("measurement {n} of {}: {summary}", analysis.measurements),
                );
            } else {
                self.note(
                    false,
                    "KpiMeasured",
                    format!("measurement {n} of {}: {summary}", analysis.measurements),
                );
            }
            if report.failures > analysis.failure_limit {
                let breached = describe(results, &measurement.failed);
                return self.fail(
                    "KpiBreached",
                    format!(
                        "KPI {breached} (measurement {n} of {}, failure limit {})",
                        analysis.measurements, analysis.failure_limit
                    ),
                );
            }
            if !measurement.paused.is_empty() {
                let message = format!(
                    "KPI {} breached with enforcement Pause; change the version or the retry token to go on",
                    describe(results, &measurement.paused)
                );
                self.note(true, "AnalysisPaused", message.clone());
                return self.set_hold("AnalysisPaused", message);
            }
            if report.inconclusives > analysis.inconclusive_limit {
                let message = format!(
                    "{} inconclusive measurements (limit {}): {}",
                    report.inconclusives,
                    analysis.inconclusive_limit,
                    describe(results, &measurement.inconclusive)
                );
                return match self.spec().rollback.on_inconclusive {
                    InconclusivePolicy::Rollback => self.fail("AnalysisInconclusive", message),
                    InconclusivePolicy::Pause => {
                        self.note(true, "AnalysisInconclusive", message.clone());
                        self.set_hold(
                            "AnalysisInconclusive",
                            format!("{message}; change the version or the retry token to go on"),
                        )
                    }
                };
            }
        }
        let taken = self
            .status
            .last_analysis
            .as_ref()
            .map_or(0, |a| a.measurement);
        if taken >= analysis.measurements {
            // Every measurement passed; the verdict waits out a failure streak of the watch.
            if !failing {
                self.succeed();
            }
            return;
        }
        let start =
            smoke::analysis_start(self.spec(), &self.status).unwrap_or_else(|| self.now.clone());
        let next = start.0
            + seconds(analysis.initial_delay_seconds)
            + seconds(analysis.interval_seconds * taken);
        self.requeue_in(next.duration_since(self.o.now));
    }

    pub(super) fn succeed(&mut self) {
        let target = self.target();
        self.status.phase = Some(Phase::Succeeded);
        self.status.stable_version = Some(target.version.clone());
        self.status.stable_image = Some(target.image.clone());
        if let Some(revision) = self.schema_target() {
            self.status.stable_schema_version = Some(revision);
        }
        self.status.failed_version = None;
        self.actions.push(Action::RecordStable {
            version: target.version.clone(),
        });
        self.push_history(
            Outcome::Succeeded,
            Some("ReleaseSucceeded".to_owned()),
            None,
        );
        self.set_condition(
            condition::DEGRADED,
            false,
            "ReleaseSucceeded",
            format!("{} passed every gate", target.version),
        );
        self.note(
            false,
            "ReleaseSucceeded",
            format!("{} passed every gate and is stable", target.version),
        );
        self.workload = Some(target);
    }
}

pub(super) fn summarize(results: &[KpiResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{} {:?}: {}",
                r.name,
                r.verdict,
                r.message.clone().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn describe(results: &[KpiResult], names: &[String]) -> String {
    results
        .iter()
        .filter(|r| names.contains(&r.name))
        .map(|r| format!("{} ({})", r.name, r.message.clone().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}
