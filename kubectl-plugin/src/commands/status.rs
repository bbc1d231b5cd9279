//! `status RELEASE [--timeout]`: a pipeline's gate. Waits for the current attempt's verdict,
//! printing one line per step, and exits 0 when it succeeded, 1 naming the reason when it
//! rolled back or failed, 3 when the timeout came first.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use listacompra_crds::ListaCompraRelease;

use super::Target;
use crate::error::{Error, Result};
use crate::verdict::{Step, Verdict, condition_of};

/// Exit code of a release that rolled back or failed.
const FAILED: u8 = 1;
/// Exit code of a timeout.
const TIMED_OUT: u8 = 3;

/// Waits for the verdict of `target`'s current spec, for at most `timeout`.
pub async fn run(target: &Target, timeout: Duration) -> Result<ExitCode> {
    let started = Instant::now();
    let mut release = target.release().await?;
    println!(
        "waiting for {target:?} {} (timeout {}s)",
        release.spec.version,
        timeout.as_secs()
    );
    let config = watcher::Config::default().fields(&format!("metadata.name={}", target.release));
    let mut events = watch(target.releases(), config).default_backoff().boxed();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut last: Option<Step> = None;
    loop {
        let step = Step::of(&release);
        if last.as_ref() != Some(&step) {
            let elapsed = started.elapsed().as_secs();
            let mark = if step.stalled {
                " (waits for a person)"
            } else {
                ""
            };
            println!("[{elapsed:>5}s] {:<16} {}{mark}", step.phase, step.detail);
            last = Some(step);
        }
        if let Some(code) = verdict(&release) {
            return Ok(code);
        }
        tokio::select! {
            () = &mut deadline => {
                let step = Step::of(&release);
                eprintln!(
                    "timed out after {}s: {target:?} is {} ({})",
                    timeout.as_secs(),
                    step.phase,
                    step.detail
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            event = events.next() => match event {
                Some(Ok(Event::Apply(r) | Event::InitApply(r))) => release = r,
                Some(Ok(Event::Delete(_))) => {
                    return Err(Error::Refused(format!("{target:?} was deleted while waiting")));
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                // Refused for good: waiting would only end at the timeout.
                Some(Err(error)) if denied(&error) => {
                    return Err(Error::Cluster(format!(
                        "watching {target:?}: {error} (the user needs get, list and watch on listacomprareleases)"
                    )));
                }
                // Anything else the watcher backs off from and reconnects by itself.
                Some(Err(error)) => eprintln!("watch interrupted ({error}); reconnecting"),
                None => return Err(Error::Cluster("the watch ended".to_owned())),
            }
        }
    }
}

/// The API server refused the watch (401, 403): retrying cannot help.
fn denied(error: &watcher::Error) -> bool {
    let code = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => 0,
    };
    matches!(code, 401 | 403)
}

/// The exit code once the attempt has a verdict, having printed it.
fn verdict(release: &ListaCompraRelease) -> Option<ExitCode> {
    let name = format!(
        "{}/{} {}",
        release.namespace().unwrap_or_default(),
        release.name_any(),
        release.spec.version
    );
    match Verdict::of(release) {
        Verdict::Succeeded => {
            let detail = condition_of(release, listacompra_crds::status::condition::READY)
                .map(|(_, _, message)| message)
                .unwrap_or_default();
            println!("{name} succeeded: {detail}");
            Some(ExitCode::SUCCESS)
        }
        Verdict::RolledBack { reason, message } => {
            let stable = release
                .status
                .as_ref()
                .and_then(|s| s.stable_version.clone())
                .unwrap_or_default();
            eprintln!("{name} rolled back to {stable}: {reason}: {message}");
            Some(ExitCode::from(FAILED))
        }
        Verdict::Failed { reason, message } => {
            eprintln!("{name} failed: {reason}: {message}");
            Some(ExitCode::from(FAILED))
        }
        Verdict::NotObserved | Verdict::InFlight => None,
    }
}
