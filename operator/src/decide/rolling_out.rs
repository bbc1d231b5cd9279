//! RollingOut: the Deployment rolls to the target version until it is available.

use std::time::Duration;

use listacompra_crds::Phase;

use super::machine::Machine;

impl Machine<'_, '_> {
    pub(super) fn start_rollout(&mut self) {
        self.status.phase = Some(Phase::RollingOut);
        self.stamp_secrets();
        self.workload = Some(self.target());
        self.wait();
    }

    pub(super) fn rolling_out(&mut self) {
        let target = self.target();
        self.workload = Some(target.clone());
        if self.deadline_passed() && !self.spec().paused {
            return self.fail(
                "ProgressDeadlineExceeded",
                format!(
                    "{} did not become available within {}s",
                    self.version(),
                    self.spec().progress_deadline_seconds
                ),
            );
        }
        if let Some(message) = self.o.workload.stalled.clone() {
            return self.fail(
                "RolloutFailed",
                format!("the Deployment of {} stalled: {message}", self.version()),
            );
        }
        if self.is_serving(&target) {
            if self.spec().paused {
                return self.pause();
            }
            self.status.phase = Some(Phase::Verifying);
            self.status.verification_start_time = Some(self.now.clone());
            self.status.health = None;
            self.note(
                false,
                "RolloutAvailable",
                format!("{} is available; running the gates", self.version()),
            );
            self.requeue_after = Duration::ZERO;
        } else {
            self.wait();
        }
    }
}
