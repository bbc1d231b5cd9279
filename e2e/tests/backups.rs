//! Scheduled backups, for real: the release's database lives in a PostgreSQL of the test's own
//! that archives its WAL with pgBackRest (Debian's package) into a posix repository; the
//! operator keeps the release's full and incremental CronJobs; kube-controller-manager's
//! CronJob controller starts their Jobs on (shortened) schedules; the workload runner runs
//! the real `pgbackrest backup` for each Job's pod, as the repository's owner. The repository
//! then holds the backups, and the release's status and the operator's metrics say when each
//! kind last succeeded. Before its migration, the release backs the database up and records
//! which backup (pgBackRest annotation) in its status. A release whose migration cannot be
//! reverted fails its KPI gate under load and rolls back keeping the schema and its data; a
//! `ListaCompraRestore` of its snapshot then stops
//! the API and PostgreSQL, runs `pgbackrest restore`, starts them again behind the smoke test,
//! and brings back exactly the rows of the snapshot (one asked for during the release is
//! refused). Removing `spec.backups` removes the CronJobs, the status and the metric series.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::approvals::{apply_policy_and_personas, bind};
use e2e::backups::BackedUpPostgres;
use e2e::cluster::{TestContext, with_namespace};
use e2e::env::ALL_SERVICES;
use e2e::helm::Helm;
use e2e::identity::Identity;
use e2e::load::LoadGenerator;
use e2e::services::Services;
use e2e::stack::{Stack, StackOptions};
use e2e::story::LOAD_RATE;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::ResourceExt as _;
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use listacompra_crds::restore::{RestorePhase, RestoreStep};
use listacompra_crds::status::{BackupsStatus, Verdict};
use listacompra_crds::{
    ListaCompraApproval, ListaCompraRelease, ListaCompraRestore, ListaCompraRestoreSpec, Phase,
};
use serde_json::json;

/// How long the test waits for a backup to succeed: the schedules fire every two minutes,
/// then the Job's pod starts, pgBackRest runs and the CronJob controller records the success
/// (generous for a busy machine).
const BACKUPS_DUE: Duration = Duration::from_secs(360);
/// The build whose every request takes 600 ms longer (`e2e::story::builds`): its p95 KPI
/// breaches.
const SLOW_BUILD: &str = "1.2.0";
/// The schema revision whose down step loses data (pending ownership transfers).
const IRREVERSIBLE_REVISION: i64 = 13;
/// How long a release (snapshot, migration, rollout, gates, a rollback) may take.
const RELEASED: Duration = Duration::from_secs(240);
/// The tables compared row by row across a restore (users, and the lists and items the smoke
/// tests leave when they fail before they clean up).
const RESTORED_TABLES: [&str; 3] = ["users", "lists", "items"];
/// The group whose members approve as `release-manager` (the chart's `approvals.roles`).
const RELEASE_MANAGERS: &str = "listacompra:release-manager";
/// How long the test waits for the operator to act on a spec change.
const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_backups_fill_the_repository_and_report_their_last_success() {
    let services = Services::start(ALL_SERVICES)
        .await
        .unwrap_or_else(|e| panic!("the services are not available: {e}"));
    let database = BackedUpPostgres::start("listacompra")
        .unwrap_or_else(|e| panic!("the backed-up PostgreSQL did not start: {e}"));
    // From here on the cluster runs it, as the StatefulSet `postgres`: the backups reach a
    // server the runner started, on the same port and data folder.
    database
        .hand_over()
        .unwrap_or_else(|e| panic!("the backed-up PostgreSQL did not stop: {e}"));
    with_namespace("backups", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        // The operator runs with the chart's RBAC, as installed: what it may do to the
        // database (read the StatefulSet, patch its scale) is all a restore gets.
        let operator_kubeconfig = charts_rbac(&ctx).await?;
        let log_dir = std::env::temp_dir().join(&ctx.namespace);
        // Restores are approved by a release manager, through the approvals policy.
        apply_policy_and_personas(&ctx.cluster).await?;
        bind(&ctx.client, &ctx.namespace, "release-manager", &[RELEASE_MANAGERS]).await?;
        std::fs::create_dir_all(&log_dir)?;
        let rita = Identity::new(&ctx.cluster, "rita", &[RELEASE_MANAGERS], &log_dir).await?;
        let stack = Stack::start(
            ctx.client.clone(),
            ctx.cluster.kubeconfig(),
            &ctx.namespace,
            &services,
            database.stack_options(StackOptions {
                operator_kubeconfig: Some(operator_kubeconfig.clone()),
                ..StackOptions::story(log_dir.clone())
            })?,
        )
        .await?;
        let outcome = async {
            // The pgBackRest options, as a platform team would keep them in a ConfigMap.
            Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace)
                .create(&PostParams::default(), &database.options())
                .await?;
            let mut manifest = stack.manifest("1.0.0", e2e::story::SCHEMAS[0]);
            // No KPI analysis until the irreversible release: nothing loads the API before it.
            let analysis = manifest["spec"]
                .as_object_mut()
                .and_then(|spec| spec.remove("analysis"))
                .context("the stack's manifest has no analysis")?;
            let mut backups = database.release_backups();
            // Suspended while the release takes its snapshot; then never at the same minute
            // (pgBackRest locks the stanza).
            backups["full"] = json!({ "schedule": "*/2 * * * *", "maxAgeSeconds": 600, "suspend": true });
            backups["incremental"] =
                json!({ "schedule": "1-59/2 * * * *", "maxAgeSeconds": 600, "suspend": true });
            manifest["spec"]["backups"] = backups;
            stack.apply(&manifest).await?;

            // The release backs the database up before its migration, and says which backup.
            let release = phase_within(&stack, Phase::Succeeded).await?;
            let status = release.status.unwrap_or_default();
            let snapshot = status.snapshot.clone().context("no snapshot in the status")?;
            anyhow::ensure!(
                snapshot.attempt == status.attempt.unwrap_or_default(),
                "the snapshot of another attempt: {snapshot:?}"
            );
            // The migration Job was created once the snapshot was complete, not before.
            let taken = snapshot.completion_time.clone().context("snapshot not complete")?;
            let migration = status.migration_job.clone().context("no migration Job")?;
            let created = Api::<Job>::namespaced(ctx.client.clone(), &ctx.namespace)
                .get(&migration)
                .await?
                .metadata
                .creation_timestamp
                .context("a Job without a creation time")?;
            anyhow::ensure!(
                created.0 >= taken.0,
                "migration Job {migration} created at {created:?}, before the snapshot was \
                 complete at {taken:?}"
            );
            // The repository has one set under the snapshot's annotation, and the Job's log
            // (what `kubectl logs` shows) names its label, what a restore takes.
            let label = annotated_set(&database, &snapshot.annotation)?;
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let selector = format!("batch.kubernetes.io/job-name={}", snapshot.job);
            let mut logs = String::new();
            for pod in pods.list(&ListParams::default().labels(&selector)).await? {
                logs += &pods.logs(&pod.name_any(), &LogParams::default()).await?;
            }
            assert!(
                logs.contains(&format!("new backup label = {label}")),
                "the snapshot Job's log does not name its set {label}:\n{logs}"
            );

            // The schedules resume (a spec edit the CronJobs follow): each kind succeeds.
            manifest["spec"]["backups"]["full"]["suspend"] = json!(false);
            manifest["spec"]["backups"]["incremental"]["suspend"] = json!(false);
            stack.apply(&manifest).await?;
            let both = |b: &BackupsStatus| {
                [&b.full, &b.incremental]
                    .iter()
                    .all(|r| r.as_ref().is_some_and(|r| r.last_successful_time.is_some()))
            };
            let status = backups_when(&stack, &log_dir, "a full and an incremental backup", both)
                .await?;
            assert_eq!(status.message, None);
            let full = status.full.clone().unwrap_or_default();
            assert_eq!(full.cron_job, "listacompra-backup-full");

            // The repository holds what the status says: a full backup and an incremental one.
            let info = database.info()?;
            let kinds: Vec<String> = info[0]["backup"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["type"].as_str().map(str::to_owned))
                .collect();
            assert!(
                kinds.iter().any(|k| k == "full") && kinds.iter().any(|k| k == "incr"),
                "pgbackrest info lists {kinds:?}: {info}"
            );

            // The metric is the status's time, for the alert to age.
            let metrics = operator_metrics(&stack).await?;
            let last_full = full
                .last_successful_time
                .map(|t| t.0.as_second())
                .unwrap_or_default();
            let sample = format!(
                "listacompra_operator_backup_last_success_timestamp_seconds{{namespace=\"{}\",release=\"listacompra\",type=\"full\"}} {last_full}",
                ctx.namespace
            );
            assert!(metrics.contains(&sample), "{sample} not in\n{metrics}");

            // A release whose migration cannot be reverted (revision 13 drops pending
            // ownership transfers when reverted) fails its KPI gate (build 1.2.0 adds 600 ms
            // to every request, under the load generator's traffic): the rollback refuses to
            // revert, keeps the schema and its data, names the step and the snapshot to
            // restore, and the stable version serves. What the snapshot of 1.2.0 will hold:
            // nothing writes between here and it (the schedules are suspended with the same
            // apply; only smoke tests have created users; the load starts after it).
            let mut at_snapshot = Vec::new();
            for table in RESTORED_TABLES {
                at_snapshot.push(stack.rows(table).await?);
            }
            anyhow::ensure!(!at_snapshot[0].is_empty(), "no users to restore: the smoke test made none");
            let attempt = stack.release().await?.status.and_then(|s| s.attempt);
            manifest["spec"]["version"] = json!(SLOW_BUILD);
            manifest["spec"]["migrations"]["schemaVersion"] = json!(IRREVERSIBLE_REVISION);
            manifest["spec"]["analysis"] = analysis;
            manifest["spec"]["backups"]["full"]["suspend"] = json!(true);
            manifest["spec"]["backups"]["incremental"]["suspend"] = json!(true);
            stack.apply(&manifest).await?;

            // A restore asked for while the attempt is in flight is refused, and touches
            // nothing.
            let started = Instant::now();
            while stack.release().await?.status.and_then(|s| s.attempt) == attempt {
                anyhow::ensure!(started.elapsed() < SETTLE, "1.2.0's attempt did not start");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let restores: Api<ListaCompraRestore> =
                Api::namespaced(ctx.client.clone(), &ctx.namespace);
            restores
                .create(&PostParams::default(), &restore("during-release", None))
                .await?;
            let refused = restore_ended(&restores, "during-release").await?;
            let status = refused.status.clone().unwrap_or_default();
            anyhow::ensure!(
                status.phase == Some(RestorePhase::Refused)
                    && status.message.as_deref().is_some_and(|m| m.contains("in flight"))
                    && status.steps.is_empty(),
                "a restore during 1.2.0's attempt: {status:?}"
            );

            // Once the snapshot is complete, shoppers use the API (what the KPIs measure).
            let started = Instant::now();
            while !stack.release().await?.status.is_some_and(|s| {
                s.attempt != attempt
                    && s.snapshot.is_some_and(|snapshot| {
                        Some(snapshot.attempt) == s.attempt && snapshot.completion_time.is_some()
                    })
            }) {
                anyhow::ensure!(started.elapsed() < RELEASED, "1.2.0's snapshot did not complete");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let load = LoadGenerator::start(&stack.api_url, LOAD_RATE).await?;
            let release = phase_within(&stack, Phase::RolledBack).await;
            let traffic = load.stop().await;
            let status = release?.status.unwrap_or_default();
            let degraded = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .context("no Degraded condition")?;
            let p95 = status
                .last_analysis
                .iter()
                .flat_map(|a| &a.kpis)
                .find(|k| k.name == "p95-latency-ms");
            anyhow::ensure!(
                degraded.reason == "KpiBreached"
                    && degraded.message.contains("p95-latency-ms")
                    && p95.is_some_and(|k| k.verdict == Verdict::Fail && k.value.is_some_and(|v| v > 350.0)),
                "1.2.0 did not fail its KPI gate on the p95 latency: {degraded:?}, {:?} \
                 (load: {traffic:?})",
                status.last_analysis
            );
            let snapshot = status.snapshot.clone().context("no snapshot of 1.2.0")?;
            let kept = status
                .conditions
                .iter()
                .find(|c| c.type_ == "MigrationsApplied")
                .context("no MigrationsApplied condition")?;
            anyhow::ensure!(
                kept.reason == "IrreversibleSchemaKept"
                    && kept.message.contains("revision 13 cannot be reverted")
                    && kept.message.contains(&snapshot.job),
                "{kept:?}"
            );
            assert_eq!(status.schema_version, Some(IRREVERSIBLE_REVISION));
            assert_eq!(stack.schema_revision().await?, IRREVERSIBLE_REVISION);
            assert!(stack.has_table("list_transfer_offers").await?);
            assert_eq!(
                stack.runner.ready_versions(),
                ["1.0.0".to_owned()].into(),
                "the stable version serves"
            );

            // The database is a workload: scaled to zero, its pod goes only once PostgreSQL
            // has shut down (no postmaster.pid left, as a restore needs); scaled back, it
            // serves the same data.
            let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let scale = |replicas: i32| {
                let sets = sets.clone();
                async move {
                    sets.patch(
                        e2e::backups::DATABASE,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
                    )
                    .await
                }
            };
            scale(0).await?;
            let pid = database.data_dir().join("postmaster.pid");
            let started = Instant::now();
            while pods.get_opt("postgres-0").await?.is_some() {
                anyhow::ensure!(started.elapsed() < SETTLE, "postgres-0 still there");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(!pid.exists(), "postgres-0 went while PostgreSQL still ran ({pid:?})");
            scale(1).await?;
            // Ready once it listens; it takes sessions once its startup is done.
            let started = Instant::now();
            let revision = loop {
                if stack.runner.ready_pods().contains_key("postgres-0")
                    && let Ok(revision) = stack.schema_revision().await
                {
                    break revision;
                }
                anyhow::ensure!(started.elapsed() < SETTLE, "postgres-0 does not serve again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(revision, IRREVERSIBLE_REVISION);

            // The way back across the irreversible revision: restore 1.2.0's snapshot. The
            // rows written since (users, lists and items of the load, 1.2.0's smoke test and the
            // rollback's) are lost, the ones present at the snapshot come back exactly, and
            // the schema is the stable version's again.
            let mut written_since = Vec::new();
            for (table, then) in RESTORED_TABLES.iter().zip(&at_snapshot) {
                let rows = stack.rows(table).await?;
                written_since.push(rows.into_iter().filter(|row| !then.contains(row)).collect::<Vec<_>>());
            }
            anyhow::ensure!(!written_since[0].is_empty(), "no user was written after the snapshot");
            let label = annotated_set(&database, &snapshot.annotation)?;
            // It loses those writes: with spec.approvals it waits for the release manager,
            // and the stable version serves meanwhile.
            manifest["spec"]["approvals"] = json!({ "requiredRoles": ["release-manager"] });
            stack.apply(&manifest).await?;
            restores
                .create(&PostParams::default(), &restore("to-snapshot", Some(&label)))
                .await?;
            let started = Instant::now();
            loop {
                let status = restores.get("to-snapshot").await?.status.unwrap_or_default();
                if status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("waiting for approval by release-manager"))
                {
                    assert_eq!(status.phase, Some(RestorePhase::Pending));
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < SETTLE,
                    "the restore does not say it waits for its approval: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_eq!(stack.release().await?.status.and_then(|s| s.phase), Some(Phase::RolledBack));
            assert_eq!(stack.runner.ready_versions(), ["1.0.0".to_owned()].into());
            approve_restore(&rita, &ctx.namespace, &stack, "to-snapshot").await?;
            let restored = restore_ended(&restores, "to-snapshot").await?;
            let status = restored.status.clone().unwrap_or_default();
            anyhow::ensure!(
                status.phase == Some(RestorePhase::Succeeded),
                "the restore of {label} did not succeed: {status:?}"
            );
            let approvers: Vec<(&str, &str)> = status
                .approvals
                .iter()
                .map(|a| (a.role.as_str(), a.approver.as_str()))
                .collect();
            assert_eq!(approvers, [("release-manager", "rita")]);
            let order: Vec<RestoreStep> = status.steps.iter().map(|s| s.step).collect();
            assert_eq!(order, RestoreStep::ORDER);
            assert!(
                status.steps.iter().all(|s| s.completion_time.is_some()),
                "a step without its end: {:?}",
                status.steps
            );
            let release = phase_within(&stack, Phase::RolledBack).await?;
            let status = release.status.unwrap_or_default();
            assert_eq!(status.restore, None);
            assert_eq!(status.schema_version, Some(e2e::story::SCHEMAS[0]));
            let migrations = status
                .conditions
                .iter()
                .find(|c| c.type_ == "MigrationsApplied")
                .context("no MigrationsApplied condition")?;
            anyhow::ensure!(
                migrations.reason == "Restored" && migrations.message.contains(&label),
                "{migrations:?}"
            );
            assert_eq!(stack.schema_revision().await?, e2e::story::SCHEMAS[0]);
            assert!(!stack.has_table("list_transfer_offers").await?);
            for ((table, then), since) in RESTORED_TABLES.iter().zip(&at_snapshot).zip(&written_since) {
                let now = stack.rows(table).await?;
                for row in then {
                    assert!(now.contains(row), "a row of {table} at the snapshot did not come back: {row}");
                }
                for row in since {
                    assert!(!now.contains(row), "a row of {table} written after the snapshot is still there: {row}");
                }
            }
            assert_eq!(
                stack.runner.ready_versions(),
                ["1.0.0".to_owned()].into(),
                "the stable version serves again"
            );

            // The runbook's corrupt-database procedure: a backup, then a bad write; a
            // restore without a set takes the newest and undoes it.
            database.pgbackrest(&["--type=incr", "backup"])?;
            let before = stack.rows("users").await?;
            let corrupted = stack
                .execute("UPDATE users SET email = 'corrupted-' || id::text")
                .await?;
            anyhow::ensure!(corrupted > 0, "nothing to corrupt");
            restores
                .create(&PostParams::default(), &restore("corrupt-users", None))
                .await?;
            // Approved with the kubectl plugin, as the user running it.
            let binary = e2e::binaries::workspace_binary("kubectl-listacompra")?;
            let output = tokio::process::Command::new(&binary)
                .env("KUBECONFIG", rita.kubeconfig())
                .args(["approve", "listacompra", "--role", "release-manager"])
                .args(["--restore", "corrupt-users", "-n", &ctx.namespace])
                .output()
                .await?;
            let said = String::from_utf8_lossy(&output.stdout);
            anyhow::ensure!(
                output.status.success() && said.contains("restore corrupt-users approved"),
                "kubectl listacompra approve --restore: {said}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let restored = restore_ended(&restores, "corrupt-users").await?;
            let status = restored.status.clone().unwrap_or_default();
            anyhow::ensure!(
                status.phase == Some(RestorePhase::Succeeded),
                "the restore of the newest set did not succeed: {status:?}"
            );
            let approvals = status.approvals.len();
            assert_eq!(approvals, 1, "approved once: {:?}", status.approvals);
            let now = stack.rows("users").await?;
            for row in &before {
                assert!(now.contains(row), "a user of the newest backup did not come back: {row}");
            }
            assert!(
                !now.iter().any(|row| row.contains("corrupted-")),
                "a corrupted row is still there: {now:?}"
            );
            phase_within(&stack, Phase::RolledBack).await?;

            // Everything above ran within the chart's RBAC: nothing was refused.
            let log = stack.operator.log();
            let refused: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).collect();
            assert!(refused.is_empty(), "the chart's RBAC refused the operator:\n{}", refused.join("\n"));

            // Without spec.backups, the CronJobs, the status and the series go.
            manifest["spec"]
                .as_object_mut()
                .map(|spec| spec.remove("backups"));
            stack.apply(&manifest).await?;
            let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let started = Instant::now();
            loop {
                let left = cron_jobs.list(&Default::default()).await?.items.len();
                let status = stack.release().await?.status.and_then(|s| s.backups);
                let metrics = operator_metrics(&stack).await?;
                if left == 0
                    && status.is_none()
                    && !metrics.contains("listacompra_operator_backup_last_success")
                {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < SETTLE,
                    "{SETTLE:?} after spec.backups was removed: {left} CronJobs left, \
                     status.backups {status:?}"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if outcome.is_err() {
            stack.print_logs(&log_dir);
        }
        stack.shutdown().await;
        outcome
    })
    .await;
}

/// Installs the operator's chart for the test's namespace (its pods are kwok's and run
/// nothing; the stack runs the operator) with the StatefulSet `postgres` as the only one it
/// may scale, and returns a kubeconfig of the chart's ServiceAccount.
async fn charts_rbac(ctx: &TestContext) -> anyhow::Result<std::path::PathBuf> {
    let helm = Helm::with_kubeconfig(ctx.cluster.kubeconfig()).await?;
    helm.ok(&[
        "install",
        "lco",
        &Helm::chart().to_string_lossy(),
        "--namespace",
        &ctx.namespace,
        "--set-json",
        &format!("watchNamespaces=[\"{}\"]", ctx.namespace),
        "--set-json",
        "rbac.statefulSetNames=[\"postgres\"]",
        "--set",
        "replicaCount=1",
        "--set",
        "podDisruptionBudget.enabled=false",
        // The stack's operator watches Secrets (the environments' values do).
        "--set",
        "secretRotation.enabled=true",
        // The test applies the policy and the personas cluster-wide, as config/rbac has them
        // (other tests share them).
        "--set",
        "approvals.policy.enabled=false",
        "--set",
        "personas.enabled=false",
    ])
    .await?;
    let kubeconfig = std::env::temp_dir().join(format!("{}-operator.kubeconfig", ctx.namespace));
    ctx.cluster
        .service_account_kubeconfig(
            &ctx.client,
            &ctx.namespace,
            "lco-listacompra-operator",
            3600,
            &kubeconfig,
        )
        .await?;
    Ok(kubeconfig)
}

/// The label of the one backup set `pgbackrest info` lists under `annotation` (`key=value`).
fn annotated_set(database: &BackedUpPostgres, annotation: &str) -> anyhow::Result<String> {
    let info = database.info()?;
    let (key, value) = annotation.split_once('=').unwrap_or_default();
    let annotated: Vec<String> = info[0]["backup"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["annotation"][key].as_str() == Some(value))
        .filter_map(|b| b["label"].as_str().map(str::to_owned))
        .collect();
    match &annotated[..] {
        [label] => Ok(label.clone()),
        _ => anyhow::bail!("not one set annotated {annotation}: {info}"),
    }
}

/// A restore of the release `listacompra`'s database from `set` (the newest when `None`).
fn restore(name: &str, set: Option<&str>) -> ListaCompraRestore {
    ListaCompraRestore::new(
        name,
        ListaCompraRestoreSpec {
            release: "listacompra".to_owned(),
            backup_set: set.map(str::to_owned),
        },
    )
}

/// Approves the restore `restore` as the release manager `rita`, for the release's current
/// version and attempt.
async fn approve_restore(
    rita: &Identity,
    namespace: &str,
    stack: &Stack,
    restore: &str,
) -> anyhow::Result<()> {
    let client = rita.client().await?;
    let status = stack.release().await?.status.unwrap_or_default();
    let mut approval = e2e::approvals::approval(
        &format!("{restore}-release-manager"),
        "listacompra",
        status.current_version.as_deref().unwrap_or_default(),
        status.attempt.unwrap_or_default(),
        "release-manager",
        "rita",
    );
    approval.spec.restore = Some(restore.to_owned());
    approval.spec.restore_uid = Api::<ListaCompraRestore>::namespaced(client.clone(), namespace)
        .get(restore)
        .await?
        .metadata
        .uid;
    Api::<ListaCompraApproval>::namespaced(client, namespace)
        .create(&PostParams::default(), &approval)
        .await?;
    Ok(())
}

/// The restore `name` once it ended (refused, succeeded or failed), within [`RELEASED`].
async fn restore_ended(
    restores: &Api<ListaCompraRestore>,
    name: &str,
) -> anyhow::Result<ListaCompraRestore> {
    let started = Instant::now();
    loop {
        let restore = restores.get(name).await?;
        if restore
            .status
            .as_ref()
            .is_some_and(|s| s.completion_time.is_some())
        {
            return Ok(restore);
        }
        anyhow::ensure!(
            started.elapsed() < RELEASED,
            "restore {name} did not end within {RELEASED:?}: {:?}",
            restore.status
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `status.backups` once `done` holds of it (within [`BACKUPS_DUE`]).
async fn backups_when(
    stack: &Stack,
    log_dir: &std::path::Path,
    what: &str,
    done: impl Fn(&BackupsStatus) -> bool,
) -> anyhow::Result<BackupsStatus> {
    let started = Instant::now();
    loop {
        let backups = stack.release().await?.status.and_then(|s| s.backups);
        if let Some(b) = backups.as_ref().filter(|b| done(b)) {
            return Ok(b.clone());
        }
        anyhow::ensure!(
            started.elapsed() < BACKUPS_DUE,
            "no {what} succeeded within {BACKUPS_DUE:?}: status.backups is {backups:?}; pod \
             logs in {}",
            log_dir.join("pods").display()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The release once it is in `phase` (within [`RELEASED`]).
async fn phase_within(stack: &Stack, phase: Phase) -> anyhow::Result<ListaCompraRelease> {
    let started = Instant::now();
    loop {
        let release = stack.release().await?;
        let status = release.status.clone().unwrap_or_default();
        if status.phase == Some(phase) {
            return Ok(release);
        }
        anyhow::ensure!(
            started.elapsed() < RELEASED,
            "{} not {phase:?} within {RELEASED:?}: {status:?}",
            release.spec.version
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn operator_metrics(stack: &Stack) -> anyhow::Result<String> {
    let address = stack
        .operator
        .metrics_address()
        .ok_or_else(|| anyhow::anyhow!("the operator announced no metrics address"))?;
    Ok(reqwest::get(format!("http://{address}/metrics"))
        .await?
        .text()
        .await?)
}
