//! The release flow on the real control plane, with the operator as a real process.
//! The API pods are kwok pods, so the health gate points at an endpoint the test controls
//! and the KPI gate at the real Prometheus scraping metrics the test sets.

mod support;

use std::time::Duration;

use anyhow::ensure;
use e2e::cluster::with_namespace;
use e2e::env::Component;
use e2e::services::Services;
use listacompra_crds::status::{Outcome, condition};
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::json;
use support::{
    Endpoint, Operator, apply, condition as cond, deployed_image, expect_events, image_of, jobs,
    kubectl_wait_ready, latency_analysis, release, stable_1_0_0, stable_1_0_0_with, wait_phase,
};

const TIMEOUT: Duration = Duration::from_secs(90);
const IMAGE: &str = "registry.example/listacompra/api";

#[tokio::test]
async fn happy_path_releases_two_versions_with_one_job_each() {
    with_namespace("op-happy", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));

        apply(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
        // What Helm/Flux-style tooling does: wait for Ready. 1.0.0's Ready=True does not count
        // (its observedGeneration is older); Ready turns True only once 1.1.0 serves.
        let waited = kubectl_wait_ready(&ctx, TIMEOUT).await;
        if waited.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        waited?;
        let lc = ctx.api::<ListaCompraRelease>().get("lc").await?;
        ensure!(
            lc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
                && lc.status.as_ref().and_then(|s| s.current_version.as_deref()) == Some("1.1.0"),
            "kubectl wait returned before 1.1.0 was released: {:#?}",
            lc.status
        );
        let status = lc.status.clone().unwrap_or_default();
        ensure!(
            status.stable_version.as_deref() == Some("1.1.0"),
            "{status:#?}"
        );
        ensure!(status.schema_version == Some(2));
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
        let migrations = jobs(&ctx, "migrate").await?;
        ensure!(
            migrations.len() == 2,
            "one migration Job per version, got {}",
            migrations.len()
        );
        ensure!(jobs(&ctx, "revert").await?.is_empty());
        ensure!(cond(&lc, condition::READY).0 == "True");
        ensure!(cond(&lc, condition::MIGRATIONS_APPLIED).0 == "True");
        ensure!(cond(&lc, condition::DEGRADED).0 == "False");
        let history: Vec<(String, Outcome)> = status
            .history
            .iter()
            .map(|h| (h.version.clone(), h.outcome))
            .collect();
        ensure!(
            history
                == [
                    ("1.1.0".to_owned(), Outcome::Succeeded),
                    ("1.0.0".to_owned(), Outcome::Succeeded)
                ],
            "{history:?}"
        );
        expect_events(
            &ctx,
            &[
                "ReleaseStarted",
                "MigrationSucceeded",
                "RolloutAvailable",
                "HealthGatePassed",
                "ReleaseSucceeded",
            ],
        )
        .await?;
        // The operator's own endpoints.
        let address = operator
            .metrics_address()
            .ok_or_else(|| anyhow::anyhow!("no metrics address logged"))?;
        let http = reqwest::Client::new();
        for probe in ["healthz", "readyz"] {
            let status = http
                .get(format!("http://{address}/{probe}"))
                .send()
                .await?
                .status();
            ensure!(status.is_success(), "/{probe} answered {status}");
        }
        let metrics = http
            .get(format!("http://{address}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        for expected in [
            "listacompra_operator_reconciles_total{result=\"ok\"}",
            "listacompra_operator_releases{phase=\"Succeeded\"} 1",
            "listacompra_operator_gate_verdicts_total{gate=\"health\",verdict=\"pass\"}",
            "listacompra_operator_reconcile_duration_seconds_count",
        ] {
            ensure!(
                metrics.contains(expected),
                "/metrics lacks {expected}:\n{metrics}"
            );
        }
        // The per-release phase series the alert rules in config/prometheus read.
        let phase = format!(
            "listacompra_operator_release_phase{{namespace=\"{}\",phase=\"Succeeded\",release=\"lc\",version=\"1.1.0\"}} 1",
            ctx.namespace
        );
        ensure!(metrics.contains(&phase), "/metrics lacks {phase}:\n{metrics}");
        ensure!(
            metrics.contains("listacompra_operator_leader "),
            "/metrics lacks the leader gauge:\n{metrics}"
        );

        // A settled release makes no writes: touch it (which triggers reconciles) and check
        // that neither its status nor its Deployment changes.
        let releases: kube::Api<listacompra_crds::ListaCompraRelease> = ctx.api();
        let touched = releases
            .patch(
                "lc",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
            )
            .await?;
        let deployment_version = ctx
            .api::<k8s_openapi::api::apps::v1::Deployment>()
            .get("lc-api")
            .await?
            .metadata
            .resource_version;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let after = releases.get("lc").await?;
        ensure!(
            after.metadata.resource_version == touched.metadata.resource_version,
            "the operator wrote to a settled release"
        );
        let deployment_after = ctx
            .api::<k8s_openapi::api::apps::v1::Deployment>()
            .get("lc-api")
            .await?
            .metadata
            .resource_version;
        ensure!(
            deployment_after == deployment_version,
            "the operator wrote to a settled Deployment"
        );

        // Every log line carries the release, its version and its phase.
        let log = operator.log();
        let reconcile_line = log
            .lines()
            .find(|l| l.contains("applied the Deployments"))
            .ok_or_else(|| anyhow::anyhow!("no apply logged:\n{log}"))?;
        for field in ["\"release\":\"lc\"", "\"version\":", "\"phase\":"] {
            ensure!(
                reconcile_line.contains(field),
                "{field} missing from {reconcile_line}"
            );
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_failed_migration_rolls_nothing_out() {
    with_namespace("op-migration-fails", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let mut manifest = release("1.1.0", 2, &endpoint.url);
        manifest["spec"]["migrations"]["podAnnotations"] =
            json!({ "listacompra.test/fail-migrate": "true" });
        apply(&ctx, &manifest).await?;
        let lc = wait_phase(&ctx, "1.1.0", Phase::RolledBack, TIMEOUT).await;
        if lc.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = lc?;
        let status = lc.status.clone().unwrap_or_default();
        let (_, reason, message) = cond(&lc, condition::DEGRADED);
        ensure!(reason == "MigrationFailed", "{reason}: {message}");
        ensure!(
            message.contains("lc-migrate-1-1-0"),
            "the message names the Job: {message}"
        );
        ensure!(status.failed_version.as_deref() == Some("1.1.0"));
        ensure!(status.stable_version.as_deref() == Some("1.0.0"));
        ensure!(
            deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"),
            "no pod changed"
        );
        // kstatus: not Ready (1.1.0 does not serve), Stalled until the spec changes; the
        // stable version still serves (Available).
        ensure!(
            cond(&lc, condition::READY).0 == "False"
                && cond(&lc, condition::STALLED).0 == "True"
                && cond(&lc, condition::RECONCILING).0 == "False"
                && cond(&lc, condition::AVAILABLE).0 == "True"
                && cond(&lc, condition::ROLLED_BACK).0 == "True",
            "conditions after the rollback: {:?}",
            lc.status.as_ref().map(|s| &s.conditions)
        );
        // The schema was put back to 1.0.0's revision by a revert Job run with 1.1.0's image.
        let reverts = jobs(&ctx, "revert").await?;
        ensure!(reverts.len() == 1, "{} revert Jobs", reverts.len());
        let command = reverts[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].clone());
        let command = command
            .map(|c| (c.image.unwrap_or_default(), c.command.unwrap_or_default()))
            .unwrap_or_default();
        ensure!(
            command.0 == format!("{IMAGE}:1.1.0")
                && command.1.ends_with(&["--to".to_owned(), "1".to_owned()]),
            "{command:?}"
        );
        ensure!(status.schema_version == Some(1));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_health_gate_rolls_back_and_is_not_retried() {
    with_namespace("op-health-fails", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        endpoint.set_health(503);
        apply(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
        let lc = wait_phase(&ctx, "1.1.0", Phase::RolledBack, TIMEOUT).await;
        if lc.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = lc?;
        let (_, reason, message) = cond(&lc, condition::DEGRADED);
        ensure!(
            reason == "HealthCheckFailed" && message.contains("503"),
            "{reason}: {message}"
        );
        ensure!(
            deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"),
            "workload rolled back"
        );
        ensure!(
            image_of(&ctx, "lc-worker").await? == format!("{IMAGE}:1.0.0"),
            "the worker rolled back with the API"
        );
        ensure!(
            lc.status.as_ref().and_then(|s| s.schema_version) == Some(1),
            "schema reverted"
        );
        expect_events(&ctx, &["RolledBack", "HealthCheckFailed"]).await?;

        // The failed version stays failed: no new migration Job appears while the spec stands.
        endpoint.set_health(200);
        let before = jobs(&ctx, "migrate").await?.len();
        tokio::time::sleep(Duration::from_secs(5)).await;
        ensure!(
            jobs(&ctx, "migrate").await?.len() == before,
            "1.1.0 was retried without a spec change"
        );

        // A new retry token retries it, and now it passes.
        let mut retry = release("1.1.0", 2, &endpoint.url);
        retry["spec"]["retryToken"] = json!("after-fix");
        apply(&ctx, &retry).await?;
        let lc = wait_phase(&ctx, "1.1.0", Phase::Succeeded, TIMEOUT).await?;
        ensure!(lc.status.and_then(|s| s.stable_version).as_deref() == Some("1.1.0"));
        ensure!(jobs(&ctx, "migrate").await?.len() == before + 1);
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_kpi_breach_rolls_back_naming_the_kpi() {
    with_namespace("op-kpi-breach", |ctx| async move {
        let services = Services::start(&[Component::Prometheus]).await?;
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        endpoint
            .set_metrics("# TYPE lc_e2e_p95_latency_ms gauge\nlc_e2e_p95_latency_ms{version=\"1.1.0\"} 912\n")
            .await;
        let target = support::scrape(&services, &ctx, &endpoint)?;
        let mut manifest = release("1.1.0", 2, &endpoint.url);
        manifest["spec"]["analysis"] = latency_analysis(services.prometheus_url()?);
        apply(&ctx, &manifest).await?;
        let lc = wait_phase(&ctx, "1.1.0", Phase::RolledBack, TIMEOUT).await;
        std::fs::remove_file(&target)?;
        if lc.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = lc?;
        let (_, reason, message) = cond(&lc, condition::DEGRADED);
        ensure!(reason == "KpiBreached", "{reason}: {message}");
        ensure!(message.contains("p95-latency-ms") && message.contains("912 > max 350"), "{message}");
        let report = lc.status.and_then(|s| s.last_analysis).ok_or_else(|| anyhow::anyhow!("no analysis"))?;
        ensure!(report.kpis.iter().any(|k| k.value == Some(912.0)), "{report:?}");
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// The runbook's "dashboard without active alerts", as the pre-flight check: while a
/// matching alert fires in the real Prometheus (a rule over a metric the test sets), 1.1.0
/// launches nothing and says which alert; once it resolves, 1.1.0 is released.
#[tokio::test]
async fn a_firing_alert_holds_the_release_until_it_resolves() {
    with_namespace("op-preflight", |ctx| async move {
        let services = Services::start(&[Component::Prometheus]).await?;
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let ns = ctx.namespace.clone();
        let rules = format!(
            "groups:\n  - name: e2e-preflight-{ns}\n    rules:\n      - alert: LcE2eStorageFull\n        expr: max(lc_e2e_alarm{{namespace=\"{ns}\"}}) > 0\n        for: 0s\n        labels:\n          severity: critical\n          e2e_namespace: {ns}\n"
        );
        let _rules = e2e::alerting::LoadedRules::install(&services, &format!("preflight-{ns}"), &rules).await?;
        endpoint.set_metrics("# TYPE lc_e2e_alarm gauge\nlc_e2e_alarm 1\n").await;
        let target = support::scrape(&services, &ctx, &endpoint)?;
        let prometheus = services.prometheus_url()?.to_owned();
        let firing = |expected: bool| {
            let prometheus = prometheus.clone();
            let ns = ns.clone();
            async move {
                let body: serde_json::Value = reqwest::Client::new()
                    .get(format!("{prometheus}/api/v1/query"))
                    .query(&[("query", format!("ALERTS{{alertstate=\"firing\",e2e_namespace=\"{ns}\"}}"))])
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let n = body["data"]["result"].as_array().map_or(0, Vec::len);
                ((n > 0) == expected).then_some(())
            }
        };
        e2e::cluster::eventually("the alert to fire in Prometheus", TIMEOUT, || firing(true))
            .await
            .map_err(anyhow::Error::msg)?;
        let migrations_before = jobs(&ctx, "migrate").await?.len();

        let mut manifest = release("1.1.0", 2, &endpoint.url);
        manifest["spec"]["preflight"] = json!({ "firingAlerts": {
            "prometheus": { "address": prometheus, "timeoutSeconds": 2 },
            "matchLabels": { "severity": "critical", "e2e_namespace": ns }
        }});
        apply(&ctx, &manifest).await?;
        let api: kube::Api<ListaCompraRelease> = ctx.api();
        let held = e2e::cluster::eventually("the release to wait for the alert", TIMEOUT, || {
            let api = api.clone();
            async move {
                let lc = api.get("lc").await.ok()?;
                (cond(&lc, condition::RECONCILING).1 == "AlertsFiring").then_some(lc)
            }
        })
        .await;
        if held.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = held.map_err(anyhow::Error::msg)?;
        let (_, _, message) = cond(&lc, condition::RECONCILING);
        ensure!(message.contains("LcE2eStorageFull"), "{message}");
        ensure!(lc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Pending));
        expect_events(&ctx, &["AlertsFiring"]).await?;
        // Held: it looks again (every 10 s) and finds the alert again; nothing launched.
        let address = operator
            .metrics_address()
            .ok_or_else(|| anyhow::anyhow!("no metrics address logged"))?;
        let looks = || {
            let address = address.clone();
            async move {
                let text = reqwest::get(format!("http://{address}/metrics")).await.ok()?.text().await.ok()?;
                Some(sample_sum(
                    &text,
                    "listacompra_operator_gate_verdicts_total",
                    "gate=\"preflight\",verdict=\"fail\"",
                ))
            }
        };
        let seen = looks().await.unwrap_or_default();
        e2e::cluster::eventually("another look finding the alert", TIMEOUT, || async {
            looks().await.filter(|n| *n > seen).map(|_| ())
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let lc = api.get("lc").await?;
        ensure!(
            cond(&lc, condition::RECONCILING).1 == "AlertsFiring",
            "{:?}",
            cond(&lc, condition::RECONCILING)
        );
        ensure!(jobs(&ctx, "migrate").await?.len() == migrations_before, "no migration while the alert fires");
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"), "1.0.0 serves meanwhile");

        endpoint.set_metrics("# TYPE lc_e2e_alarm gauge\nlc_e2e_alarm 0\n").await;
        e2e::cluster::eventually("the alert to resolve in Prometheus", TIMEOUT, || firing(false))
            .await
            .map_err(anyhow::Error::msg)?;
        let released = wait_phase(&ctx, "1.1.0", Phase::Succeeded, TIMEOUT).await;
        std::fs::remove_file(&target)?;
        if released.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        released?;
        ensure!(jobs(&ctx, "migrate").await?.len() == migrations_before + 1);
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// Rotating a Secret the pods consume (the JWT key): the operator rolls 1.0.0's pods with it
/// (a new pod template, no migration Job, the same attempt) and verifies them with the
/// health gate; a rotation whose pods fail the gate is Degraded and Stalled, never rolled
/// back, and the next change of the Secret rotates again.
#[tokio::test]
async fn a_rotated_secret_rolls_the_pods_verified_by_the_health_gate() {
    with_namespace("op-rotation", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0_with(
            &ctx,
            &[("LEADER_ELECTION", "false"), ("WATCH_SECRETS", "true")],
        )
        .await?;
        let api: kube::Api<ListaCompraRelease> = ctx.api();
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = ctx.api();
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = ctx.api();
        let stamp = |d: &k8s_openapi::api::apps::v1::Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("listacompra.app/secrets-version").cloned())
        };
        let before = deployments.get("lc-api").await?;
        let first_stamp = stamp(&before).ok_or_else(|| anyhow::anyhow!("no secrets stamp"))?;
        let lc = api.get("lc").await?;
        let attempt = lc.status.as_ref().and_then(|s| s.attempt);
        let migrations = jobs(&ctx, "migrate").await?.len();
        let rotate = |value: &'static str| {
            let secrets = secrets.clone();
            async move {
                secrets
                    .patch(
                        "jwt",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(json!({ "stringData": { "secret": value } })),
                    )
                    .await
            }
        };
        let rotation_ended = |api: kube::Api<ListaCompraRelease>| async move {
            e2e::cluster::eventually("the rotation to end", TIMEOUT, || {
                let api = api.clone();
                async move {
                    let lc = api.get("lc").await.ok()?;
                    let rotation = lc.status.as_ref()?.rotation.clone()?;
                    rotation.completion_time.is_some().then_some(lc)
                }
            })
            .await
            .map_err(anyhow::Error::msg)
        };

        rotate("a new key of 32 bytes or more, rotated").await?;
        let lc = rotation_ended(api.clone()).await;
        if lc.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = lc?;
        let status = lc.status.clone().unwrap_or_default();
        let rotation = status.rotation.clone().unwrap_or_else(|| unreachable!());
        ensure!(rotation.failure.is_none(), "{rotation:?}");
        ensure!(
            rotation.health.as_ref().is_some_and(|h| h.passed),
            "{rotation:?}"
        );
        ensure!(status.phase == Some(Phase::Succeeded) && status.attempt == attempt);
        ensure!(cond(&lc, condition::READY).0 == "True");
        let rolled = deployments.get("lc-api").await?;
        let second_stamp = stamp(&rolled);
        ensure!(
            second_stamp.as_deref().is_some_and(|s| s != first_stamp),
            "the pods were rolled: {second_stamp:?}"
        );
        ensure!(status.secrets_version == second_stamp);
        ensure!(
            jobs(&ctx, "migrate").await?.len() == migrations,
            "no migration"
        );
        expect_events(&ctx, &["SecretsRotated", "SecretRotationVerified"]).await?;

        // The next rotation meets unhealthy pods: Degraded and Stalled, nothing rolled back.
        endpoint.set_health(503);
        rotate("another key of 32 bytes or more, rotated").await?;
        let failed = e2e::cluster::eventually("the rotation to fail", TIMEOUT, || {
            let api = api.clone();
            let second_stamp = second_stamp.clone();
            async move {
                let lc = api.get("lc").await.ok()?;
                let rotation = lc.status.as_ref()?.rotation.clone()?;
                (rotation.failure.is_some()
                    && rotation.secrets_version != *second_stamp.as_ref()?)
                .then_some(lc)
            }
        })
        .await;
        if failed.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = failed.map_err(anyhow::Error::msg)?;
        ensure!(
            cond(&lc, condition::DEGRADED).1 == "SecretRotationFailed",
            "{:?}",
            cond(&lc, condition::DEGRADED)
        );
        ensure!(cond(&lc, condition::STALLED).0 == "True");
        ensure!(cond(&lc, condition::READY).0 == "False");
        ensure!(lc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded));
        ensure!(jobs(&ctx, "revert").await?.is_empty(), "nothing reverted");
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));

        // Fixed: the Secret changes again and the pods pass.
        endpoint.set_health(200);
        rotate("a third key of 32 bytes or more, rotated").await?;
        let healed = e2e::cluster::eventually("the release to be Ready again", TIMEOUT, || {
            let api = api.clone();
            async move {
                let lc = api.get("lc").await.ok()?;
                (cond(&lc, condition::READY).0 == "True"
                    && cond(&lc, condition::STALLED).0 == "False")
                    .then_some(lc)
            }
        })
        .await;
        if healed.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = healed.map_err(anyhow::Error::msg)?;
        ensure!(cond(&lc, condition::DEGRADED).0 == "False");
        ensure!(
            jobs(&ctx, "migrate").await?.len() == migrations,
            "still no migration"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_prometheus_is_inconclusive_never_a_breach() {
    with_namespace("op-prom-down", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let mut manifest = release("1.1.0", 2, &endpoint.url);
        let mut analysis = latency_analysis("http://127.0.0.1:9");
        analysis["inconclusiveLimit"] = json!(1);
        manifest["spec"]["analysis"] = analysis;
        apply(&ctx, &manifest).await?;
        let api: kube::Api<listacompra_crds::ListaCompraRelease> = ctx.api();
        let held =
            e2e::cluster::eventually("the release to be held as inconclusive", TIMEOUT, || {
                let api = api.clone();
                async move {
                    let lc = api.get("lc").await.ok()?;
                    (cond(&lc, condition::PROGRESSING).1 == "AnalysisInconclusive").then_some(lc)
                }
            })
            .await;
        if held.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = held.map_err(anyhow::Error::msg)?;
        let status = lc.status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(Phase::Verifying),
            "held in Verifying: {:?}",
            status.phase
        );
        ensure!(
            cond(&lc, condition::DEGRADED).0 == "False",
            "an unreachable Prometheus is no breach"
        );
        ensure!(status.failed_version.is_none());
        let message = status
            .last_analysis
            .and_then(|a| a.kpis.first().and_then(|k| k.message.clone()))
            .unwrap_or_default();
        ensure!(message.contains("unreachable"), "{message}");
        ensure!(
            deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"),
            "nothing rolled back"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// What a person with kubectl does to the children of a settled release: scale the
/// Deployment, swap its image, delete the Service, delete the Deployment. The operator puts
/// each back (fields it owns, by server-side apply) without a new migration or release, and
/// the release keeps saying what serves.
#[tokio::test]
async fn drift_of_the_children_is_repaired_without_a_new_release() {
    with_namespace("op-drift", |ctx| async move {
        let (operator, _endpoint) = stable_1_0_0(&ctx).await?;
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = ctx.api();
        let services: kube::Api<k8s_openapi::api::core::v1::Service> = ctx.api();
        let migrations = jobs(&ctx, "migrate").await?.len();
        let by_hand = kube::api::PatchParams::apply("kubectl-edit").force();
        let image = format!("{IMAGE}:1.0.0");

        let repaired = |what: &'static str| {
            let deployments = deployments.clone();
            let image = image.clone();
            async move {
                e2e::cluster::eventually(what, TIMEOUT, || {
                    let deployments = deployments.clone();
                    let image = image.clone();
                    async move {
                        let d = deployments.get_opt("lc-api").await.ok()??;
                        let spec = d.spec?;
                        let live = spec.template.spec?.containers.first()?.image.clone()?;
                        (spec.replicas == Some(2) && live == image).then_some(())
                    }
                })
                .await
                .map_err(anyhow::Error::msg)
            }
        };

        // kubectl scale deploy/lc-api --replicas=5
        deployments
            .patch(
                "lc-api",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": { "replicas": 5 } })),
            )
            .await?;
        let scaled = repaired("replicas back to 2").await;
        if scaled.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        scaled?;

        // kubectl set image deploy/lc-api '*=evil.example/x:latest' (another field manager)
        deployments
            .patch(
                "lc-api",
                &by_hand,
                &kube::api::Patch::Apply(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "spec": { "template": { "spec": { "containers": [
                        { "name": "api", "image": "evil.example/x:latest" }
                    ] } } }
                })),
            )
            .await?;
        repaired("the image back to 1.0.0's").await?;

        // kubectl delete svc lc-api
        services
            .delete("lc-api", &kube::api::DeleteParams::default())
            .await?;
        e2e::cluster::eventually("the Service re-created", TIMEOUT, || {
            let services = services.clone();
            async move {
                services
                    .get_opt("lc-api")
                    .await
                    .ok()?
                    .filter(|s| s.metadata.deletion_timestamp.is_none())
                    .map(|_| ())
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;

        // kubectl delete deploy/lc-api
        let old_uid = deployments.get("lc-api").await?.metadata.uid;
        deployments
            .delete("lc-api", &kube::api::DeleteParams::background())
            .await?;
        e2e::cluster::eventually("the Deployment re-created", TIMEOUT, || {
            let deployments = deployments.clone();
            let old_uid = old_uid.clone();
            async move {
                let d = deployments.get_opt("lc-api").await.ok()??;
                (d.metadata.uid != old_uid && d.metadata.deletion_timestamp.is_none()).then_some(())
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;
        repaired("the re-created Deployment runs 1.0.0").await?;

        let lc = ctx
            .api::<listacompra_crds::ListaCompraRelease>()
            .get("lc")
            .await?;
        let status = lc.status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(Phase::Succeeded)
                && status.stable_version.as_deref() == Some("1.0.0")
                && cond(&lc, condition::READY).0 == "True",
            "drift repair changed the release: {status:#?}"
        );
        ensure!(
            jobs(&ctx, "migrate").await?.len() == migrations,
            "drift repair started a migration"
        );
        Ok(())
    })
    .await;
}

/// The runbook's "scale the replica" when AI jobs queue up: `spec.worker.replicas` scales
/// the worker Deployment of the serving version, with no new release (no Job, no gate); a
/// hand-scaled worker is put back; a new version moves the worker with the API.
#[tokio::test]
async fn scaling_the_worker_field_scales_the_worker_deployment() {
    with_namespace("op-worker", |ctx| async move {
        let (operator, endpoint) = stable_1_0_0(&ctx).await?;
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = ctx.api();
        let migrations = jobs(&ctx, "migrate").await?.len();
        let rolled_out = |replicas: i32, image: String| {
            let deployments = deployments.clone();
            async move {
                e2e::cluster::eventually(
                    &format!("lc-worker at {replicas} available replicas of {image}"),
                    TIMEOUT,
                    || {
                        let deployments = deployments.clone();
                        let image = image.clone();
                        async move {
                            let d = deployments.get_opt("lc-worker").await.ok()??;
                            let spec = d.spec?;
                            let live = spec.template.spec?.containers.first()?.image.clone()?;
                            let status = d.status.unwrap_or_default();
                            (spec.replicas == Some(replicas)
                                && live == image
                                && status.available_replicas.unwrap_or(0) == replicas
                                && status.replicas.unwrap_or(0) == replicas)
                                .then_some(())
                        }
                    },
                )
                .await
                .map_err(anyhow::Error::msg)
            }
        };
        let v1 = format!("{IMAGE}:1.0.0");
        rolled_out(1, v1.clone()).await?;

        let mut scaled = release("1.0.0", 1, &endpoint.url);
        scaled["spec"]["worker"] = json!({ "replicas": 3 });
        apply(&ctx, &scaled).await?;
        let worked = rolled_out(3, v1.clone()).await;
        if worked.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        worked?;

        // kubectl scale deploy/lc-worker --replicas=7: put back to the spec's 3.
        deployments
            .patch(
                "lc-worker",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": { "replicas": 7 } })),
            )
            .await?;
        rolled_out(3, v1.clone()).await?;

        // Scaled to 0: no worker pod, and still the same serving release.
        scaled["spec"]["worker"] = json!({ "replicas": 0 });
        apply(&ctx, &scaled).await?;
        rolled_out(0, v1.clone()).await?;
        let lc = ctx.api::<ListaCompraRelease>().get("lc").await?;
        let status = lc.status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(Phase::Succeeded)
                && status.stable_version.as_deref() == Some("1.0.0")
                && cond(&lc, condition::READY).0 == "True",
            "scaling the worker changed the release: {status:#?}"
        );
        ensure!(
            jobs(&ctx, "migrate").await?.len() == migrations,
            "scaling the worker started a migration"
        );
        ensure!(
            deployed_image(&ctx).await? == v1,
            "the API pods stayed as they were"
        );

        // A new version moves the worker with the API, at the spec's replicas.
        let mut next = release("1.1.0", 2, &endpoint.url);
        next["spec"]["worker"] = json!({ "replicas": 2 });
        apply(&ctx, &next).await?;
        let lc = wait_phase(&ctx, "1.1.0", Phase::Succeeded, TIMEOUT).await?;
        ensure!(lc.status.and_then(|s| s.stable_version).as_deref() == Some("1.1.0"));
        rolled_out(2, format!("{IMAGE}:1.1.0")).await?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// A release of no worker pods makes no worker Deployment (the runbook's API-only stack; one
/// Deployment, one ReplicaSet fewer per release for the controller-manager), is rolled out
/// without one, and scaling the worker up later creates it with the serving workload. Not
/// wanting a worker does not blind the operator to one: someone else's Deployment of the
/// worker's name still stalls the release, and its own worker, relabelled out of the watch
/// and scaled by hand, is put back.
#[tokio::test]
async fn a_release_without_workers_makes_no_worker_deployment_until_scaled_up() {
    with_namespace("op-no-worker", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start_with(&ctx, &[("LEADER_ELECTION", "false")])?;
        let endpoint = Endpoint::start().await?;
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = ctx.api();
        let fail = |e: String| anyhow::anyhow!("{e}; operator log:\n{}", operator.log());

        // Someone else's worker of that name, without our labels: never taken over.
        let theirs = serde_json::from_value(json!({
            "metadata": { "name": "lc-worker", "labels": { "team": "someone-else" } },
            "spec": {
                "replicas": 0,
                "selector": { "matchLabels": { "app": "theirs" } },
                "template": {
                    "metadata": { "labels": { "app": "theirs" } },
                    "spec": { "containers": [{ "name": "w", "image": "theirs:1" }] }
                }
            }
        }))?;
        deployments
            .create(&kube::api::PostParams::default(), &theirs)
            .await?;
        let mut solo = release("1.0.0", 1, &endpoint.url);
        solo["spec"]["worker"] = json!({ "replicas": 0 });
        apply(&ctx, &solo).await?;
        let releases: kube::Api<ListaCompraRelease> = ctx.api();
        let message = e2e::cluster::eventually(
            "the release to say it will not take over the worker Deployment",
            TIMEOUT,
            || {
                let releases = releases.clone();
                async move {
                    let lc = releases.get("lc").await.ok()?;
                    let (status, reason, message) = cond(&lc, condition::STALLED);
                    (status == "True" && reason == "ObjectNotOwned").then_some(message)
                }
            },
        )
        .await
        .map_err(fail)?;
        ensure!(
            message.contains("lc-worker"),
            "the condition does not name the worker Deployment: {message}"
        );
        deployments
            .delete("lc-worker", &kube::api::DeleteParams::default())
            .await?;

        let released = wait_phase(&ctx, "1.0.0", Phase::Succeeded, TIMEOUT).await;
        if released.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        released?;
        ensure!(
            deployments.get_opt("lc-api").await?.is_some(),
            "the API Deployment is there"
        );
        ensure!(
            deployments.get_opt("lc-worker").await?.is_none(),
            "a release of no worker pods made a worker Deployment"
        );
        let migrations = jobs(&ctx, "migrate").await?.len();

        solo["spec"]["worker"] = json!({ "replicas": 1 });
        apply(&ctx, &solo).await?;
        let image = format!("{IMAGE}:1.0.0");
        let scaled = e2e::cluster::eventually(
            "lc-worker created with 1 available replica of 1.0.0",
            TIMEOUT,
            || {
                let deployments = deployments.clone();
                let image = image.clone();
                async move {
                    let d = deployments.get_opt("lc-worker").await.ok()??;
                    let spec = d.spec?;
                    let live = spec.template.spec?.containers.first()?.image.clone()?;
                    let status = d.status.unwrap_or_default();
                    (live == image && status.available_replicas.unwrap_or(0) == 1).then_some(())
                }
            },
        )
        .await;
        if scaled.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        scaled.map_err(anyhow::Error::msg)?;
        let lc = ctx.api::<ListaCompraRelease>().get("lc").await?;
        let status = lc.status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(Phase::Succeeded)
                && status.stable_version.as_deref() == Some("1.0.0")
                && cond(&lc, condition::READY).0 == "True",
            "scaling the worker up changed the release: {status:#?}"
        );
        ensure!(
            jobs(&ctx, "migrate").await?.len() == migrations,
            "scaling the worker up started a migration"
        );

        // Scaled down, the worker keeps its Deployment at 0. Relabelled out of the operator's
        // watch and scaled by hand at once, it is still found and put back.
        solo["spec"]["worker"] = json!({ "replicas": 0 });
        apply(&ctx, &solo).await?;
        let at = |replicas: i32, managed_by: &'static str| {
            let deployments = deployments.clone();
            move || {
                let deployments = deployments.clone();
                async move {
                    let d = deployments.get_opt("lc-worker").await.ok()??;
                    let label = d
                        .metadata
                        .labels
                        .as_ref()?
                        .get("app.kubernetes.io/managed-by")?;
                    (d.spec?.replicas == Some(replicas) && label == managed_by).then_some(())
                }
            }
        };
        e2e::cluster::eventually(
            "lc-worker at 0 replicas",
            TIMEOUT,
            at(0, "listacompra-operator"),
        )
        .await
        .map_err(fail)?;
        deployments
            .patch(
                "lc-worker",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({
                    "metadata": { "labels": { "app.kubernetes.io/managed-by": "helm" } },
                    "spec": { "replicas": 3 }
                })),
            )
            .await?;
        e2e::cluster::eventually(
            "the relabelled, scaled lc-worker put back at 0 replicas and our label",
            TIMEOUT,
            at(0, "listacompra-operator"),
        )
        .await
        .map_err(fail)?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// Whoever may write a release cannot make the operator send a Secret to a server of their
/// choosing: the health gate points at a listener that is neither the release's Service nor
/// in the operator's allowed hosts; the token never arrives, and the release says why.
#[tokio::test]
async fn gate_credentials_never_go_to_a_host_the_release_alone_names() {
    with_namespace("op-deputy", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        const TOKEN: &str = "s3cret-health-token-7f2c";
        ctx.api::<k8s_openapi::api::core::v1::Secret>()
            .create(
                &kube::api::PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": { "name": "health-token" },
                    "stringData": { "token": TOKEN }
                }))?,
            )
            .await?;
        // The "attacker's" listener records every byte it receives.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<u8>::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        sink.lock().await.extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        let operator = Operator::start(&ctx)?;
        let mut manifest = release("1.0.0", 1, &url);
        manifest["spec"]["health"]["tokenSecretRef"] =
            json!({ "name": "health-token", "key": "token" });
        apply(&ctx, &manifest).await?;
        let lc = wait_phase(&ctx, "1.0.0", Phase::Failed, TIMEOUT).await;
        if lc.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = lc?;
        let (_, _, message) = cond(&lc, condition::DEGRADED);
        ensure!(
            message.contains("refused to send credentials")
                && message.contains("GATE_ALLOWED_HOSTS"),
            "the release does not say why: {message}"
        );
        let bytes = received.lock().await.clone();
        ensure!(
            !String::from_utf8_lossy(&bytes).contains(TOKEN),
            "the token reached the listener"
        );
        let status = serde_json::to_string(&lc.status)?;
        let events: Vec<String> = ctx
            .api::<k8s_openapi::api::core::v1::Event>()
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.message)
            .collect();
        ensure!(!events.is_empty(), "no Events to look at");
        for (place, text) in [
            ("status", status),
            ("the operator log", operator.log()),
            ("Events", events.join("\n")),
        ] {
            ensure!(!text.contains(TOKEN), "the token appears in {place}");
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_service_it_did_not_create_is_never_taken_over() {
    with_namespace("op-takeover", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let services: kube::Api<k8s_openapi::api::core::v1::Service> = ctx.api();
        // Someone else's Service already has the name the release's Service would take.
        let theirs: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": { "name": "lc-api", "labels": { "team": "someone-else" } },
            "spec": { "selector": { "app": "theirs" }, "ports": [{ "port": 8080 }] }
        }))?;
        services
            .create(&kube::api::PostParams::default(), &theirs)
            .await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        let api: kube::Api<ListaCompraRelease> = ctx.api();
        let refused = e2e::cluster::eventually(
            "the release to say it will not take over the Service",
            TIMEOUT,
            || {
                let api = api.clone();
                async move {
                    let lc = api.get("lc").await.ok()?;
                    let (status, reason, message) = cond(&lc, condition::STALLED);
                    (status == "True" && reason == "ObjectNotOwned").then_some(message)
                }
            },
        )
        .await;
        let message = match refused {
            Ok(message) => message,
            Err(e) => anyhow::bail!("{e}; operator log:\n{}", operator.log()),
        };
        ensure!(
            message.contains("Service lc-api"),
            "the condition does not name the Service: {message}"
        );
        expect_events(&ctx, &["ObjectNotOwned"]).await?;
        let live = services.get("lc-api").await?;
        ensure!(
            live.spec.as_ref().and_then(|s| s.selector.clone())
                == Some([("app".to_owned(), "theirs".to_owned())].into()),
            "their Service was changed: {live:?}"
        );
        // Once it is gone, the release goes on by itself.
        services
            .delete("lc-api", &kube::api::DeleteParams::default())
            .await?;
        let released = wait_phase(&ctx, "1.0.0", Phase::Succeeded, TIMEOUT).await;
        if released.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let lc = released?;
        ensure!(
            cond(&lc, condition::STALLED).0 == "False",
            "still Stalled: {:?}",
            cond(&lc, condition::STALLED)
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// The sum of the samples of `name` whose labels contain `label` (0 when none).
fn sample_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_settled_release_is_reconciled_from_the_watch_caches() {
    with_namespace("op-caches", |ctx| async move {
        let (operator, _endpoint) = stable_1_0_0(&ctx).await?;
        let address = operator
            .metrics_address()
            .ok_or_else(|| anyhow::anyhow!("no metrics address logged"))?;
        let http = reqwest::Client::new();
        let scrape = || async {
            let text = http
                .get(format!("http://{address}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            anyhow::Ok(text)
        };
        let reads = |m: &str| {
            ["job", "deployment", "service", "controllerrevision"]
                .iter()
                .map(|k| {
                    sample_sum(
                        m,
                        "listacompra_operator_api_reads_total",
                        &format!("kind=\"{k}\""),
                    )
                })
                .sum::<f64>()
        };
        let reconciles =
            |m: &str| sample_sum(m, "listacompra_operator_reconciles_total", "result=\"ok\"");
        let before = scrape().await?;
        // Each annotation change is a watch event of the release: one more reconcile.
        let api: kube::Api<ListaCompraRelease> = ctx.api();
        let mut after = before.clone();
        for i in 0..5 {
            let done = reconciles(&after);
            api.patch(
                "lc",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    json!({ "metadata": { "annotations": { "touched": i.to_string() } } }),
                ),
            )
            .await?;
            after = e2e::cluster::eventually("one more reconcile", TIMEOUT, || async {
                let m = scrape().await.ok()?;
                (reconciles(&m) > done).then_some(m)
            })
            .await
            .map_err(anyhow::Error::msg)?;
        }
        ensure!(
            reads(&after) == reads(&before),
            "settled reconciles read children from the API server ({} → {} reads):\n{after}",
            reads(&before),
            reads(&after)
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
