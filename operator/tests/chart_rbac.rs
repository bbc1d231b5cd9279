//! The chart's RBAC is sufficient and least privilege: the chart is installed with Helm in
//! namespace-scoped mode, and the operator runs as the chart's ServiceAccount (a token from
//! the TokenRequest API, not the admin certificate) through a release, a second release and
//! a rollback, with leader election. The API server is then asked what that ServiceAccount
//! may and may not do.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::access::{Check, verify};
use e2e::cluster::{Cluster, TestContext, with_namespace};
use e2e::helm::Helm;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use listacompra_crds::Phase;
use listacompra_crds::status::condition;
use serde_json::{Value, json};
use support::{
    Endpoint, Operator, apply, condition as cond, deployed_image, expect_events, jobs, release,
    wait_phase,
};

const TIMEOUT: Duration = Duration::from_secs(90);
const IMAGE: &str = "registry.example/listacompra/api";
/// The chart's full name for release `lco`: ServiceAccount, Roles and Lease are named so.
const NAME: &str = "lco-listacompra-operator";
/// The only Secret the release makes the operator read (its health-check token).
const TOKEN_SECRET: &str = "health-token";

/// A release whose health gate sends the token from [`TOKEN_SECRET`].
fn release_with_token(version: &str, schema: i64, health_url: &str) -> Value {
    let mut manifest = release(version, schema, health_url);
    manifest["spec"]["health"]["tokenSecretRef"] = json!({ "name": TOKEN_SECRET, "key": "token" });
    manifest
}

/// Installs the chart for the test namespace only, with the token Secret allowed by name.
async fn install_chart(ctx: &TestContext) -> Result<()> {
    let helm = Helm::with_kubeconfig(ctx.cluster.kubeconfig()).await?;
    let namespaces = format!("watchNamespaces=[\"{}\"]", ctx.namespace);
    let secrets = format!("rbac.secretNames=[\"{TOKEN_SECRET}\"]");
    helm.ok(&[
        "install",
        "lco",
        &Helm::chart().to_string_lossy(),
        "--namespace",
        &ctx.namespace,
        "--set-json",
        &namespaces,
        "--set-json",
        &secrets,
        // The chart's own pods are kwok pods that run nothing: this test runs the operator.
        "--set",
        "replicaCount=1",
        "--set",
        "podDisruptionBudget.enabled=false",
        // As helm/production: rotation on, its grant in the one watched namespace.
        "--set",
        "secretRotation.enabled=true",
    ])
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_operator_runs_a_release_and_a_rollback_with_only_the_charts_rbac() {
    with_namespace("chart-rbac", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        install_chart(&ctx).await?;
        ctx.api::<Secret>()
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some(TOKEN_SECRET.to_owned()),
                        ..ObjectMeta::default()
                    },
                    data: Some([("token".to_owned(), ByteString(b"s3cret".to_vec()))].into()),
                    ..Secret::default()
                },
            )
            .await?;
        let kubeconfig = std::env::temp_dir().join(format!("{}-sa.kubeconfig", ctx.namespace));
        ctx.cluster
            .service_account_kubeconfig(&ctx.client, &ctx.namespace, NAME, 3600, &kubeconfig)
            .await?;
        let kubeconfig_path = kubeconfig.to_string_lossy().into_owned();
        // KUBECONFIG given here wins over the admin one that start_with sets first.
        let operator = Operator::start_with(
            &ctx,
            &[
                ("KUBECONFIG", kubeconfig_path.as_str()),
                ("LEADER_ELECTION", "true"),
                ("LEASE_NAME", NAME),
                ("POD_NAME", "rbac-test-pod"),
                // The health endpoint stands in for the release's Service on 127.0.0.1: the
                // admin allows the token to go there (chart value gates.allowedHosts).
                ("GATE_ALLOWED_HOSTS", "127.0.0.1"),
                ("WATCH_SECRETS", "true"),
            ],
        )?;
        let result = scenarios(&ctx, &operator, &kubeconfig).await;
        let _ = std::fs::remove_file(&kubeconfig);
        if result.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        result
    })
    .await;
}

async fn scenarios(
    ctx: &TestContext,
    operator: &Operator,
    kubeconfig: &std::path::Path,
) -> Result<()> {
    let endpoint = Endpoint::start().await?;
    // Happy path: two versions, each migrated, rolled out, health-gated (reading the token
    // Secret), and recorded as stable.
    apply(ctx, &release_with_token("1.0.0", 1, &endpoint.url)).await?;
    wait_phase(ctx, "1.0.0", Phase::Succeeded, TIMEOUT).await?;
    apply(ctx, &release_with_token("1.1.0", 2, &endpoint.url)).await?;
    let lc = wait_phase(ctx, "1.1.0", Phase::Succeeded, TIMEOUT).await?;
    ensure!(lc.status.and_then(|s| s.stable_version).as_deref() == Some("1.1.0"));
    ensure!(deployed_image(ctx).await? == format!("{IMAGE}:1.1.0"));
    ensure!(jobs(ctx, "migrate").await?.len() == 2);

    // Rollback: a failing health gate brings back 1.1.0's pod template (from its
    // ControllerRevision) and schema (a revert Job).
    endpoint.set_health(503);
    apply(ctx, &release_with_token("1.2.0", 3, &endpoint.url)).await?;
    let lc = wait_phase(ctx, "1.2.0", Phase::RolledBack, TIMEOUT).await?;
    let (_, reason, message) = cond(&lc, condition::DEGRADED);
    ensure!(reason == "HealthCheckFailed", "{reason}: {message}");
    ensure!(deployed_image(ctx).await? == format!("{IMAGE}:1.1.0"));
    ensure!(lc.status.as_ref().and_then(|s| s.schema_version) == Some(2));
    ensure!(
        !jobs(ctx, "revert").await?.is_empty(),
        "no schema revert Job"
    );
    // Events are published with the ServiceAccount's rights too (a failure would only be
    // logged by the operator, so look for them).
    expect_events(
        ctx,
        &["ReleaseSucceeded", "HealthCheckFailed", "RolledBack"],
    )
    .await?;

    // It acted as leader, through the Lease the chart's Role allows.
    let lease = ctx.api::<Lease>().get(NAME).await?;
    let holder = lease.spec.and_then(|s| s.holder_identity);
    ensure!(
        holder.as_deref() == Some("rbac-test-pod"),
        "lease holder {holder:?}"
    );
    // And was never refused anything.
    let log = operator.log();
    ensure!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the operator was refused a request:\n{}",
        log.lines()
            .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Least privilege, asked of the API server with the same token.
    let sa = Cluster::client_from(kubeconfig)
        .await
        .context("a client for the chart's ServiceAccount")?;
    let ns = ctx.namespace.as_str();
    let group = "listacompra.app";
    let must = [
        Check::new("list", group, "listacomprareleases", ns),
        Check::new("watch", group, "listacomprareleases", ns),
        Check::new("get", group, "listacomprareleases", ns),
        Check::new("patch", group, "listacomprareleases/status", ns),
        Check::new("create", "batch", "jobs", ns),
        Check::new("delete", "batch", "jobs", ns),
        Check::new("patch", "apps", "deployments", ns),
        Check::new("create", "", "services", ns),
        Check::new("watch", "", "services", ns),
        Check::new("get", "", "services", ns),
        Check::new("create", "apps", "controllerrevisions", ns),
        Check::new("list", "apps", "controllerrevisions", ns),
        Check::new("watch", "apps", "controllerrevisions", ns),
        Check::new("delete", "apps", "controllerrevisions", ns),
        Check::new("get", "", "secrets", ns).named(TOKEN_SECRET),
        // Secret rotation (enabled here): the Secrets' metadata is watched, in the namespace.
        Check::new("list", "", "secrets", ns),
        Check::new("watch", "", "secrets", ns),
        // What a release names must exist before anything launches (metadata GETs).
        Check::new("get", "", "configmaps", ns),
        Check::new("get", "", "serviceaccounts", ns),
        Check::new("create", "events.k8s.io", "events", ns),
        // Approvals wake their release and are counted (never written).
        Check::new("list", group, "listacompraapprovals", ns),
        Check::new("watch", group, "listacompraapprovals", ns),
        // Restores wake their release; their status records each step.
        Check::new("get", group, "listacomprarestores", ns),
        Check::new("list", group, "listacomprarestores", ns),
        Check::new("watch", group, "listacomprarestores", ns),
        Check::new("patch", group, "listacomprarestores/status", ns),
        // The database a restore stops and starts: read, and scaled.
        Check::new("get", "apps", "statefulsets", ns),
        Check::new("patch", "apps", "statefulsets/scale", ns),
        Check::new("create", "coordination.k8s.io", "leases", ns),
        Check::new("update", "coordination.k8s.io", "leases", ns).named(NAME),
    ];
    let must_not = [
        // Secrets: only the named one is read, nowhere else is anything listed.
        Check::new("get", "", "secrets", ns).named("db"),
        Check::new("get", "", "secrets", "kube-system").named(TOKEN_SECRET),
        Check::new("watch", "", "secrets", "kube-system"),
        Check::new("list", "", "secrets", ""),
        Check::new("create", group, "listacompraapprovals", ns),
        // A restore is a person's request, and the database's StatefulSet is theirs: only
        // its scale changes.
        Check::new("create", group, "listacomprarestores", ns),
        Check::new("patch", group, "listacomprarestores", ns),
        Check::new("patch", "apps", "statefulsets", ns),
        Check::new("delete", "apps", "statefulsets", ns),
        // Nothing outside the watched namespace.
        Check::new("list", group, "listacomprareleases", ""),
        Check::new("list", group, "listacomprareleases", "default"),
        Check::new("create", "apps", "deployments", "default"),
        Check::new("create", "batch", "jobs", "default"),
        Check::new("create", "events.k8s.io", "events", "default"),
        // The spec belongs to GitOps; CRDs and RBAC to the platform team.
        Check::new("patch", group, "listacomprareleases", ns),
        Check::new("update", group, "listacomprareleases", ns),
        Check::new("delete", group, "listacomprareleases", ns),
        Check::new(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
        )
        .named("listacomprareleases.listacompra.app"),
        Check::new("create", "rbac.authorization.k8s.io", "rolebindings", ns),
        // No more than the verbs the code uses.
        Check::new("delete", "apps", "deployments", ns),
        Check::new("update", "apps", "deployments", ns),
        Check::new("create", "", "pods", ns),
        Check::new("delete", "", "services", ns),
        Check::new("list", "", "configmaps", ns),
        Check::new("watch", "", "configmaps", ns),
        Check::new("update", "", "configmaps", ns),
        Check::new("list", "", "serviceaccounts", ns),
        Check::new("create", "", "serviceaccounts/token", ns),
        Check::new("update", "coordination.k8s.io", "leases", ns).named("someone-else"),
        Check::new("delete", "coordination.k8s.io", "leases", ns).named(NAME),
    ];
    verify(&sa, &must, &must_not).await?;
    Ok(())
}
