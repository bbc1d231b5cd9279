//! `WATCH_NAMESPACES=""`: one operator for the whole cluster (the chart's ClusterRole
//! mode). Its own test binary, so that no other test's operator acts at the same time.

mod support;

use std::time::Duration;

use anyhow::Result;
use e2e::cluster::{TestContext, with_namespace};
use listacompra_crds::Phase;
use support::{Endpoint, Operator, apply, release, wait_phase};

const TIMEOUT: Duration = Duration::from_secs(90);

async fn released(ctx: &TestContext, operator: &Operator) -> Result<()> {
    let result = wait_phase(ctx, "1.0.0", Phase::Succeeded, TIMEOUT).await;
    if result.is_err() {
        eprintln!("operator log:\n{}", operator.log());
    }
    result.map(|_| ())
}

#[tokio::test]
async fn one_operator_for_all_namespaces_releases_in_each() {
    with_namespace("op-all-a", |a| async move {
        with_namespace("op-all-b", |b| async move {
            e2e::crd::install_crds(&a.client).await?;
            let operator = Operator::start_with(
                &a,
                &[("LEADER_ELECTION", "false"), ("WATCH_NAMESPACES", "")],
            )?;
            let endpoint = Endpoint::start().await?;
            apply(&a, &release("1.0.0", 1, &endpoint.url)).await?;
            apply(&b, &release("1.0.0", 1, &endpoint.url)).await?;
            released(&a, &operator).await?;
            released(&b, &operator).await?;
            Ok::<(), anyhow::Error>(())
        })
        .await;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
