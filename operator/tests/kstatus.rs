//! The release's status as the ecosystem reads it: kstatus itself (sigs.k8s.io/cli-utils,
//! what Flux health checks and Helm 4 `--wait` use), built from its Go module in
//! `e2e/kstatus`, over the real release objects the operator wrote in each phase of a
//! release that succeeds and one that is rolled back.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::cluster::{TestContext, with_namespace};
use e2e::env::repo_root;
use kube::Api;
use listacompra_crds::{ListaCompraRelease, Phase};
use serde_json::Value;
use support::{Endpoint, Operator, apply, release};
use tokio::io::AsyncWriteExt;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Polls the release until it reaches `last` for `version`, keeping one object per phase
/// seen (the first sighting), in order.
async fn phases_until(
    ctx: &TestContext,
    version: &str,
    last: Phase,
) -> Result<Vec<(String, Value)>> {
    let api: Api<ListaCompraRelease> = ctx.api();
    let deadline = Instant::now() + TIMEOUT;
    let mut seen: Vec<(String, Value)> = Vec::new();
    loop {
        let object = api.get("lc").await?;
        let status = object.status.clone().unwrap_or_default();
        let current = status.current_version.as_deref() == Some(version)
            && status.observed_generation == object.metadata.generation;
        let phase = if current {
            status.phase.map_or("none".to_owned(), |p| format!("{p:?}"))
        } else {
            "not yet observed".to_owned()
        };
        if seen.last().is_none_or(|(p, _)| *p != phase) {
            seen.push((phase.clone(), serde_json::to_value(&object)?));
        }
        if current && status.phase == Some(last) {
            return Ok(seen);
        }
        ensure!(
            Instant::now() < deadline,
            "{version} did not reach {last:?} within {TIMEOUT:?}; phases seen: {:?}",
            seen.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kstatus's verdict (`InProgress`, `Current`, `Failed`, ...) for each object.
async fn kstatus(objects: &[Value]) -> Result<Vec<String>> {
    let dir = repo_root().join("e2e/kstatus");
    let binary = std::env::temp_dir().join(format!("kstatus-check-{}", std::process::id()));
    let build = tokio::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&dir)
        .output()
        .await
        .context("run `go build` (install Go 1.26 or later and put it on PATH)")?;
    ensure!(
        build.status.success(),
        "building e2e/kstatus failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let mut child = tokio::process::Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let input = serde_json::to_vec(objects)?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(&input).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    let _ = std::fs::remove_file(&binary);
    ensure!(
        output.status.success(),
        "kstatus-check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)?;
            Ok(format!(
                "{}: {}",
                v["status"].as_str().unwrap_or_default(),
                v["message"].as_str().unwrap_or_default()
            ))
        })
        .collect()
}

#[tokio::test]
async fn kstatus_reads_in_progress_current_and_failed_from_real_statuses() {
    with_namespace("op-kstatus", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        let mut phases = phases_until(&ctx, "1.0.0", Phase::Succeeded).await;
        if phases.is_ok() {
            endpoint.set_health(503);
            apply(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
            match phases_until(&ctx, "1.1.0", Phase::RolledBack).await {
                Ok(more) => phases.as_mut().map(|p| p.extend(more)).unwrap_or(()),
                Err(e) => phases = Err(e),
            }
        }
        if phases.is_err() {
            eprintln!("operator log:\n{}", operator.log());
        }
        let phases = phases?;
        let objects: Vec<Value> = phases.iter().map(|(_, o)| o.clone()).collect();
        let verdicts = kstatus(&objects).await?;
        let table: Vec<(String, String)> = phases
            .iter()
            .map(|(p, _)| p.clone())
            .zip(verdicts.iter().cloned())
            .collect();
        let expected: BTreeMap<&str, &str> = [
            ("not yet observed", "InProgress"),
            ("Pending", "InProgress"),
            ("Migrating", "InProgress"),
            ("RollingOut", "InProgress"),
            ("Verifying", "InProgress"),
            ("RollingBack", "InProgress"),
            ("Succeeded", "Current"),
            ("RolledBack", "Failed"),
        ]
        .into();
        for (phase, verdict) in &table {
            let want = expected
                .get(phase.as_str())
                .with_context(|| format!("unexpected phase {phase}"))?;
            ensure!(
                verdict.starts_with(want),
                "kstatus reads {phase} as {verdict}, expected {want}; all: {table:#?}"
            );
        }
        for must in ["Succeeded", "RolledBack"] {
            ensure!(
                table.iter().any(|(p, _)| p == must),
                "phase {must} was never seen: {table:#?}"
            );
        }
        // In-flight phases can be brief; the poll must have caught some of them.
        ensure!(
            table
                .iter()
                .filter(
                    |(p, _)| ["Migrating", "RollingOut", "Verifying", "RollingBack"]
                        .contains(&p.as_str())
                )
                .count()
                >= 2,
            "too few in-flight phases seen: {table:#?}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
