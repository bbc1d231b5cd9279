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

/// `helm upgrade --install lcs <chart> --wait` with the release `lc` of `spec` (none: the
/// release off, an upgrade of the operator alone), the operator of the chart watching the
/// test namespace (its pods are kwok pods: the test runs the operator).
async fn upgrade(ctx: &TestContext, helm: &Helm, spec: Option<&Value>) -> Result<Output> {
    let namespaces = format!("watchNamespaces=[\"{}\"]", ctx.namespace);
    let chart = Helm::chart().to_string_lossy().into_owned();
    let mut args = vec![
        "upgrade".to_owned(),
        "--install".to_owned(),
        "lcs".to_owned(),
        chart,
        "--namespace".to_owned(),
        ctx.namespace.clone(),
        "--set-json".to_owned(),
        namespaces,
        "--set".to_owned(),
        "replicaCount=1".to_owned(),
        "--set".to_owned(),
        "podDisruptionBudget.enabled=false".to_owned(),
        "--wait".to_owned(),
        "--timeout".to_owned(),
        "150s".to_owned(),
    ];
    if let Some(spec) = spec {
        args.extend([
            "--set".to_owned(),
            "release.enabled=true".to_owned(),
            "--set".to_owned(),
            "release.name=lc".to_owned(),
            "--set-json".to_owned(),
            format!("release.spec={spec}"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(helm.run(&args).await?)
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
            let out = upgrade(
                &ctx,
                &helm,
                Some(&release("1.0.0", 1, &endpoint.url)["spec"]),
            )
            .await?;
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
            let out = upgrade(
                &ctx,
                &helm,
                Some(&release("1.1.0", 2, &endpoint.url)["spec"]),
            )
            .await?;
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
            let out = upgrade(&ctx, &helm, Some(&spec)).await?;
            ensure!(
                out.success,
                "helm --wait of the retried release failed:\n{}{}",
                out.stdout,
                out.stderr
            );
            ensure!(phase(&ctx).await? == ("1.1.0".to_owned(), Some(Phase::Succeeded)));
            ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));

            // An upgrade of the operator alone (the release off) leaves the release as it is.
            let out = upgrade(&ctx, &helm, None).await?;
            ensure!(
                out.success,
                "helm upgrade of the operator alone failed:\n{}",
                out.stderr
            );
            ensure!(phase(&ctx).await? == ("1.1.0".to_owned(), Some(Phase::Succeeded)));
            Ok(())
        }
        .await;
        // The chart's cluster-scoped objects (approval policies, personas) go with it; the
        // release is kept (resource-policy keep) and goes with the namespace.
        let uninstalled = helm
            .run(&["uninstall", "lcs", "--namespace", &ctx.namespace])
            .await;
        let result = result.and_then(|()| {
            let out = uninstalled?;
            ensure!(out.success, "helm uninstall: {}", out.stderr);
            Ok(())
        });
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}
