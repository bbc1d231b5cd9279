//! The ListaCompraRelease CRD on the real API server: it installs, `kubectl explain` reads
//! well, the samples are accepted, the server applies the same defaults as the Rust types,
//! and invalid releases are rejected with a message naming the offending field.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::cluster::{TestContext, with_namespace};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use listacompra_crds::analysis::default_kpis;
use listacompra_crds::{ListaCompraRelease, ListaCompraReleaseSpec};
use serde_json::{Value, json};

/// A minimal valid release: only what has no default.
fn minimal() -> Value {
    e2e::crd::minimal_release("minimal")
}

/// RFC 7386 merge patch: objects merge, `null` removes, anything else replaces.
fn merged(mut base: Value, patch: &Value) -> Value {
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
    merge(&mut base, patch);
    base
}

fn releases(ctx: &TestContext) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("listacompra.app", "v1alpha1", "ListaCompraRelease");
    Api::namespaced_with(
        ctx.client.clone(),
        &ctx.namespace,
        &ApiResource::from_gvk(&gvk),
    )
}

fn kubectl(ctx: &TestContext, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new(ctx.cluster.bin_dir()?.join("kubectl"))
        .arg("--kubeconfig")
        .arg(ctx.cluster.kubeconfig())
        .args(args)
        .output()?;
    ensure!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn kubectl_explain_documents_the_spec() {
    with_namespace("crd-explain", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        // The API server publishes a new CRD's OpenAPI schema shortly after Established.
        e2e::cluster::eventually(
            "the CRD schema to be published",
            Duration::from_secs(60),
            || {
                let ok = kubectl(&ctx, &["explain", "listacomprarelease.spec"]).is_ok();
                async move { ok.then_some(()) }
            },
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let analysis = kubectl(&ctx, &["explain", "listacomprarelease.spec.analysis"])?;
        for expected in [
            "The KPI gate",
            "failureLimit",
            "inconclusiveLimit",
            "kpis",
            "prometheus",
            "-required-",
        ] {
            ensure!(
                analysis.contains(expected),
                "explain spec.analysis lacks {expected:?}:\n{analysis}"
            );
        }
        let kpis = kubectl(&ctx, &["explain", "lcr.spec.analysis.kpis"])?;
        for expected in [
            "enum: Pass, Fail, Inconclusive",
            "enum: Observe, Pause, Rollback",
            "PromQL",
        ] {
            ensure!(
                kpis.contains(expected),
                "explain spec.analysis.kpis lacks {expected:?}:\n{kpis}"
            );
        }
        let migrations = kubectl(&ctx, &["explain", "lcr.spec.migrations.schemaVersion"])?;
        ensure!(
            migrations.contains("schema revision this version needs"),
            "{migrations}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn samples_are_accepted_and_printed_with_their_columns() {
    with_namespace("crd-samples", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let api = releases(&ctx);
        let root = e2e::env::repo_root().join("config/samples");
        for (file, name) in [
            ("staging.yaml", "staging"),
            ("production.yaml", "production"),
        ] {
            let text = std::fs::read_to_string(root.join(file))?;
            let mut sample: Value =
                serde_yaml_ng::from_str(&text).with_context(|| file.to_owned())?;
            sample["metadata"]["namespace"] = json!(ctx.namespace);
            sample["metadata"]["name"] = json!(name);
            let object: DynamicObject = serde_json::from_value(sample)?;
            let dry_run = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            api.create(&dry_run, &object)
                .await
                .with_context(|| format!("{file} rejected on dry run"))?;
            api.create(&PostParams::default(), &object)
                .await
                .with_context(|| format!("{file} rejected"))?;
        }
        let table = kubectl(&ctx, &["get", "lcr", "-n", &ctx.namespace])?;
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        ensure!(
            header == ["NAME", "VERSION", "STABLE", "PHASE", "READY", "AGE"],
            "columns: {header:?}"
        );
        ensure!(
            table.lines().filter(|l| l.contains("1.1.0")).count() == 2,
            "{table}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn server_applies_the_same_defaults_as_the_types() {
    with_namespace("crd-defaults", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let api: Api<ListaCompraRelease> = ctx.api();
        let manifest = merged(
            minimal(),
            &json!({ "spec": { "analysis": { "prometheus": { "address": "http://prometheus:9090" } } } }),
        );
        let local: ListaCompraRelease = serde_json::from_value(manifest.clone())?;
        let created = api.create(&PostParams::default(), &local).await?;
        // What the server stored must equal what serde's defaults produce locally.
        let from_server: ListaCompraReleaseSpec = created.spec;
        let from_types: ListaCompraReleaseSpec = serde_json::from_value(manifest["spec"].clone())?;
        ensure!(from_server == from_types, "server defaults differ:\nserver: {from_server:#?}\ntypes: {from_types:#?}");
        let analysis = from_server.analysis.context("analysis kept")?;
        ensure!(analysis.kpis == default_kpis(), "the runbook KPIs were not defaulted");
        ensure!(from_server.health.liveness_path == "/health" && from_server.health.readiness_path == "/ready");
        ensure!(from_server.migrations.command == ["listacompra-api", "migrate"]);
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// Each case: a merge patch over [`minimal`] and the field path the rejection must name.
const INVALID: &[(&str, &str, &str)] = &[
    (
        "not semver",
        r#"{"spec":{"version":"1.0"}}"#,
        "spec.version",
    ),
    (
        "leading v",
        r#"{"spec":{"version":"v1.0.0"}}"#,
        "spec.version",
    ),
    ("no version", r#"{"spec":{"version":null}}"#, "spec.version"),
    (
        "tag and digest",
        r#"{"spec":{"image":{"tag":"1.0.0","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}}}"#,
        "spec.image",
    ),
    (
        "bad digest",
        r#"{"spec":{"image":{"digest":"sha256:xyz"}}}"#,
        "spec.image.digest",
    ),
    (
        "zero replicas",
        r#"{"spec":{"replicas":0}}"#,
        "spec.replicas",
    ),
    (
        "inline secret",
        r#"{"spec":{"env":{"databaseUrl":"postgres://user:pw@db/app"}}}"#,
        "spec.env.databaseUrl",
    ),
    (
        "no jwt secret",
        r#"{"spec":{"env":{"jwtSecret":null}}}"#,
        "spec.env.jwtSecret",
    ),
    (
        "empty secret key",
        r#"{"spec":{"env":{"redisUrl":{"name":"redis","key":""}}}}"#,
        "spec.env.redisUrl.key",
    ),
    (
        "no migrations",
        r#"{"spec":{"migrations":null}}"#,
        "spec.migrations",
    ),
    (
        "no schema version",
        r#"{"spec":{"migrations":{"schemaVersion":null}}}"#,
        "spec.migrations.schemaVersion",
    ),
    (
        "schema range inverted",
        r#"{"spec":{"migrations":{"schemaVersion":3,"minSchemaVersion":4}}}"#,
        "spec.migrations.minSchemaVersion",
    ),
    (
        "negative backoff",
        r#"{"spec":{"migrations":{"backoffLimit":-1}}}"#,
        "spec.migrations.backoffLimit",
    ),
    (
        "zero job deadline",
        r#"{"spec":{"migrations":{"activeDeadlineSeconds":0}}}"#,
        "spec.migrations.activeDeadlineSeconds",
    ),
    (
        "health path",
        r#"{"spec":{"health":{"livenessPath":"health"}}}"#,
        "spec.health.livenessPath",
    ),
    (
        "zero interval",
        r#"{"spec":{"health":{"intervalSeconds":0}}}"#,
        "spec.health.intervalSeconds",
    ),
    (
        "timeout over interval",
        r#"{"spec":{"health":{"intervalSeconds":5,"timeoutSeconds":10}}}"#,
        "spec.health.timeoutSeconds",
    ),
    (
        "health base url",
        r#"{"spec":{"health":{"baseUrl":"api.example"}}}"#,
        "spec.health.baseUrl",
    ),
    (
        "prometheus address",
        r#"{"spec":{"analysis":{"prometheus":{"address":"prometheus:9090"}}}}"#,
        "spec.analysis.prometheus.address",
    ),
    (
        "two auth methods",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090","auth":{"bearerTokenSecretRef":{"name":"a","key":"b"},"basicAuth":{"usernameSecretRef":{"name":"a","key":"u"},"passwordSecretRef":{"name":"a","key":"p"}}}}}}}"#,
        "spec.analysis.prometheus.auth",
    ),
    (
        "negative failure limit",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"failureLimit":-1}}}"#,
        "spec.analysis.failureLimit",
    ),
    (
        "failure limit unreachable",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"measurements":3,"failureLimit":3}}}"#,
        "spec.analysis.failureLimit",
    ),
    (
        "kpi without bound",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"latency","query":"up"}]}}}"#,
        "spec.analysis.kpis[0]",
    ),
    (
        "kpi min over max",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"latency","query":"up","min":5,"max":1}]}}}"#,
        "spec.analysis.kpis[0].min",
    ),
    (
        "kpi name",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"P95 Latency","query":"up","max":1}]}}}"#,
        "spec.analysis.kpis[0].name",
    ),
    (
        "kpi empty query",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"latency","query":"","max":1}]}}}"#,
        "spec.analysis.kpis[0].query",
    ),
    (
        "kpi no-data policy",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"latency","query":"up","max":1,"onNoData":"maybe"}]}}}"#,
        "spec.analysis.kpis[0].onNoData",
    ),
    (
        "duplicate kpi",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"a","query":"up","max":1},{"name":"a","query":"up","max":2}]}}}"#,
        "spec.analysis.kpis[1]",
    ),
    (
        "kpi enforcement",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://p:9090"},"kpis":[{"name":"a","query":"up","max":1,"enforcement":"Ignore"}]}}}"#,
        "spec.analysis.kpis[0].enforcement",
    ),
    (
        "inconclusive policy",
        r#"{"spec":{"rollback":{"onInconclusive":"Ignore"}}}"#,
        "spec.rollback.onInconclusive",
    ),
    (
        "tiny deadline",
        r#"{"spec":{"progressDeadlineSeconds":0}}"#,
        "spec.progressDeadlineSeconds",
    ),
    (
        "service port",
        r#"{"spec":{"service":{"port":70000}}}"#,
        "spec.service.port",
    ),
    (
        "build metadata without an image tag",
        r#"{"spec":{"version":"1.2.0+build.5"}}"#,
        "spec.version",
    ),
    (
        "backup schedule that is not cron",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[{"configMapName":"pgbackrest"}],"full":{"schedule":"every day","maxAgeSeconds":90000}}}}"#,
        "spec.backups.full.schedule",
    ),
    (
        "backup schedule with six fields",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[{"configMapName":"pgbackrest"}],"incremental":{"schedule":"0 0 */6 * * *","maxAgeSeconds":25200}}}}"#,
        "spec.backups.incremental.schedule",
    ),
    (
        "backups as root",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[{"configMapName":"pgbackrest"}],"runAsUser":0}}}"#,
        "spec.backups.runAsUser",
    ),
    (
        "backups without pgBackRest options",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[]}}}"#,
        "spec.backups.envFrom",
    ),
    (
        "backup image without a tag",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest"},"envFrom":[{"configMapName":"pgbackrest"}]}}}"#,
        "spec.backups.image.tag",
    ),
    (
        "upper-case image repository",
        r#"{"spec":{"image":{"repository":"registry.example/ListaCompra/API"}}}"#,
        "spec.image.repository",
    ),
    (
        "image repository with a tag",
        r#"{"spec":{"image":{"repository":"registry.example/listacompra/api:1.0.0"}}}"#,
        "spec.image.repository",
    ),
    (
        "Secret name not a DNS name",
        r#"{"spec":{"env":{"databaseUrl":{"name":"My_Secret","key":"url"}}}}"#,
        "spec.env.databaseUrl.name",
    ),
    (
        "Secret key with a slash",
        r#"{"spec":{"env":{"databaseUrl":{"name":"db","key":"a/b"}}}}"#,
        "spec.env.databaseUrl.key",
    ),
    (
        "ConfigMap name not a DNS name",
        r#"{"spec":{"env":{"envFrom":[{"configMapName":"Runtime Settings"}]}}}"#,
        "spec.env.envFrom[0].configMapName",
    ),
    (
        "pull Secret name not a DNS name",
        r#"{"spec":{"image":{"pullSecrets":["Registry Login"]}}}"#,
        "spec.image.pullSecrets[0]",
    ),
    (
        "ServiceAccount name not a DNS name",
        r#"{"spec":{"pod":{"serviceAccountName":"API_Runner"}}}"#,
        "spec.pod.serviceAccountName",
    ),
    (
        "CPU limit not a quantity",
        r#"{"spec":{"pod":{"resources":{"limits":{"cpu":"lots"}}}}}"#,
        "spec.pod.resources",
    ),
    (
        "memory request not a quantity",
        r#"{"spec":{"pod":{"resources":{"requests":{"memory":"256 MB"}}}}}"#,
        "spec.pod.resources",
    ),
    (
        "worker memory limit not a quantity",
        r#"{"spec":{"worker":{"resources":{"limits":{"memory":"lots"}}}}}"#,
        "spec.worker.resources",
    ),
    (
        "negative worker replicas",
        r#"{"spec":{"worker":{"replicas":-1}}}"#,
        "spec.worker.replicas",
    ),
    (
        "a smoke test with no worker to answer its AI step",
        r#"{"spec":{"smokeTest":{},"worker":{"replicas":0}}}"#,
        "spec.worker.replicas",
    ),
    (
        "pod label overriding the selector",
        r#"{"spec":{"pod":{"labels":{"app.kubernetes.io/instance":"other"}}}}"#,
        "spec.pod.labels",
    ),
    (
        "pod label value not a label value",
        r#"{"spec":{"pod":{"labels":{"team":"shopping lists"}}}}"#,
        "spec.pod.labels",
    ),
    (
        "negative drain",
        r#"{"spec":{"pod":{"drainSeconds":-1}}}"#,
        "spec.pod.drainSeconds",
    ),
    (
        "trace endpoint not an http(s) URL",
        r#"{"spec":{"env":{"tracing":{"otlpEndpoint":"jaeger:4317"}}}}"#,
        "spec.env.tracing.otlpEndpoint",
    ),
    (
        "sampling ratio above 1",
        r#"{"spec":{"env":{"tracing":{"otlpEndpoint":"http://jaeger:4318","samplingRatio":"1.5"}}}}"#,
        "spec.env.tracing.samplingRatio",
    ),
    (
        "bucket name with upper case",
        r#"{"spec":{"env":{"s3":{"bucket":"Lists","credentialsSecretRef":{"name":"lc-s3"}}}}}"#,
        "spec.env.s3.bucket",
    ),
    (
        "S3 without credentials",
        r#"{"spec":{"env":{"s3":{"bucket":"lists"}}}}"#,
        "spec.env.s3.credentialsSecretRef",
    ),
    (
        "bucket with dots on AWS in virtual-hosted style",
        r#"{"spec":{"env":{"s3":{"bucket":"files.example.com","credentialsSecretRef":{"name":"lc-s3"}}}}}"#,
        "spec.env.s3.forcePathStyle",
    ),
    (
        "public S3 endpoint by IP address in virtual-hosted style",
        r#"{"spec":{"env":{"s3":{"bucket":"lists","endpoint":"https://s3.example.com","publicEndpoint":"http://192.0.2.7:9000","credentialsSecretRef":{"name":"lc-s3"}}}}}"#,
        "spec.env.s3.forcePathStyle",
    ),
    (
        "S3 endpoint by IP address in virtual-hosted style",
        r#"{"spec":{"env":{"s3":{"bucket":"lists","endpoint":"http://10.0.0.5:9000","credentialsSecretRef":{"name":"lc-s3"}}}}}"#,
        "spec.env.s3.forcePathStyle",
    ),
    (
        "an approval role that is not a DNS label",
        r#"{"spec":{"approvals":{"requiredRoles":["QA"]}}}"#,
        "spec.approvals.requiredRoles[0]",
    ),
    (
        "the same approval role twice",
        r#"{"spec":{"approvals":{"requiredRoles":["qa","qa"]}}}"#,
        "spec.approvals.requiredRoles[1]",
    ),
    (
        "approvals without roles",
        r#"{"spec":{"approvals":{"requiredRoles":[]}}}"#,
        "spec.approvals.requiredRoles",
    ),
    (
        "a pre-flight alert check without a Prometheus to ask",
        r#"{"spec":{"preflight":{"firingAlerts":{"matchLabels":{"severity":"critical"}}}}}"#,
        "spec.preflight.firingAlerts",
    ),
    (
        "a pre-flight alert check matching every alert",
        r#"{"spec":{"preflight":{"firingAlerts":{"prometheus":{"address":"http://prometheus:9090"},"matchLabels":{}}}}}"#,
        "spec.preflight.firingAlerts.matchLabels",
    ),
    (
        "a pre-flight label with an empty value (matching every alert without it)",
        r#"{"spec":{"preflight":{"firingAlerts":{"prometheus":{"address":"http://prometheus:9090"},"matchLabels":{"team":""}}}}}"#,
        "spec.preflight.firingAlerts.matchLabels",
    ),
    (
        "a pre-flight label that is not a Prometheus label name",
        r#"{"spec":{"preflight":{"firingAlerts":{"prometheus":{"address":"http://prometheus:9090"},"matchLabels":{"app.kubernetes.io/name":"api"}}}}}"#,
        "spec.preflight.firingAlerts.matchLabels",
    ),
];

/// Releases near the edges that the operator can carry out, so they must be accepted.
const VALID: &[(&str, &str)] = &[
    (
        "build metadata with an explicit tag",
        r#"{"spec":{"version":"1.2.0+build.5","image":{"tag":"1.2.0-build.5"}}}"#,
    ),
    (
        "registry with a port",
        r#"{"spec":{"image":{"repository":"localhost:5000/listacompra/api"}}}"#,
    ),
    (
        "registry host with upper case",
        r#"{"spec":{"image":{"repository":"Registry.Example.com/listacompra/api-server"}}}"#,
    ),
    (
        "quantities",
        r#"{"spec":{"pod":{"resources":{"requests":{"cpu":"250m","memory":"128Mi"},"limits":{"cpu":2,"memory":"1Gi"}}}}}"#,
    ),
    (
        "traces to a collector, one in ten",
        r#"{"spec":{"env":{"tracing":{"otlpEndpoint":"https://otel-collector.observability:4318","samplingRatio":"0.1"}}}}"#,
    ),
    (
        "attachments in a bucket of an S3-protocol server",
        r#"{"spec":{"env":{"s3":{"bucket":"lc-attachments","region":"eu-west-1","endpoint":"http://10.0.0.5:9000","publicEndpoint":"https://files.example.com","forcePathStyle":true,"credentialsSecretRef":{"name":"lc-s3","accessKeyIdKey":"AWS_ACCESS_KEY_ID","secretAccessKeyKey":"AWS_SECRET_ACCESS_KEY"}}}}}"#,
    ),
    (
        "attachments in AWS S3, defaults",
        r#"{"spec":{"env":{"s3":{"bucket":"lc-attachments","credentialsSecretRef":{"name":"lc-s3"}}}}}"#,
    ),
    (
        "a pre-flight alert check on the analysis' Prometheus",
        r#"{"spec":{"analysis":{"prometheus":{"address":"http://prometheus:9090"}},"preflight":{"firingAlerts":{"matchLabels":{"severity":"critical","service":"listacompra-api"}}}}}"#,
    ),
    (
        "the worker scaled to 0 (no smoke test)",
        r#"{"spec":{"worker":{"replicas":0,"resources":{"requests":{"cpu":"50m","memory":"64Mi"}}}}}"#,
    ),
    (
        "backups on the runbook's schedules, by default",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[{"configMapName":"pgbackrest"}]}}}"#,
    ),
    (
        "backups on schedules of our own, in Madrid's time",
        r#"{"spec":{"backups":{"image":{"repository":"ghcr.io/listacompra/pgbackrest","tag":"2.45"},"envFrom":[{"configMapName":"pgbackrest"}],"timeZone":"Europe/Madrid","full":{"schedule":"30 2 * * SUN","maxAgeSeconds":691200},"incremental":{"schedule":"@hourly","maxAgeSeconds":7200,"suspend":true},"runAsUser":26,"runAsGroup":26}}}"#,
    ),
    (
        "labels of our own",
        r#"{"spec":{"pod":{"labels":{"team":"lists","example.com/tier":"api"},"serviceAccountName":"listacompra-api"}}}"#,
    ),
];

#[tokio::test]
async fn releases_the_operator_can_carry_out_are_accepted() {
    with_namespace("crd-valid", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let api = releases(&ctx);
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let mut refused = Vec::new();
        for (case, patch) in VALID {
            let manifest = merged(minimal(), &serde_json::from_str(patch)?);
            let object: DynamicObject = serde_json::from_value(manifest)?;
            if let Err(e) = api.create(&dry_run, &object).await {
                refused.push(format!("{case}: {e}"));
            }
        }
        ensure!(
            refused.is_empty(),
            "valid releases refused:\n{}",
            refused.join("\n")
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn invalid_releases_are_rejected_naming_the_field() {
    with_namespace("crd-invalid", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let api = releases(&ctx);
        // The base manifest itself must be valid, or every case would pass for the wrong reason.
        let base: DynamicObject = serde_json::from_value(minimal())?;
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        api.create(&dry_run, &base)
            .await
            .context("the minimal release must be valid")?;

        let mut wrong = Vec::new();
        for (case, patch, field) in INVALID {
            let manifest = merged(minimal(), &serde_json::from_str(patch)?);
            let object: DynamicObject = serde_json::from_value(manifest)?;
            match api.create(&dry_run, &object).await {
                Ok(_) => wrong.push(format!("{case}: accepted")),
                Err(kube::Error::Api(status))
                    if status.code == 422 && status.message.contains(field) => {}
                Err(e) => wrong.push(format!("{case}: rejected without naming {field}: {e}")),
            }
        }
        ensure!(INVALID.len() >= 15);
        ensure!(
            wrong.is_empty(),
            "{} of {} cases wrong:\n{}",
            wrong.len(),
            INVALID.len(),
            wrong.join("\n")
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
