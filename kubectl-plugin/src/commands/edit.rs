//! `retry`, `pause`, `resume`: the commands that change the spec. Each says so, and warns
//! when a GitOps tool or pipeline also manages the spec (its next sync may undo the change).

use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::{Value, json};

use super::Target;
use crate::error::{self, Error, Result};
use crate::gitops::{self, FIELD_MANAGER};

/// Sets a new `spec.retryToken`, after a rollback or a failure (or while the release waits
/// for a person: a held analysis, a stall).
pub async fn retry(target: &Target) -> Result<ExitCode> {
    let release = target.release().await?;
    let status = release.status.clone().unwrap_or_default();
    let stalled =
        crate::verdict::condition_of(&release, listacompra_crds::status::condition::STALLED)
            .is_some_and(|(on, ..)| on);
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
    change_spec(
        target,
        &release,
        json!({ "retryToken": token }),
        &format!(
            "spec.retryToken set to {token}: {} is released again",
            release.spec.version
        ),
    )
    .await
}

/// The retry token after `attempt` ended: named after it, so a second retry before the
/// operator starts the new attempt changes nothing (the Argo CD action makes the same).
fn retry_token(attempt: Option<i64>) -> String {
    format!("retry-after-attempt-{}", attempt.unwrap_or_default())
}

/// Sets or clears `spec.paused`.
pub async fn pause(target: &Target, paused: bool) -> Result<ExitCode> {
    let release = target.release().await?;
    if release.spec.paused == paused {
        println!("{target:?}: spec.paused is already {paused}; nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    let what = if paused {
        "spec.paused set to true: the release stops at its next step"
    } else {
        "spec.paused set to false: the release goes on"
    };
    change_spec(target, &release, json!({ "paused": paused }), what).await
}

/// Merges `spec` into the release's spec (guarded by its resourceVersion: a release changed
/// meanwhile is not overwritten), after the GitOps warning.
async fn change_spec(
    target: &Target,
    release: &ListaCompraRelease,
    spec: Value,
    what: &str,
) -> Result<ExitCode> {
    let managers = gitops::spec_managers(
        release
            .metadata
            .managed_fields
            .as_deref()
            .unwrap_or_default(),
    );
    if let Some(warning) = gitops::warning(&target.release, &managers) {
        eprintln!("{warning}");
    }
    let patch = json!({
        "metadata": { "resourceVersion": release.metadata.resource_version },
        "spec": spec,
    });
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
        .map_err(error::kube(format!("changing the spec of {target:?}")))?;
    println!("{target:?}: {what} (a change of the spec)");
    Ok(ExitCode::SUCCESS)
}
