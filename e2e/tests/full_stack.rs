//! The whole release, for real: the operator releases the real API server (run by the
//! workload runner as local processes for the kwok pods) against the real PostgreSQL, Redis,
//! RabbitMQ and Prometheus, under load, on a PostgreSQL of its own that pgBackRest backs up
//! (run by the cluster as a StatefulSet, which the story's restore stops and starts). The
//! story and its checks are in `e2e::story`; the same story is what `make demo` shows.

use e2e::backups::BackedUpPostgres;
use e2e::cluster::with_namespace;
use e2e::env::ALL_SERVICES;
use e2e::services::Services;
use e2e::stack::{Stack, StackOptions};
use e2e::story::Story;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_upgrade_latency_rollback_and_failed_migration() {
    let services = Services::start(ALL_SERVICES)
        .await
        .unwrap_or_else(|e| panic!("the services are not available: {e}"));
    // The demo's database: backed up with pgBackRest, run by the cluster as a StatefulSet.
    let database = BackedUpPostgres::start("listacompra")
        .unwrap_or_else(|e| panic!("the backed-up PostgreSQL did not start: {e}"));
    database
        .hand_over()
        .unwrap_or_else(|e| panic!("the backed-up PostgreSQL did not stop: {e}"));
    with_namespace("full-stack", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let log_dir = std::env::temp_dir().join(&ctx.namespace);
        let stack = Stack::start(
            ctx.client.clone(),
            ctx.cluster.kubeconfig(),
            &ctx.namespace,
            &services,
            database.stack_options(StackOptions::story(log_dir.clone()))?,
        )
        .await?;
        let mut story = Story::new(&stack, false);
        let finished = match story.with_backups(&database).await {
            Ok(()) => story.run_all().await,
            Err(e) => Err(e),
        };
        let finished = match finished {
            Ok(()) => story.finish().await,
            Err(e) => Err(e).inspect_err(|_| {
                eprintln!("--- story so far\n{}", story.log.join("\n"));
            }),
        };
        if finished.is_err() {
            stack.print_logs(&log_dir);
        }
        stack.shutdown().await;
        let (summary, _, log) = finished?;
        println!("{}", log.join("\n"));
        assert!(summary.load.requests > 0);
        Ok::<(), e2e::Error>(())
    })
    .await;
}
