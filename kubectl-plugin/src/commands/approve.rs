//! `approve RELEASE --role ROLE`: a ListaCompraApproval of the attempt waiting for approvals,
//! by the user running the command (the API server checks both who and which role).

use std::process::ExitCode;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use listacompra_crds::{ListaCompraApproval, ListaCompraApprovalSpec, Phase};

use super::Target;
use crate::error::{self, Error, Result};

/// Creates the approval, or says why it cannot.
pub async fn run(target: &Target, role: &str, comment: Option<String>) -> Result<ExitCode> {
    let release = target.release().await?;
    let status = release.status.clone().unwrap_or_default();
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
    let (Some(Phase::AwaitingApproval), Some(attempt)) = (status.phase, status.attempt) else {
        return Err(Error::Refused(format!(
            "{target:?} is not waiting for approvals (phase {:?}); an approval counts only for the attempt that waits",
            status.phase
        )));
    };
    let user = whoami(target).await?;
    let name = format!("{}-{attempt}-{role}", target.release);
    let approval = ListaCompraApproval::new(
        &name,
        ListaCompraApprovalSpec {
            release: target.release.clone(),
            version: release.spec.version.clone(),
            attempt,
            role: role.to_owned(),
            approver: user.clone(),
            comment,
        },
    );
    let approvals: Api<ListaCompraApproval> = target.api();
    match approvals.create(&PostParams::default(), &approval).await {
        Ok(_) => {
            println!(
                "{target:?}: attempt {attempt} of {} approved as {role} by {user} (ListaCompraApproval {name})",
                release.spec.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = approvals
                .get(&name)
                .await
                .map_err(error::kube(format!("reading ListaCompraApproval {name}")))?;
            Err(Error::Refused(format!(
                "attempt {attempt} of {target:?} is already approved as {role} by {} (ListaCompraApproval {name})",
                existing.spec.approver
            )))
        }
        Err(source) => Err(Error::Kube {
            action: format!("approving {target:?} as {role} ({user})"),
            source,
        }),
    }
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
        .ok_or_else(|| Error::Refused("the API server did not say who you are".to_owned()))
}
