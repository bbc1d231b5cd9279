//! Load benchmark (a command that prints a table, not a timed test):
//!
//! ```sh
//! cargo bench -p listacompra-api --bench load            # 1000 req/s for 10 s per scenario
//! BENCH_RPS=2000 BENCH_SECONDS=20 cargo bench -p listacompra-api --bench load
//! ```
//!
//! Starts the real binary (release build) against a fresh database on the shared
//! PostgreSQL, Redis and RabbitMQ, then drives it open-loop at a fixed rate from this
//! process (latency is measured from each request's scheduled start, so a stalled server
//! cannot hide queueing) for two scenarios: reading a list of 20 items, and adding an item.
//! Prints throughput, p50/p95/p99/max latency, errors and the server's peak RSS.
//!
//! Each scenario runs twice, against two servers: traces off (no `OTEL_*` endpoint) and on
//! (every request sampled, exported over OTLP to the local Jaeger), side by side.
//!
//! Then attachments, against the local S3 server (s3s-fs): the latency of announcing an upload
//! (a database write and a SigV4 presignature) open-loop at a tenth of the rate, and the
//! throughput of uploading a 5 MiB object straight to the store with its presigned URL,
//! confirming it (a HEAD), and downloading it back (`BENCH_OBJECTS` objects, default 10, one
//! at a time).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{
    Bench, MakeRequest, RssSampler, env_u64, latency_cells, list_with_items, mib, percentile,
    register_and_login, rss_kib, run_open_loop,
};

#[tokio::main]
async fn main() -> Result<()> {
    let rps = env_u64("BENCH_RPS", 1000);
    let seconds = env_u64("BENCH_SECONDS", 10);
    let jaeger = e2e::services::Services::start(&[e2e::env::Component::Jaeger]).await?;
    let otlp = jaeger.otlp_endpoint()?.to_owned();
    println!();
    println!(
        "listacompra-api load benchmark: {rps} req/s open-loop for {seconds} s per scenario, loopback, 2-core machine shared by client and server"
    );
    println!();
    println!(
        "| scenario | traces | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | max ms | errors | peak RSS MiB |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (traces, env) in [
        ("off", vec![]),
        (
            "on (all sampled, OTLP to Jaeger)",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
                ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
            ],
        ),
    ] {
        let bench = Bench::start(&env).await?;
        let result = run(&bench, traces, rps, seconds).await;
        bench.finish().await?;
        result?;
    }
    println!();
    println!("targets (issue 5): p95 < 20 ms at 1000 req/s, RSS < 64 MiB");
    attachments((rps / 10).max(1), seconds, env_u64("BENCH_OBJECTS", 10)).await
}

/// The attachments part: announce latency, and 5 MiB upload/download throughput.
async fn attachments(rps: u64, seconds: u64, objects: u64) -> Result<()> {
    let s3 = e2e::services::Services::start(&[e2e::env::Component::S3]).await?;
    let env = s3.env();
    // Limits out of the way: every announcement goes to one list, more than the 100 a list
    // may hold by default (at 1,000 req/s, 1,100 announcements and the uploads).
    let mut vars = vec![
        ("ATTACHMENT_QUOTA_BYTES", (1u64 << 50).to_string()),
        ("ATTACHMENT_MAX_PER_LIST", u32::MAX.to_string()),
    ];
    for var in [
        "S3_BUCKET",
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_FORCE_PATH_STYLE",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    ] {
        vars.push((var, env.get(var)?.to_owned()));
    }
    let bench = Bench::start(&vars).await?;
    let result = measure_attachments(&bench, rps, seconds, objects).await;
    bench.finish().await?;
    result
}

async fn measure_attachments(bench: &Bench, rps: u64, seconds: u64, objects: u64) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = bench.base.clone();
    let token = register_and_login(&http, &base, "files@example.com").await?;
    let list = list_with_items(&http, &base, &token, "Recibos", 0).await?;
    const SIZE: usize = 5 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let sha = e2e::attachments::sha256(&data);
    println!();
    println!("attachments against the local S3 server (s3s-fs, loopback):");
    println!();
    println!(
        "| scenario | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | max ms | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let announce: MakeRequest = {
        let (http, base, token, list, sha) = (
            http.clone(),
            base.clone(),
            token.clone(),
            list.clone(),
            sha.clone(),
        );
        Box::new(move |i| {
            http.post(format!("{base}/v1/lists/{list}/attachments"))
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "name": format!("ticket-{i}.pdf"),
                    "content_type": "application/pdf",
                    "size_bytes": SIZE,
                    "sha256": sha,
                }))
        })
    };
    run_open_loop((rps / 2).max(1), 2, &announce).await?;
    let (throughput, outcome) = run_open_loop(rps, seconds, &announce).await?;
    println!(
        "| POST /v1/lists/{{id}}/attachments (announce + presign, {rps} req/s) | {} |",
        latency_cells(&outcome, throughput),
    );

    let client = e2e::attachments::Attachments::new(&base, &token)?;
    let (mut uploads, mut downloads) = (Vec::new(), Vec::new());
    for i in 0..objects {
        let started = std::time::Instant::now();
        let id = client
            .upload(&list, &format!("scan-{i}.pdf"), "application/pdf", &data)
            .await?;
        uploads.push(started.elapsed());
        let started = std::time::Instant::now();
        let (bytes, _) = client.download(&list, &id).await?;
        downloads.push(started.elapsed());
        anyhow::ensure!(bytes.len() == SIZE, "downloaded {} bytes", bytes.len());
    }
    println!();
    println!("| 5 MiB object, one at a time | objects | p50 s | max s | MiB/s (p50) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, mut times) in [
        ("upload (announce + presigned PUT + confirm)", uploads),
        ("download (GET + presigned GET)", downloads),
    ] {
        times.sort();
        let p50 = percentile(&times, 50.0).as_secs_f64();
        println!(
            "| {name} | {} | {p50:.3} | {:.3} | {:.1} |",
            times.len(),
            times.last().copied().unwrap_or_default().as_secs_f64(),
            5.0 / p50.max(1e-9),
        );
    }
    Ok(())
}

async fn run(bench: &Bench, traces: &str, rps: u64, seconds: u64) -> Result<()> {
    let (pid, base) = (bench.pid, bench.base.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let token = register_and_login(&http, &base, "bench@example.com").await?;
    let mut lists = Vec::new();
    for i in 0..20 {
        lists.push(list_with_items(&http, &base, &token, &format!("Lista {i}"), 20).await?);
    }
    let idle_rss = rss_kib(pid).unwrap_or(0);
    eprintln!(
        "server (traces {traces}) idle RSS after setup: {:.1} MiB",
        mib(idle_rss)
    );
    let scenarios: [(&str, MakeRequest); 2] = [
        ("GET /v1/lists/{id} (20 items)", {
            let (http, base, token, lists) =
                (http.clone(), base.clone(), token.clone(), lists.clone());
            Box::new(move |i| {
                let id = &lists[usize::try_from(i).unwrap_or(0) % lists.len()];
                http.get(format!("{base}/v1/lists/{id}"))
                    .bearer_auth(&token)
            })
        }),
        ("POST /v1/lists/{id}/items", {
            let (http, base, token, lists) =
                (http.clone(), base.clone(), token.clone(), lists.clone());
            Box::new(move |i| {
                let id = &lists[usize::try_from(i).unwrap_or(0) % lists.len()];
                http.post(format!("{base}/v1/lists/{id}/items"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "name": format!("bench {i}"), "quantity": 2 }))
            })
        }),
    ];
    for (name, make) in scenarios {
        // Warm-up (not measured): opens the client's and the server's pool connections.
        run_open_loop((rps / 2).max(1), 2, &make).await?;
        let sampler = RssSampler::start(pid);
        let (throughput, outcome) = run_open_loop(rps, seconds, &make).await?;
        let rss = sampler.finish(pid).await;
        println!(
            "| {name} | {traces} | {} | {:.1} |",
            latency_cells(&outcome, throughput),
            mib(rss),
        );
    }
    Ok(())
}
