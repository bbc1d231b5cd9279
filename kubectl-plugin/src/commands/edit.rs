//! `retry`, `pause`, `resume`: the commands that change the spec. Each says so, and warns
//! when a GitOps tool or pipeline also manages the spec (its next sync may undo the change).

use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use listacompra_crds::status::condition;
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::{Value, json};

use super::Target;
use crate::error::{self, Error, Result};
use crate::gitops::{self, FIELD_MANAGER};
use crate::verdict::condition_of;

/// Tries of a guarded write that conflicts with the operator's own status writes.
const TRIES: usize = 5;

/// Sets a new `spec.retryToken`, after a rollback or a failure (or while the release waits
/// for a person: a held analysis, a stall). Guarded by the resourceVersion it decided on,
/// and decided again on a conflict.
pub async fn retry(target: &Target) -> Result<ExitCode> {
    for _ in 0..TRIES {
        let release = target.release().await?;
        let status = release.status.clone().unwrap_or_default();
        let stalled = condition_of(&release, condition::STALLED).is_some_and(|(on, ..)| on);
        let ended = matches!(status.phase, Some(Phase::RolledBack | Phase::Failed));
        if !ended && !stalled {
            return Err(Error::Refused(format!(
                "{target:?} is {:?} and not stalled: there is nothing to retry (abort it first with `kubectl listacompra abort {}`)",
                status.phase, target.release
            )));
        }
        let token = retry_token(status.attempt);
        if release.spec.retry_token.as_deref() == Some(token.as_str()) {
            println!(
                "{target:?}: a retry of attempt {} is already requested (spec.retryToken {token})",
                status.attempt.unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let what = format!(
            "spec.retryToken set to {token}: {} is released again",
            release.spec.version
        );
        let guarded = Some(release.metadata.resource_version.clone());
        match change_spec(target, &release, "retryToken", json!(token), guarded).await {
            Err(Error::Kube {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 409 => continue,
            Err(e) => return Err(e),
            Ok(()) => {
                println!("{target:?}: {what} (a change of the spec)");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Err(Error::Cluster(format!(
        "{target:?} kept changing while retrying it ({TRIES} tries); try again"
    )))
}

/// The retry token after `attempt` ended: named after it, so a second retry before the
/// operator starts the new attempt changes nothing (the Argo CD action makes the same).
fn retry_token(attempt: Option<i64>) -> String {
    format!("retry-after-attempt-{}", attempt.unwrap_or_default())
}

/// Sets or clears `spec.paused` (unguarded: setting it is the same whatever changed).
pub async fn pause(target: &Target, paused: bool) -> Result<ExitCode> {
    let release = target.release().await?;
    if release.spec.paused == paused {
        println!("{target:?}: spec.paused is already {paused}; nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    change_spec(target, &release, "paused", json!(paused), None).await?;
    let what = if paused {
        "spec.paused set to true: the release stops at its next step"
    } else {
        "spec.paused set to false: the release goes on"
    };
    println!("{target:?}: {what} (a change of the spec)");
    Ok(ExitCode::SUCCESS)
}

/// Merges `spec.<field> = value` into the release (guarded by `resource_version` when
/// given), after the GitOps warning.
async fn change_spec(
    target: &Target,
    release: &ListaCompraRelease,
    field: &str,
    value: Value,
    resource_version: Option<Option<String>>,
) -> Result<()> {
    let entries = release
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    if let Some(warning) = gitops::warning(&target.release, field, entries) {
        eprintln!("{warning}");
    }
    let mut patch = json!({ "spec": { field: value } });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
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
        .map_err(error::kube(format!("changing spec.{field} of {target:?}")))?;
    Ok(())
}
