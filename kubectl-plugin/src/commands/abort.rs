//! `abort RELEASE`: the attempt in flight stops and rolls back now. An annotation naming the
//! attempt, not a spec change (see `listacompra_crds::release::ABORT_ANNOTATION`).

use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use listacompra_crds::Phase;
use listacompra_crds::release::ABORT_ANNOTATION;
use serde_json::json;

use super::Target;
use crate::error::{self, Error, Result};
use crate::gitops::FIELD_MANAGER;

/// Annotates the release with the attempt in flight.
pub async fn run(target: &Target) -> Result<ExitCode> {
    let release = target.release().await?;
    let status = release.status.clone().unwrap_or_default();
    // A change the operator has not taken up yet may start a new attempt first (a new
    // version, retry token or image; before the launch, any change of the spec), which an
    // annotation naming the current one would not stop. A pause or resume does not.
    let unobserved = status.observed_generation.unwrap_or_default()
        < release.metadata.generation.unwrap_or_default();
    let unlaunched = matches!(status.phase, Some(Phase::Pending | Phase::AwaitingApproval));
    if !status.describes(&release.spec) || (unobserved && unlaunched) {
        return Err(Error::Refused(format!(
            "the operator has not taken up the latest change of {target:?} yet; abort the attempt it starts (see `kubectl listacompra get {}`)",
            target.release
        )));
    }
    let in_flight = matches!(
        status.phase,
        Some(
            Phase::Pending
                | Phase::AwaitingApproval
                | Phase::Migrating
                | Phase::RollingOut
                | Phase::Verifying
        )
    );
    let (true, Some(attempt)) = (in_flight, status.attempt) else {
        return Err(Error::Refused(format!(
            "{target:?} has no attempt in flight to abort (phase {:?})",
            status.phase
        )));
    };
    let patch = json!({ "metadata": { "annotations": { ABORT_ANNOTATION: attempt.to_string() } } });
    target
        .releases()
        .patch(
            &target.release,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(patch),
        )
        .await
        .map_err(error::kube(format!("annotating {target:?}")))?;
    let outcome = match status.stable_version {
        Some(stable) => format!("rolling back to {stable}"),
        None => "no stable version to roll back to: it ends Failed".to_owned(),
    };
    println!(
        "{target:?}: attempt {attempt} of {} aborted; {outcome} (follow it: kubectl listacompra status {})",
        release.spec.version, target.release
    );
    Ok(ExitCode::SUCCESS)
}
