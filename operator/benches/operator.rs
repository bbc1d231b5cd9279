//! `make bench-operator`: the operator measured on the real local cluster. Prints a table.
//!
//! - apply → migration Job created, apply → Deployment created, apply → rollout complete
//!   (p50/p99 over 20 releases);
//! - a failing KPI measurement → the Deployment reverted (3 rollbacks, real Prometheus);
//! - RSS and CPU while idle, API writes per minute in a steady state;
//! - drift repair: a Deployment scaled by hand → replicas back (p50/p99), and the API reads
//!   and writes each reconcile costs meanwhile (reads come from the watch caches);
//! - RSS with 100 and with 1,000 paused releases present;
//! - at scale (`LC_BENCH_RELEASES`, default 1,000 releases that each own a Deployment with
//!   one pod, an idle worker Deployment and a Service): time until all have settled, RSS,
//!   CPU, API requests per reconcile, idle CPU and writes, and drift repair among them.
//!
//! Numbers, not assertions: the machines are shared and noisy.

mod measure;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use e2e::cluster::{TestContext, with_namespace};
use e2e::env::Component;
use e2e::services::Services;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, PostParams};
use listacompra_crds::{ListaCompraRelease, Phase};
use measure::{Room, cpu_ticks, metric, rolled_out, rss_mib, tail};
use serde_json::json;
use support::{Endpoint, Operator, release, wait_phase};

#[tokio::main]
async fn main() {
    with_namespace("bench-operator", |ctx| async move { run(ctx).await }).await;
}

fn named(version: &str, schema: i64, url: &str, name: &str) -> serde_json::Value {
    let mut r = release(version, schema, url);
    r["metadata"]["name"] = json!(name);
    r
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// "p50 ms / p`upper` ms" of `samples`, as the tables print them.
fn median_and(samples: &mut [Duration], upper: f64) -> String {
    format!(
        "{:.0} ms / {:.0} ms",
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, upper).as_secs_f64() * 1e3
    )
}

const WRITES: &str = "listacompra_operator_api_writes_total";
const READS: &str = "listacompra_operator_api_reads_total";
const RECONCILES: &str = "listacompra_operator_reconciles_total";

async fn run(ctx: TestContext) -> Result<()> {
    let services = Services::start(&[Component::Prometheus]).await?;
    e2e::crd::install_crds(&ctx.client).await?;
    let operator = Operator::start(&ctx)?;
    let pid = operator.pid().context("operator pid")?;
    let endpoint = Endpoint::start().await?;
    let releases: Api<ListaCompraRelease> = ctx.api();
    let jobs: Api<Job> = ctx.api();
    let deployments: Api<Deployment> = ctx.api();
    let mut rows: Vec<(String, String)> = Vec::new();

    // The Secrets the releases name exist first, as a platform team creates them.
    for (name, key) in support::RELEASE_SECRETS {
        support::create_secret(&ctx, name, key).await?;
    }

    let http = reqwest::Client::new();
    let address = operator.metrics_address().context("metrics address")?;
    // LC_BENCH_SCALE_ONLY=1: the scale section alone (it takes the longest).
    let scale_only = std::env::var("LC_BENCH_SCALE_ONLY").is_ok_and(|v| v == "1");
    if !scale_only {
        // 1. apply → Job, apply → Deployment.
        let (mut to_job, mut to_deployment, mut to_rollout) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..20 {
            let name = format!("r{i:02}");
            let manifest: ListaCompraRelease =
                serde_json::from_value(named("1.0.0", 1, &endpoint.url, &name))?;
            let start = Instant::now();
            releases.create(&PostParams::default(), &manifest).await?;
            let (mut job_at, mut deploy_at, mut rolled_at) = (None, None, None);
            while job_at.is_none() || deploy_at.is_none() || rolled_at.is_none() {
                if start.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "release {name} made no Job or Deployment within 60s:\n{}",
                        operator.log()
                    );
                }
                let labels = format!("listacompra.app/release={name}");
                if job_at.is_none()
                    && !jobs
                        .list(&ListParams::default().labels(&labels))
                        .await?
                        .items
                        .is_empty()
                {
                    job_at = Some(start.elapsed());
                }
                if rolled_at.is_none()
                    && let Some(d) = deployments.get_opt(&format!("{name}-api")).await?
                {
                    deploy_at.get_or_insert(start.elapsed());
                    if rolled_out(&d) {
                        rolled_at = Some(start.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            to_job.extend(job_at);
            to_deployment.extend(deploy_at);
            to_rollout.extend(rolled_at);
        }
        rows.push((
            "apply → migration Job created, p50 / p99 (20 releases)".into(),
            median_and(&mut to_job, 0.99),
        ));
        rows.push((
            "apply → Deployment created (after the Job), p50 / p99".into(),
            median_and(&mut to_deployment, 0.99),
        ));

        rows.push((
            "apply → rollout complete (2 pods updated and ready), p50 / p99".into(),
            median_and(&mut to_rollout, 0.99),
        ));

        // 2. A failing KPI measurement → Deployment reverted, timed from the operator's log line
        //    of the failing measurement (written when the queries return, before it decides) to
        //    the moment the Deployment is seen back on the stable image.
        let target = support::scrape(&services, &ctx, &endpoint)?;
        let mut metrics = String::from("# TYPE lc_bench_latency_ms gauge\n");
        for v in ["1.1.0", "1.2.0", "1.3.0"] {
            metrics.push_str(&format!("lc_bench_latency_ms{{version=\"{v}\"}} 900\n"));
        }
        endpoint.set_metrics(&metrics).await;
        support::apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        wait_phase(&ctx, "1.0.0", Phase::Succeeded, Duration::from_secs(90)).await?;
        let mut to_revert = Vec::new();
        for (i, version) in ["1.1.0", "1.2.0", "1.3.0"].into_iter().enumerate() {
            let mut manifest = release(version, 2, &endpoint.url);
            manifest["spec"]["analysis"] = json!({
                "prometheus": { "address": services.prometheus_url()?, "timeoutSeconds": 2 },
                "initialDelaySeconds": 0, "intervalSeconds": 1, "measurements": 30, "inconclusiveLimit": 25,
                "kpis": [{ "name": "p95-latency-ms", "max": 350, "onNoData": "Inconclusive",
                           "query": "max(lc_bench_latency_ms{namespace=\"{{namespace}}\",version=\"{{version}}\"})" }]
            });
            support::apply(&ctx, &manifest).await?;
            let reverted_at = loop {
                let image = support::deployed_image(&ctx).await.unwrap_or_default();
                let log = operator.log();
                let breaches = log
                    .lines()
                    .filter(|l| {
                        l.contains("\"reason\":\"KpiBreached\"") && l.contains("rolling back")
                    })
                    .count();
                if breaches > i && image.ends_with(":1.0.0") {
                    break SystemTime::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let log = operator.log();
            let line = log
                .lines()
                .filter(|l| l.contains("KPI measurement taken") && l.contains("\"failed\":true"))
                .nth(i)
                .context("failing measurement log line")?;
            let value: serde_json::Value = serde_json::from_str(line)?;
            let at: k8s_openapi::jiff::Timestamp = value["ts"].as_str().context("ts")?.parse()?;
            let breach = SystemTime::UNIX_EPOCH
                + Duration::from_nanos(u64::try_from(at.as_nanosecond()).unwrap_or(0));
            to_revert.push(reverted_at.duration_since(breach).unwrap_or_default());
            wait_phase(&ctx, version, Phase::RolledBack, Duration::from_secs(90)).await?;
        }
        std::fs::remove_file(&target)?;
        rows.push((
            "failing KPI measurement → Deployment reverted, p50 / max (3)".into(),
            median_and(&mut to_revert, 1.0),
        ));

        // 3. Idle: RSS, CPU, API writes per minute with the 21 settled releases.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (w0, c0) = (metric(&http, &address, WRITES).await?, cpu_ticks(pid));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let (w1, c1) = (metric(&http, &address, WRITES).await?, cpu_ticks(pid));
        rows.push((
            "RSS idle (21 settled releases)".into(),
            format!("{:.1} MiB", rss_mib(pid)),
        ));
        rows.push((
            "CPU idle over 60 s".into(),
            format!("{:.2} %", (c1 - c0) as f64 / 100.0 / 60.0 * 100.0),
        ));
        rows.push((
            "API writes per minute, steady state".into(),
            format!("{}", w1 - w0),
        ));

        // 4. Drift repair: a person scales a settled release's Deployment; time until the
        //    operator has put its replicas back, and the API calls each repair costs.
        let mut to_repair = Vec::new();
        let (r0, n0, w0) = (
            metric(&http, &address, READS).await?,
            metric(&http, &address, RECONCILES).await?,
            metric(&http, &address, WRITES).await?,
        );
        for i in 0..20 {
            let start = Instant::now();
            deployments
                .patch(
                    "r00-api",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({ "spec": { "replicas": 3 + i % 3 } })),
                )
                .await?;
            loop {
                let d = deployments.get("r00-api").await?;
                if d.spec.as_ref().and_then(|s| s.replicas) == Some(2) {
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "the scaled Deployment was not repaired within 60 s:\n{}",
                        operator.log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            to_repair.push(start.elapsed());
        }
        let (r1, n1, w1) = (
            metric(&http, &address, READS).await?,
            metric(&http, &address, RECONCILES).await?,
            metric(&http, &address, WRITES).await?,
        );
        rows.push((
            "drift repair (Deployment scaled by hand → replicas back), p50 / p99 (20)".into(),
            median_and(&mut to_repair, 0.99),
        ));
        let reconciles = (n1 - n0).max(1.0);
        rows.push((
            "API reads / writes per reconcile during drift repair".into(),
            format!(
                "{:.2} / {:.2} ({} reconciles)",
                (r1 - r0) / reconciles,
                (w1 - w0) / reconciles,
                n1 - n0
            ),
        ));

        // 5. RSS with 100 and 1,000 releases (paused: they hold status but no children).
        let mut created = 0;
        for target in [100, 1000] {
            while created < target {
                let mut manifest = named("2.0.0", 1, &endpoint.url, &format!("p{created:04}"));
                manifest["spec"]["paused"] = json!(true);
                releases
                    .create(&PostParams::default(), &serde_json::from_value(manifest)?)
                    .await?;
                created += 1;
            }
            let start = Instant::now();
            loop {
                let listed = releases.list(&ListParams::default()).await?;
                let done = listed
                    .items
                    .iter()
                    .filter(|r| {
                        r.status
                            .as_ref()
                            .and_then(|s| s.observed_generation)
                            .is_some()
                    })
                    .count();
                if done >= target + 21 || start.elapsed() > Duration::from_secs(300) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            rows.push((
                format!("RSS with {target} paused + 21 settled releases"),
                format!("{:.1} MiB", rss_mib(pid)),
            ));
        }
    }
    // 6. At scale: releases that each own a Deployment with one pod and a Service, no
    //    worker pods (LC_BENCH_RELEASES, default 1,000).
    let serving = std::env::var("LC_BENCH_RELEASES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1_000);
    let room = Room::make(&ctx, serving).await?;
    let scale = at_scale(&ctx, &operator, &http, &address, &endpoint.url, serving).await;
    delete_scale_releases(&ctx).await;
    room.clear(&ctx).await;
    rows.extend(scale?);

    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    println!("\n| {:width$} | value |", "operator measurement");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
    Ok::<(), anyhow::Error>(())
}

/// Creates `n` serving releases at once and measures them until they have all settled and
/// after; the table's rows.
async fn at_scale(
    ctx: &TestContext,
    operator: &Operator,
    http: &reqwest::Client,
    address: &str,
    health_url: &str,
    n: usize,
) -> Result<Vec<(String, String)>> {
    let pid = operator.pid().context("operator pid")?;
    let releases: Api<ListaCompraRelease> = ctx.api();
    let deployments: Api<Deployment> = ctx.api();
    let calls = |http, address| async move {
        anyhow::Ok((
            metric(http, address, READS).await?,
            metric(http, address, WRITES).await?,
            metric(http, address, RECONCILES).await?,
        ))
    };
    let before = calls(http, address).await?;
    let (c0, started) = (cpu_ticks(pid), Instant::now());
    for i in 0..n {
        let mut manifest = named("1.0.0", 1, health_url, &format!("s{i:04}"));
        manifest["spec"]["replicas"] = json!(1);
        manifest["spec"]["worker"] = json!({ "replicas": 0 });
        manifest["spec"]["migrations"] = json!({ "enabled": false });
        // A thousand rollouts at once take the local cluster (its controller-manager,
        // scheduler and kwok on two cores) many minutes: a platform applying them together
        // gives them the time (with the small releases' 120 s, 650 of 1,000 failed).
        manifest["spec"]["progressDeadlineSeconds"] = json!(3_600);
        releases
            .create(&PostParams::default(), &serde_json::from_value(manifest)?)
            .await?;
    }
    let created = started.elapsed();
    let mut peak = 0.0_f64;
    let (settled, succeeded) = loop {
        peak = peak.max(rss_mib(pid));
        let phases: Vec<Option<Phase>> = releases
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with('s'))
            })
            .map(|r| r.status.as_ref().and_then(|s| s.phase))
            .collect();
        let ended = phases
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    Some(Phase::Succeeded | Phase::Failed | Phase::RolledBack)
                )
            })
            .count();
        if ended >= n {
            let succeeded = phases
                .iter()
                .filter(|p| **p == Some(Phase::Succeeded))
                .count();
            break (started.elapsed(), succeeded);
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            bail!(
                "{ended} of {n} releases ended within an hour:\n{}",
                tail(&operator.log())
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let c1 = cpu_ticks(pid);
    let after = calls(http, address).await?;
    let ready_pods = deployments
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|d| {
            d.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with('s') && n.ends_with("-api"))
        })
        .filter(|d| rolled_out(d))
        .count();
    let reconciles = (after.2 - before.2).max(1.0);
    let mut rows = vec![
        (
            format!("{n} serving releases: created in / all ended after"),
            format!(
                "{:.1} s / {:.1} s ({succeeded} Succeeded, {ready_pods} Deployments rolled out)",
                created.as_secs_f64(),
                settled.as_secs_f64()
            ),
        ),
        (
            format!("RSS peak while {n} settle / after"),
            format!("{peak:.1} MiB / {:.1} MiB", rss_mib(pid)),
        ),
        (
            format!("CPU while {n} settle"),
            format!(
                "{:.1} s ({:.0} % of one core)",
                (c1 - c0) as f64 / 100.0,
                (c1 - c0) as f64 / 100.0 / settled.as_secs_f64() * 100.0
            ),
        ),
        (
            format!("API reads / writes per reconcile while {n} settle (all releases)"),
            format!(
                "{:.2} / {:.2} ({} reconciles)",
                (after.0 - before.0) / reconciles,
                (after.1 - before.1) / reconciles,
                after.2 - before.2
            ),
        ),
    ];

    // Idle among them.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (w0, c0) = (metric(http, address, WRITES).await?, cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (w1, c1) = (metric(http, address, WRITES).await?, cpu_ticks(pid));
    rows.push((
        format!("idle with {n} serving: RSS / CPU / API writes per minute"),
        format!(
            "{:.1} MiB / {:.2} % / {}",
            rss_mib(pid),
            (c1 - c0) as f64 / 100.0 / 60.0 * 100.0,
            w1 - w0
        ),
    ));

    // Drift repair among them.
    let mut to_repair = Vec::new();
    for i in 0..20 {
        let name = format!("s{:04}-api", (i * 37) % n);
        let start = Instant::now();
        deployments
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": { "replicas": 3 } })),
            )
            .await?;
        loop {
            let d = deployments.get(&name).await?;
            if d.spec.as_ref().and_then(|s| s.replicas) == Some(1) {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!(
                    "{name} was not repaired within 120 s:\n{}",
                    tail(&operator.log())
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        to_repair.push(start.elapsed());
    }
    rows.push((
        format!("drift repair among {n} serving, p50 / p99 (20)"),
        median_and(&mut to_repair, 0.99),
    ));
    Ok(rows)
}

/// Deletes the releases [`at_scale`] made (their names start with `s`); their children go
/// with them.
async fn delete_scale_releases(ctx: &TestContext) {
    let releases: Api<ListaCompraRelease> = ctx.api();
    if let Ok(list) = releases.list(&ListParams::default()).await {
        for r in list.items {
            let name = r.metadata.name.unwrap_or_default();
            if name.starts_with('s') {
                let _ = releases
                    .delete(&name, &kube::api::DeleteParams::default())
                    .await;
            }
        }
    }
}
