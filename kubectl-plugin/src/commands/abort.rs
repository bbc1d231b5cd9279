//! `abort RELEASE`: the attempt in flight stops and rolls back now. An annotation naming the
//! attempt, not a spec change (see `listacompra_crds::release::ABORT_ANNOTATION`).

use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use listacompra_crds::Phase;
use listacompra_crds::release::ABORT_ANNOTATION;
use serde_json::json;

use super::Target;
use crate::error::{Error, Result};
use crate::gitops::FIELD_MANAGER;
use crate::verdict::new_attempt_pending;

/// Tries of a guarded write that conflicts with the operator's own status writes.
const TRIES: usize = 5;

/// Annotates the release with the attempt in flight, guarded by the resourceVersion it
/// decided on (a spec changed meanwhile is decided again).
pub async fn run(target: &Target) -> Result<ExitCode> {
    for _ in 0..TRIES {
        let release = target.release().await?;
        let status = release.status.clone().unwrap_or_default();
        if new_attempt_pending(&release) {
            return Err(Error::Refused(format!(
                "the operator has not taken up the latest change of {target:?} yet; abort the attempt it starts (see `kubectl listacompra get {}`)",
                target.release
            )));
        }
        let in_flight = status.phase.is_some_and(Phase::advancing);
        let (true, Some(attempt)) = (in_flight, status.attempt) else {
            return Err(Error::Refused(format!(
                "{target:?} has no attempt in flight to abort (phase {:?})",
                status.phase
            )));
        };
        let patch = json!({ "metadata": {
            "resourceVersion": release.metadata.resource_version,
            "annotations": { ABORT_ANNOTATION: attempt.to_string() },
        } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match target
            .releases()
            .patch(&target.release, &params, &Patch::Merge(patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(source) => {
                return Err(Error::Kube {
                    action: format!("annotating {target:?}"),
                    source,
                });
            }
            Ok(_) => {}
        }
        let outcome = match status.stable_version {
            Some(stable) => format!("rolling back to {stable}"),
            None => "no stable version to roll back to: it ends Failed".to_owned(),
        };
        println!(
            "{target:?}: attempt {attempt} of {} aborted; {outcome} (follow it: kubectl listacompra status {})",
            release.spec.version, target.release
        );
        return Ok(ExitCode::SUCCESS);
    }
    Err(Error::Cluster(format!(
        "{target:?} kept changing while aborting it ({TRIES} tries); try again"
    )))
}
