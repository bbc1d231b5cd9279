//! `make demo`: the release story on the local cluster, told as it happens.
//!
//! Starts (or reuses) the local cluster and services, recreates the `listacompra-demo`
//! namespace, runs the operator and the workload runner, and releases v1.0.0, v1.1.0 (new
//! migration), v1.2.0 (injected latency: rolled back), v1.3.0 (failing migration) and v1.2.1
//! (failing smoke test: rolled back) under load, each release smoke-tested by a Job. The
//! database is a PostgreSQL of the demo's own, run as a StatefulSet and backed up with
//! pgBackRest (a snapshot before every migration); the story ends with the runbook's
//! corrupt-database procedure as a `ListaCompraRestore`. Ends with `kubectl get`, a summary,
//! and a timeline picture.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use e2e::backups::BackedUpPostgres;
use e2e::cluster::Cluster;
use e2e::env::{ALL_SERVICES, repo_root};
use e2e::services::Services;
use e2e::stack::{Stack, StackOptions};
use e2e::story::{Story, Summary};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

const NAMESPACE: &str = "listacompra-demo";

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> e2e::Result<()> {
    let out_dir = repo_root().join("target").join("demo");
    let cluster = Cluster::start().await?;
    let services = Services::start(ALL_SERVICES).await?;
    // The release's database: archiving its WAL into a pgBackRest repository, run by the
    // cluster as the StatefulSet `postgres` (a restore stops and starts it).
    let database = BackedUpPostgres::start("listacompra")?;
    database.hand_over()?;
    let client = cluster.client().await?;
    e2e::crd::install_crds(&client).await?;
    fresh_namespace(&client).await?;
    println!(
        "namespace {NAMESPACE}: fresh; logs in {}",
        out_dir.display()
    );

    let stack = Stack::start(
        client,
        cluster.kubeconfig(),
        NAMESPACE,
        &services,
        database.stack_options(StackOptions::story(out_dir.join("logs")))?,
    )
    .await?;
    println!(
        "operator running (log {}); API Service on {}\n",
        stack.operator.log_path().display(),
        stack.api_url
    );
    let mut story = Story::new(&stack, true);
    let finished = match story.with_backups(&database).await {
        Ok(()) => story.run_all().await,
        Err(e) => Err(e),
    };
    let finished = match finished {
        Ok(()) => story.finish().await,
        Err(e) => Err(e),
    };
    stack.shutdown().await;
    let (summary, timeline, _) = finished?;

    let svg = out_dir.join("release-timeline.svg");
    std::fs::write(
        &svg,
        timeline.svg("ListaCompra releases: phases and KPIs over time"),
    )
    .map_err(|source| e2e::Error::Io {
        action: format!("writing {}", svg.display()),
        source,
    })?;
    println!();
    kubectl_get(&cluster)?;
    print_summary(&summary, &svg);
    Ok(())
}

/// Deletes the demo namespace of an earlier run (waiting until it is gone) and creates it.
async fn fresh_namespace(client: &kube::Client) -> e2e::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let kube_error = |action: &str| {
        let action = action.to_owned();
        move |source| e2e::Error::Kube { action, source }
    };
    if api
        .get_opt(NAMESPACE)
        .await
        .map_err(kube_error("reading the demo namespace"))?
        .is_some()
    {
        println!("namespace {NAMESPACE}: deleting the previous demo run");
        let _ = api.delete(NAMESPACE, &DeleteParams::foreground()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while api
            .get_opt(NAMESPACE)
            .await
            .map_err(kube_error("reading the demo namespace"))?
            .is_some()
        {
            if tokio::time::Instant::now() > deadline {
                return Err(e2e::Error::Wait {
                    what: format!("namespace {NAMESPACE} to be deleted"),
                    message: "still there after 120 s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &namespace)
        .await
        .map_err(kube_error("creating the demo namespace"))?;
    Ok(())
}

/// What `kubectl get` shows of the release, its restore and its backup schedules.
fn kubectl_get(cluster: &Cluster) -> e2e::Result<()> {
    let kubectl: PathBuf = cluster.bin_dir()?.join("kubectl");
    println!("$ kubectl get lcr,lcrestore,cronjobs -n {NAMESPACE}");
    let status = std::process::Command::new(&kubectl)
        .args(["get", "lcr,lcrestore,cronjobs", "-n", NAMESPACE])
        .env("KUBECONFIG", cluster.kubeconfig())
        .status()
        .map_err(|source| e2e::Error::Io {
            action: format!("running {}", kubectl.display()),
            source,
        })?;
    if !status.success() {
        eprintln!("kubectl exited with {status}");
    }
    Ok(())
}

fn print_summary(summary: &Summary, svg: &std::path::Path) {
    println!("\nSummary");
    for line in &summary.releases {
        println!("  {line}");
    }
    let load = &summary.load;
    println!(
        "  load: {} requests, {} failed, {} items written, {} lost",
        load.requests,
        load.failed,
        load.written.len(),
        summary.lost_items
    );
    println!("  timeline picture: {}", svg.display());
    println!(
        "\nThe cluster and services stay up (make status; make down stops them). The API processes\n\
         ran inside this demo and stopped with it; run make demo again to replay the story."
    );
}
