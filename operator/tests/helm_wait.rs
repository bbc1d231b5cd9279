//! The runbook's own command, made safe: `helm upgrade --install ... --wait` of the chart
//! with the environment's release (values `release`), with Helm 4 built from its module,
//! against the real control plane and the operator as a real process. Helm waits through
//! kstatus, so the command returns only once the release Succeeded, and fails, naming the
//! release and why, when it rolled back.

mod support;

use anyhow::{Result, ensure};
use e2e::cluster::{TestContext, with_namespace};
use e2e::helm::{Helm, Output};
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::{Value, json};
use support::{Endpoint, Operator, RELEASE_SECRETS, create_secret, deployed_image, release};

const IMAGE: &str = "registry.example/listacompra/api";

/// `helm upgrade --install lcs <chart> --wait` with the release `lc` of `spec`, the operator
/// of the chart watching the test namespace (its pods are kwok pods: the test runs the
/// operator).
async fn upgrade(ctx: &TestContext, helm: &Helm, spec: &Value) -> Result<Output> {
    let namespaces = format!("watchNamespaces=[\"{}\"]", ctx.namespace);
    let spec = format!("release.spec={spec}");
    Ok(helm
        .run(&[
            "upgrade",
            "--install",
            "lcs",
            &Helm::chart().to_string_lossy(),
            "--namespace",
            &ctx.namespace,
            "--set-json",
            &namespaces,
            "--set",
            "replicaCount=1",
            "--set",
            "podDisruptionBudget.enabled=false",
            "--set",
            "release.enabled=true",
            "--set",
            "release.name=lc",
            "--set-json",
            &spec,
            "--wait",
            "--timeout",
            "150s",
        ])
        .await?)
}

async fn phase(ctx: &TestContext) -> Result<(String, Option<Phase>)> {
    let lc = ctx.api::<ListaCompraRelease>().get("lc").await?;
    Ok((lc.spec.version, lc.status.and_then(|s| s.phase)))
}

#[tokio::test]
async fn helm_upgrade_wait_returns_with_the_verdict_of_the_release() {
    with_namespace("helm-wait", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        for (name, key) in RELEASE_SECRETS {
            create_secret(&ctx, name, key).await?;
        }
        let helm = Helm::with_kubeconfig(ctx.cluster.kubeconfig()).await?;
        let result = async {
            // 1.0.0 passes its gates: helm returns once it Succeeded.
            let out = upgrade(&ctx, &helm, &release("1.0.0", 1, &endpoint.url)["spec"]).await?;
            ensure!(
                out.success,
                "helm --wait of a good release failed:\n{}{}",
                out.stdout,
                out.stderr
            );
            ensure!(phase(&ctx).await? == ("1.0.0".to_owned(), Some(Phase::Succeeded)));
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));

            // 1.1.0 fails its health gate and rolls back: helm fails, naming the release.
            endpoint.set_health(503);
            let out = upgrade(&ctx, &helm, &release("1.1.0", 2, &endpoint.url)["spec"]).await?;
            ensure!(
                !out.success,
                "helm --wait succeeded for a release that rolls back:\n{}",
                out.stdout
            );
            ensure!(
                out.stderr.contains(&format!(
                    "ListaCompraRelease/{}/lc not ready. status: Failed",
                    ctx.namespace
                )) && out
                    .stderr
                    .contains("1.1.0 rolled back to 1.0.0: health gate failed"),
                "helm's error names the release and its verdict:\n{}",
                out.stderr
            );
            println!("helm said: {}", out.stderr.trim());
            ensure!(phase(&ctx).await? == ("1.1.0".to_owned(), Some(Phase::RolledBack)));
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));

            // Fixed: a retry token through the same command, and it passes.
            endpoint.set_health(200);
            let mut spec = release("1.1.0", 2, &endpoint.url)["spec"].clone();
            spec["retryToken"] = json!("fixed");
            let out = upgrade(&ctx, &helm, &spec).await?;
            ensure!(
                out.success,
                "helm --wait of the retried release failed:\n{}{}",
                out.stdout,
                out.stderr
            );
            ensure!(phase(&ctx).await? == ("1.1.0".to_owned(), Some(Phase::Succeeded)));
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
            Ok(())
        }
        .await;
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}
