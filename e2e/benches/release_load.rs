//! `make bench-release`: the API server under load while the operator releases a new version
//! on the local cluster (real processes run by the workload runner, release builds). Prints a
//! table: the same load in a steady state, then during the release of v1.1.0 (migration,
//! rollout of two pods, health and KPI gates).
//!
//! Numbers, not assertions: the machines are shared and noisy. The rate is
//! `LC_BENCH_RATE` requests per second (default 200), each on a new connection.

use std::time::{Duration, Instant};

use e2e::cluster::{TestContext, with_namespace};
use e2e::env::ALL_SERVICES;
use e2e::load::LoadStats;
use e2e::services::Services;
use e2e::stack::{Stack, StackOptions};
use e2e::story::Story;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    with_namespace("bench-release", |ctx| async move { run(ctx).await }).await;
}

fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn row(label: &str, before: &LoadStats, after: &LoadStats, seconds: f64) -> String {
    let (requests, failed) = after.since(before);
    let latencies = after.latencies_since(before);
    format!(
        "| {label} | {requests} | {failed} | {:.0} | {:.1} | {:.1} | {:.1} |",
        requests as f64 / seconds,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99)
    )
}

async fn run(ctx: TestContext) -> e2e::Result<()> {
    let rate: u32 = std::env::var("LC_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let services = Services::start(ALL_SERVICES).await?;
    e2e::crd::install_crds(&ctx.client).await?;
    let stack = Stack::start(
        ctx.client.clone(),
        ctx.cluster.kubeconfig(),
        &ctx.namespace,
        &services,
        StackOptions {
            builds: Default::default(), // every version a normal build
            ..StackOptions::story(std::env::temp_dir().join(&ctx.namespace))
        },
    )
    .await?;
    let mut story = Story::new(&stack, false);
    story.set_load_rate(rate);
    let outcome = async {
        story.release("1.0.0", e2e::story::SCHEMAS[0]).await?;
        // Let the load settle, then measure a steady window.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let steady_start = (story.load_stats(), Instant::now());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let steady_end = (story.load_stats(), Instant::now());
        let release_start = (story.load_stats(), Instant::now());
        let release = story.release("1.1.0", e2e::story::SCHEMAS[1]).await?;
        let release_end = (story.load_stats(), Instant::now());
        let phase = release
            .status
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        println!("\nAPI load during a release ({rate} requests/s offered, new connection each, 2 pods, release builds)\n");
        println!("| window | requests | failed | req/s | p50 ms | p95 ms | p99 ms |");
        println!("|---|---|---|---|---|---|---|");
        println!(
            "{}",
            row(
                "steady, v1.0.0 (30 s)",
                &steady_start.0,
                &steady_end.0,
                (steady_end.1 - steady_start.1).as_secs_f64()
            )
        );
        let seconds = (release_end.1 - release_start.1).as_secs_f64();
        println!(
            "{}",
            row(
                &format!("release of v1.1.0, apply → {phase} ({seconds:.0} s)"),
                &release_start.0,
                &release_end.0,
                seconds
            )
        );
        story.finish().await.map(|_| ())
    }
    .await;
    stack.shutdown().await;
    outcome
}
