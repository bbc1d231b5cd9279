//! How the process stops: a stop request listened for from the first moment of `main`, and
//! the reconciles in flight finished (or, past a bound, abandoned) before the Lease is given
//! up.
//!
//! Why not kube-runtime's `Controller::shutdown_on_signal`: it subscribes to the signals only
//! when the controller is first polled, so a SIGTERM that arrives while the process connects
//! or campaigns for the Lease is lost once any other listener existed; and its graceful stop
//! never ends when it comes before the first list of releases is complete (the runner waits
//! for a store that will no longer fill). Here the signals are subscribed before anything
//! else, the request is sticky, and the stop is complete as soon as no reconcile is running.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long the reconciles in flight get to finish after a stop request. Shorter than the
/// chart's `terminationGracePeriodSeconds` (30 s by default), so the Lease is still released
/// before the kubelet kills the process.
pub const GRACE: Duration = Duration::from_secs(20);

/// A stop request: once made it stays made, whoever waits for it and whenever.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
}

impl Stop {
    /// A request made by SIGTERM (the kubelet) or SIGINT (a terminal), subscribed now.
    ///
    /// # Errors
    /// When the process cannot install the signal handlers.
    pub fn on_signals() -> std::io::Result<Self> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let stop = Self::default();
        let requested = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => info!(signal = "SIGTERM", "stop requested"),
                _ = interrupt.recv() => info!(signal = "SIGINT", "stop requested"),
            }
            requested.request();
        });
        Ok(stop)
    }

    /// Makes the request.
    pub fn request(&self) {
        self.token.cancel();
    }

    /// Whether the request was made.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the request is made (at once when it already was).
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.token.clone().cancelled_owned()
    }
}

/// The reconciles running now, so a stop can wait for exactly them.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    tracker: TaskTracker,
}

impl InFlight {
    /// Counts `work` as in flight until it completes.
    pub fn track<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        self.tracker.track_future(work)
    }

    /// After `stop` is requested, resolves once no tracked work is running: at once when none
    /// is, else when the last one completes, else after `grace` (what is left is dropped by
    /// the caller and done again by the next leader: reconciles are idempotent).
    pub async fn drained(&self, stop: &Stop, grace: Duration) {
        stop.requested().await;
        self.tracker.close();
        let running = self.tracker.len();
        if running > 0 {
            info!(running, grace = ?grace, "waiting for the reconciles in flight");
        }
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                running = self.tracker.len(),
                grace = ?grace,
                "reconciles still running after the grace period; abandoning them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_made_before_anyone_waits_is_not_lost() {
        let stop = Stop::default();
        stop.request();
        tokio::time::timeout(Duration::from_secs(1), stop.requested())
            .await
            .expect("an earlier request resolves a later wait");
        assert!(stop.is_requested());
    }

    #[tokio::test]
    async fn nothing_in_flight_means_drained_at_once() {
        let (stop, in_flight) = (Stop::default(), InFlight::default());
        stop.request();
        tokio::time::timeout(Duration::from_secs(1), in_flight.drained(&stop, GRACE))
            .await
            .expect("no reconcile running: the stop is complete at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_reconcile_is_waited_for_up_to_the_grace() {
        let (stop, in_flight) = (Stop::default(), InFlight::default());
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let work = tokio::spawn(in_flight.track(async move {
            let _ = finished.await;
        }));
        stop.request();
        let drained = in_flight.drained(&stop, GRACE);
        tokio::pin!(drained);
        // Still running: not drained before the work completes.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut drained)
                .await
                .is_err()
        );
        finish.send(()).expect("the work waits");
        work.await.expect("the work completes");
        tokio::time::timeout(Duration::from_secs(1), &mut drained)
            .await
            .expect("drained once the last reconcile completed");

        // A reconcile that never completes is waited for no longer than the grace.
        let (stop, in_flight) = (Stop::default(), InFlight::default());
        let _stuck = tokio::spawn(in_flight.track(std::future::pending::<()>()));
        stop.request();
        let started = tokio::time::Instant::now();
        in_flight.drained(&stop, GRACE).await;
        assert_eq!(started.elapsed(), GRACE);
    }

    #[tokio::test]
    async fn sigterm_before_anyone_waits_is_not_lost() {
        let stop = Stop::on_signals().expect("signal handlers");
        let pid = std::process::id().to_string();
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), stop.requested())
            .await
            .expect("the SIGTERM sent before the wait began resolves it");
    }
}
