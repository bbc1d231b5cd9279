//! `logs RELEASE migration|revert|smoke`: what the current attempt's Job printed, from the
//! pod log API (every pod the Job ran, oldest first).

use std::process::ExitCode;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::Target;
use crate::cli::JobKind;
use crate::error::{self, Error, Result};

/// Prints the logs of the Job of `kind` named in the release's status.
pub async fn run(target: &Target, kind: JobKind, tail: Option<i64>) -> Result<ExitCode> {
    let release = target.release().await?;
    let status = release.status.unwrap_or_default();
    let (job, field) = match kind {
        JobKind::Migration => (status.migration_job, "status.migrationJob"),
        JobKind::Revert => (status.revert_job, "status.revertJob"),
        JobKind::Smoke => (status.smoke_test.map(|s| s.job), "status.smokeTest.job"),
    };
    let Some(job) = job else {
        return Err(Error::Refused(format!(
            "the current attempt of {target:?} has no such Job ({field} is empty)"
        )));
    };
    let pods: Api<Pod> = target.api();
    let mut list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map_err(error::kube(format!("listing the pods of Job {job}")))?
        .items;
    if list.is_empty() {
        return Err(Error::Refused(format!(
            "Job {job} has no pods (left): it may have been cleaned up; its outcome is in `kubectl listacompra get {}`",
            target.release
        )));
    }
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let params = LogParams {
        tail_lines: tail,
        ..LogParams::default()
    };
    for pod in list {
        let name = pod.name_any();
        let text = pods
            .logs(&name, &params)
            .await
            .map_err(error::kube(format!(
                "reading the logs of pod {name} (Job {job})"
            )))?;
        println!("==> pod {name} (Job {job}) <==");
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
