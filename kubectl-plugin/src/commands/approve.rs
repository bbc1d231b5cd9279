//! `approve RELEASE --role ROLE [--restore NAME]`: a ListaCompraApproval of the attempt
//! waiting for approvals (or of a restore of the release's database), by the user running
//! the command (the API server checks both who and which role).

use std::process::ExitCode;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, PostParams};
use listacompra_crds::restore::RestorePhase;
use listacompra_crds::{
    ListaCompraApproval, ListaCompraApprovalSpec, ListaCompraRelease, ListaCompraRestore, Phase,
};

use super::Target;
use crate::error::{self, Error, Result};
use crate::verdict::new_attempt_pending;

/// The roles `release` requires approvals of, or why `role` is not one of them.
fn check_role(target: &Target, release: &ListaCompraRelease, role: &str) -> Result<()> {
    let roles = release
        .spec
        .approvals
        .as_ref()
        .map(|a| a.required_roles.clone())
        .unwrap_or_default();
    if !roles.iter().any(|r| r == role) {
        return Err(Error::Refused(format!(
            "{target:?} does not need an approval as {role} (spec.approvals.requiredRoles: {})",
            if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            }
        )));
    }
    Ok(())
}

/// Creates the approval, or says why it cannot.
pub async fn run(target: &Target, role: &str, comment: Option<String>) -> Result<ExitCode> {
    let release = target.release().await?;
    let status = release.status.clone().unwrap_or_default();
    check_role(target, &release, role)?;
    if new_attempt_pending(&release) {
        return Err(Error::Refused(format!(
            "the operator has not taken up the latest change of {target:?} yet: it starts the attempt over, and an approval of this one would not count; approve the attempt it starts"
        )));
    }
    let (Some(Phase::AwaitingApproval), Some(attempt)) = (status.phase, status.attempt) else {
        return Err(Error::Refused(format!(
            "{target:?} is not waiting for approvals (phase {:?}); an approval counts only for the attempt that waits",
            status.phase
        )));
    };
    let user = whoami(target).await?;
    let spec = ListaCompraApprovalSpec {
        release: target.release.clone(),
        version: release.spec.version.clone(),
        attempt,
        role: role.to_owned(),
        approver: user,
        comment,
        restore: None,
        restore_uid: None,
    };
    let what = format!("attempt {attempt} of {}", release.spec.version);
    give(
        target,
        spec,
        &format!("{}-{attempt}-{role}-", target.release),
        &what,
    )
    .await
}

/// Creates the approval of the restore `restore`, or says why it cannot: for the release's
/// current version and attempt, as the operator counts it.
pub async fn restore(
    target: &Target,
    role: &str,
    restore: &str,
    comment: Option<String>,
) -> Result<ExitCode> {
    let release = target.release().await?;
    check_role(target, &release, role)?;
    let restores: Api<ListaCompraRestore> = target.api();
    let found = restores
        .get_opt(restore)
        .await
        .map_err(error::kube(format!("reading ListaCompraRestore {restore}")))?;
    let Some(found) = found.filter(|r| r.spec.release == target.release) else {
        return Err(Error::Refused(format!(
            "no ListaCompraRestore {restore} of {target:?} in this namespace"
        )));
    };
    let waiting = found
        .status
        .as_ref()
        .is_none_or(|s| matches!(s.phase, None | Some(RestorePhase::Pending)));
    if !waiting {
        return Err(Error::Refused(format!(
            "ListaCompraRestore {restore} is not waiting for approvals (phase {:?})",
            found.status.and_then(|s| s.phase)
        )));
    }
    let status = release.status.clone().unwrap_or_default();
    let (Some(version), Some(attempt)) = (status.current_version, status.attempt) else {
        return Err(Error::Refused(format!(
            "{target:?} has not released anything yet: there is nothing to restore"
        )));
    };
    let spec = ListaCompraApprovalSpec {
        release: target.release.clone(),
        version,
        attempt,
        role: role.to_owned(),
        approver: whoami(target).await?,
        comment,
        restore: Some(restore.to_owned()),
        restore_uid: found.metadata.uid.clone(),
    };
    give(
        target,
        spec,
        &format!("{restore}-{role}-"),
        &format!("restore {restore}"),
    )
    .await
}

/// Creates the approval `spec` (named `<prefix><random>`) of `what`, unless the same user
/// already gave the same one: approving again is a no-op.
async fn give(
    target: &Target,
    spec: ListaCompraApprovalSpec,
    prefix: &str,
    what: &str,
) -> Result<ExitCode> {
    let approvals: Api<ListaCompraApproval> = target.api();
    // The approvals of this release (a selectable field).
    let mine = approvals
        .list(&ListParams::default().fields(&format!("spec.release={}", target.release)))
        .await
        .map_err(error::kube(format!("listing the approvals of {target:?}")))?
        .items
        .into_iter()
        .find(|a| {
            a.spec.version == spec.version
                && a.spec.attempt == spec.attempt
                && a.spec.role == spec.role
                && a.spec.approver == spec.approver
                && a.spec.restore_uid == spec.restore_uid
        });
    let (role, user) = (spec.role.clone(), spec.approver.clone());
    if let Some(existing) = mine {
        println!(
            "{target:?}: you ({user}) already approved {what} as {role} (ListaCompraApproval {})",
            existing.metadata.name.unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut approval = ListaCompraApproval::new("", spec);
    approval.metadata.name = None;
    approval.metadata.generate_name = Some(prefix.to_owned());
    let created = approvals
        .create(&PostParams::default(), &approval)
        .await
        .map_err(error::kube(format!(
            "approving {what} of {target:?} as {role} ({user})"
        )))?;
    println!(
        "{target:?}: {what} approved as {role} by {user} (ListaCompraApproval {})",
        created.metadata.name.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// The user name the API server knows the caller by (`kubectl auth whoami`).
async fn whoami(target: &Target) -> Result<String> {
    let review = Api::<SelfSubjectReview>::all(target.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(error::kube(
            "asking the API server who you are (SelfSubjectReview)",
        ))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| Error::Cluster("the API server did not say who you are".to_owned()))
}
