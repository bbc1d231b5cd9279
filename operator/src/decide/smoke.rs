//! The smoke-test gate: a Job of a version's image that uses the API as a user would,
//! against that version's pods. It runs in Verifying (the new version, after the health
//! gate, before the KPI analysis) and at the end of a rollback (the stable version).

use listacompra_crds::status::SmokeTestProgress;

use super::machine::Machine;
use super::*;
use crate::naming::{self, JobPurpose};

/// Where a smoke test stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SmokeGate {
    /// Its Job is created or running: look again.
    Waiting,
    /// It passed.
    Passed,
    /// It failed, with why.
    Failed(String),
}

impl Machine<'_, '_> {
    /// Runs (or follows) the smoke test of `workload` for this attempt. `purpose` tells the
    /// new version's test from the stable version's after a rollback (their Jobs differ even
    /// when the versions are the same, as after a failed retry of the stable version).
    pub(super) fn smoke_test(&mut self, workload: Workload, purpose: JobPurpose) -> SmokeGate {
        let name = self.smoke_job_name(&workload, purpose);
        let Some(progress) = self.status.smoke_test.clone().filter(|p| p.job == name) else {
            self.status.smoke_test = Some(SmokeTestProgress {
                job: name.clone(),
                version: workload.version.clone(),
                start_time: self.now.clone(),
                completion_time: None,
                passed: false,
                message: None,
            });
            self.note(
                false,
                "SmokeTestStarted",
                format!("smoke-test Job {name} runs against {}", workload.version),
            );
            self.create_smoke_job(name, workload, purpose);
            return SmokeGate::Waiting;
        };
        if progress.passed {
            return SmokeGate::Passed;
        }
        if progress.completion_time.is_some() {
            return SmokeGate::Failed(progress.message.unwrap_or_default());
        }
        match self.observed_smoke_job(&name) {
            JobState::Absent => {
                // Not in the cache yet, or deleted by hand: create it (again); a Job that
                // exists makes that a no-op.
                self.create_smoke_job(name, workload, purpose);
                SmokeGate::Waiting
            }
            JobState::Running => {
                self.wait();
                SmokeGate::Waiting
            }
            JobState::Succeeded => {
                self.end_smoke_test(true, None);
                self.note(
                    false,
                    "SmokeTestPassed",
                    format!("smoke-test Job {name} passed against {}", workload.version),
                );
                SmokeGate::Passed
            }
            JobState::Failed(why) => {
                let message = format!("smoke-test Job {name} failed: {why}");
                self.end_smoke_test(false, Some(message.clone()));
                SmokeGate::Failed(message)
            }
        }
    }

    /// The smoke test of `workload` for `purpose` in this attempt has ended (passed or not),
    /// as recorded or as its Job is observed now (a reconcile that comes late, after a
    /// restart or a backoff, finds it ended).
    pub(super) fn smoke_test_ended(&self, workload: &Workload, purpose: JobPurpose) -> bool {
        let name = self.smoke_job_name(workload, purpose);
        let recorded = self
            .status
            .smoke_test
            .as_ref()
            .is_some_and(|p| p.job == name && p.completion_time.is_some());
        recorded
            || matches!(
                self.observed_smoke_job(&name),
                JobState::Succeeded | JobState::Failed(_)
            )
    }

    /// The observed state of the smoke Job `name`: the controller observed the Job the status
    /// named when it was read, so any other name is unknown (Absent).
    fn observed_smoke_job(&self, name: &str) -> JobState {
        match &self.o.status.smoke_test {
            Some(read) if read.job == name => self.o.smoke_job.clone(),
            _ => JobState::Absent,
        }
    }

    fn smoke_job_name(&self, workload: &Workload, purpose: JobPurpose) -> String {
        naming::job_name(
            self.o.release,
            purpose,
            &workload.version,
            0,
            self.attempt(),
        )
    }

    /// A smoke test that has not ended when its gate no longer applies (the attempt is
    /// superseded, a deadline passed, the rollback ended, `smokeTest` was removed) is ended:
    /// a Job observed to have finished keeps its real outcome; any other is deleted (also
    /// when a lagging cache does not show it: a Job that is gone makes that a no-op) and
    /// recorded as stopped, so that no smoke test runs against a Service that serves
    /// something else, and the status never says "running" for a Job that is gone.
    pub(super) fn stop_smoke_test(&mut self, why: &str) {
        let Some(progress) = self.status.smoke_test.clone() else {
            return;
        };
        if progress.completion_time.is_some() {
            return;
        }
        match self.observed_smoke_job(&progress.job) {
            JobState::Succeeded => self.end_smoke_test(true, None),
            JobState::Failed(reason) => self.end_smoke_test(
                false,
                Some(format!("smoke-test Job {} failed: {reason}", progress.job)),
            ),
            JobState::Running | JobState::Absent => {
                self.actions.push(Action::DeleteJob {
                    name: progress.job.clone(),
                });
                self.end_smoke_test(false, Some(format!("stopped: {why}")));
            }
        }
    }

    fn create_smoke_job(&mut self, name: String, workload: Workload, purpose: JobPurpose) {
        self.actions.push(Action::CreateJob {
            name,
            attempt: self.attempt(),
            purpose,
            workload,
            revision: 0,
        });
        self.wait();
    }

    fn end_smoke_test(&mut self, passed: bool, message: Option<String>) {
        if let Some(progress) = self.status.smoke_test.as_mut() {
            progress.passed = passed;
            progress.completion_time = Some(self.now.clone());
            progress.message = message;
        }
    }
}

/// When the KPI analysis of the current attempt starts counting: once the smoke test passed
/// when the release has one, else once the rollout became available. `None` while the
/// analysis must not start.
pub(super) fn analysis_start(
    spec: &ListaCompraReleaseSpec,
    status: &ListaCompraReleaseStatus,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    if spec.smoke_test.is_none() {
        return status.verification_start_time.clone();
    }
    status
        .smoke_test
        .as_ref()
        .filter(|p| p.passed && p.version == spec.version)
        .and_then(|p| p.completion_time.clone())
}
