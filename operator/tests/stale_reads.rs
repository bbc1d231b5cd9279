//! A reconcile may read an outdated copy of a release: the watch cache lags the API server
//! (under load, after a watch reconnects). Acting on that copy must not happen: no Job
//! created or deleted, no Deployment changed. Reconciles are called directly here, with a
//! copy kept from earlier, on the real control plane.

mod support;

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use e2e::cluster::{TestContext, with_namespace};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::DeleteParams;
use listacompra_crds::{ListaCompraRelease, Phase};
use listacompra_operator::controller::{Context, reconcile};
use listacompra_operator::packed::Packed;
use listacompra_operator::telemetry::Metrics;
use support::{Endpoint, RELEASE_SECRETS, apply_release, create_secret, release};

async fn reconcile_copy(ctx: &Arc<Context>, copy: ListaCompraRelease) -> Result<()> {
    reconcile(
        Arc::new(Packed::pack(serde_json::to_value(copy)?)?),
        ctx.clone(),
    )
    .await?;
    Ok(())
}

async fn job_names(ctx: &TestContext) -> Result<Vec<String>> {
    let mut names: Vec<String> = ctx
        .api::<Job>()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn a_reconcile_of_an_outdated_copy_of_the_release_launches_nothing() {
    with_namespace("op-stale", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        for (name, key) in RELEASE_SECRETS {
            create_secret(&ctx, name, key).await?;
        }
        let endpoint = Endpoint::start().await?;
        let operator = Arc::new(Context::new(
            ctx.client.clone(),
            Arc::new(Metrics::new()?),
            None,
        ));
        let api: Api<ListaCompraRelease> = ctx.api();

        // 1.0.0: its first reconcile launches attempt 1's migration Job.
        apply_release(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        reconcile_copy(&operator, api.get("lc").await?).await?;
        let outdated = api.get("lc").await?;
        let status = outdated.status.clone().context("no status")?;
        ensure!(status.phase == Some(Phase::Migrating), "{status:#?}");
        let first_job = status.migration_job.clone().context("no migration Job")?;

        // 1.1.0 supersedes it (attempt 2), and someone deletes the old Job by hand.
        apply_release(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
        reconcile_copy(&operator, api.get("lc").await?).await?;
        let _ = ctx
            .api::<Job>()
            .delete(&first_job, &DeleteParams::foreground())
            .await;
        support::eventually_absent::<Job>(&ctx, &first_job).await?;
        let jobs_before = job_names(&ctx).await?;

        // A reconcile of the copy read before 1.1.0 was applied: the cache lagged.
        let _ = reconcile_copy(&operator, outdated).await;

        let jobs_after = job_names(&ctx).await?;
        ensure!(
            jobs_after == jobs_before,
            "an outdated copy of the release changed the Jobs: {jobs_before:?} → {jobs_after:?}"
        );
        let now = api.get("lc").await?.status.context("no status")?;
        ensure!(
            now.current_version.as_deref() == Some("1.1.0") && now.attempt == Some(2),
            "an outdated copy changed the status: {now:#?}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
