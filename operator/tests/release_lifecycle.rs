//! More of the release flow on the real control plane: deadlines, supersession, no-data
//! policies, restarts, leader election and deletion.

mod support;

use std::time::Duration;

use anyhow::{Result, ensure};
use e2e::cluster::{TestContext, eventually, with_namespace};
use e2e::env::Component;
use e2e::services::Services;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use listacompra_crds::status::{Outcome, condition};
use listacompra_crds::{ListaCompraRelease, Phase};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde_json::json;
use support::{
    Endpoint, Operator, RELEASE_SECRETS, apply, apply_release, condition as cond, create_secret,
    deployed_image, event_reasons, expect_events, jobs, release, wait_phase,
};

const TIMEOUT: Duration = Duration::from_secs(90);
const IMAGE: &str = "registry.example/listacompra/api";

async fn released(
    ctx: &TestContext,
    operator: &Operator,
    version: &str,
    phase: Phase,
) -> Result<ListaCompraRelease> {
    let result = wait_phase(ctx, version, phase, TIMEOUT).await;
    if result.is_err() {
        eprintln!("operator log:\n{}", operator.log());
    }
    result
}

#[tokio::test]
async fn a_rollout_that_never_becomes_available_rolls_back_at_the_deadline() {
    with_namespace("op-deadline", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        // 1.1.0 asks for more CPU than any node has: its pods never schedule.
        let mut manifest = release("1.1.0", 2, &endpoint.url);
        manifest["spec"]["pod"] = json!({ "resources": { "requests": { "cpu": "1000" } } });
        manifest["spec"]["progressDeadlineSeconds"] = json!(30);
        apply(&ctx, &manifest).await?;
        let lc = released(&ctx, &operator, "1.1.0", Phase::RolledBack).await?;
        let (_, reason, message) = cond(&lc, condition::DEGRADED);
        ensure!(
            ["ProgressDeadlineExceeded", "RolloutFailed"].contains(&reason.as_str()),
            "{reason}: {message}"
        );
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.0.0"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_new_version_during_verification_supersedes_the_old_one() {
    with_namespace("op-supersede", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        // 1.1.0 needs 60 passing health checks: it will still be verifying.
        let mut slow = release("1.1.0", 2, &endpoint.url);
        slow["spec"]["health"]["successThreshold"] = json!(60);
        apply(&ctx, &slow).await?;
        released(&ctx, &operator, "1.1.0", Phase::Verifying).await?;
        apply(&ctx, &release("1.2.0", 3, &endpoint.url)).await?;
        let lc = released(&ctx, &operator, "1.2.0", Phase::Succeeded).await?;
        let history: Vec<(String, Outcome)> = lc
            .status
            .unwrap_or_default()
            .history
            .iter()
            .map(|h| (h.version.clone(), h.outcome))
            .collect();
        ensure!(
            history.starts_with(&[
                ("1.2.0".to_owned(), Outcome::Succeeded),
                ("1.1.0".to_owned(), Outcome::Superseded)
            ]),
            "{history:?}"
        );
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.2.0"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn no_data_passes_or_fails_as_the_kpi_says() {
    with_namespace("op-no-data", |ctx| async move {
        let services = Services::start(&[Component::Prometheus]).await?;
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        let analysis = |on_no_data: &str| {
            json!({
                "prometheus": { "address": services.prometheus_url().unwrap_or_default(), "timeoutSeconds": 2 },
                "initialDelaySeconds": 0, "intervalSeconds": 1, "measurements": 2,
                "kpis": [{
                    "name": "retries-per-hour",
                    "query": "sum(lc_e2e_series_that_does_not_exist{namespace=\"{{namespace}}\"})",
                    "max": 5, "onNoData": on_no_data
                }]
            })
        };
        let mut passing = release("1.1.0", 2, &endpoint.url);
        passing["spec"]["analysis"] = analysis("Pass");
        apply(&ctx, &passing).await?;
        released(&ctx, &operator, "1.1.0", Phase::Succeeded).await?;

        let mut failing = release("1.2.0", 3, &endpoint.url);
        failing["spec"]["analysis"] = analysis("Fail");
        apply(&ctx, &failing).await?;
        let lc = released(&ctx, &operator, "1.2.0", Phase::RolledBack).await?;
        let (_, reason, message) = cond(&lc, condition::DEGRADED);
        ensure!(reason == "KpiBreached" && message.contains("no data"), "{reason}: {message}");
        ensure!(deployed_image(&ctx).await? == format!("{IMAGE}:1.1.0"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_restarted_operator_resumes_without_a_second_job_or_event_storm() {
    with_namespace("op-restart", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let mut operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        let mut manifest = release("1.0.0", 1, &endpoint.url);
        manifest["spec"]["health"]["successThreshold"] = json!(8);
        apply(&ctx, &manifest).await?;
        released(&ctx, &operator, "1.0.0", Phase::Verifying).await?;
        operator.kill().await?;
        let events_before = event_reasons(&ctx).await?;
        let operator = Operator::start(&ctx)?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        ensure!(
            jobs(&ctx, "migrate").await?.len() == 1,
            "a second migration Job was created"
        );
        let events = event_reasons(&ctx).await?;
        let started = events.iter().filter(|e| *e == "ReleaseStarted").count();
        ensure!(started == 1, "ReleaseStarted {started} times: {events:?}");
        ensure!(
            events.len() <= events_before.len() + 3,
            "event storm after restart: {events_before:?} → {events:?}"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_release_waits_for_the_secrets_it_names_and_starts_when_they_appear() {
    with_namespace("op-references", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        // Every Secret but the database's exists, as when External Secrets or sealed-secrets
        // create it after a GitOps sync.
        for (name, key) in RELEASE_SECRETS.iter().filter(|(n, _)| *n != "db") {
            create_secret(&ctx, name, key).await?;
        }
        apply_release(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        let api: Api<ListaCompraRelease> = ctx.api();
        let waiting = eventually(
            "the release to say it waits for the missing Secret",
            TIMEOUT,
            || {
                let api = api.clone();
                async move {
                    let lc = api.get("lc").await.ok()?;
                    let (status, reason, message) = cond(&lc, condition::RECONCILING);
                    (status == "True" && reason == "WaitingForReferences").then_some((lc, message))
                }
            },
        )
        .await;
        let (lc, message) = match waiting {
            Ok(found) => found,
            Err(e) => anyhow::bail!("{e}; operator log:\n{}", operator.log()),
        };
        ensure!(
            message.contains("Secret db") && message.contains("spec.env.databaseUrl"),
            "the condition does not name the missing Secret and its field: {message}"
        );
        ensure!(
            lc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Pending),
            "not Pending while waiting: {:?}",
            lc.status
        );
        expect_events(&ctx, &["ReferencesMissing"]).await?;
        ensure!(
            jobs(&ctx, "migrate").await?.is_empty(),
            "a migration Job was launched although its Secret is missing"
        );
        ensure!(
            ctx.api::<Deployment>().get_opt("lc-api").await?.is_none(),
            "pods were rolled out although their Secret is missing"
        );
        // The Secret arrives: the release starts by itself, without a retry token.
        create_secret(&ctx, "db", "url").await?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        ensure!(
            jobs(&ctx, "migrate").await?.len() == 1,
            "not one migration Job"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// Starts replica `name` with leader election and a lease of `lease_seconds`.
fn replica(ctx: &TestContext, name: &str, lease_seconds: &str) -> Result<Operator> {
    Operator::start_with(
        ctx,
        &[
            ("LEADER_ELECTION", "true"),
            ("LEASE_DURATION_SECONDS", lease_seconds),
            ("POD_NAME", name),
        ],
    )
}

/// Waits until replica `name` holds the operator's Lease.
async fn leads(ctx: &TestContext, name: &str) -> Result<()> {
    let leases: Api<Lease> = ctx.api();
    eventually(&format!("{name} to lead"), TIMEOUT, || {
        let leases = leases.clone();
        async move {
            let holder = leases
                .get_opt("listacompra-operator")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity);
            (holder.as_deref() == Some(name)).then_some(())
        }
    })
    .await
    .map_err(anyhow::Error::msg)
}

#[tokio::test]
async fn only_the_leader_acts_and_another_replica_takes_over() {
    with_namespace("op-leader", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let mut first = replica(&ctx, "replica-a", "4")?;
        leads(&ctx, "replica-a").await?;
        let second = replica(&ctx, "replica-b", "4")?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        released(&ctx, &first, "1.0.0", Phase::Succeeded).await?;
        ensure!(
            !second.log().contains("applied Deployment"),
            "the standby acted:\n{}",
            second.log()
        );

        first.kill().await?;
        leads(&ctx, "replica-b").await?;
        apply(&ctx, &release("1.1.0", 2, &endpoint.url)).await?;
        released(&ctx, &second, "1.1.0", Phase::Succeeded).await?;
        ensure!(second.log().contains("became leader"));
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// A leader asked to stop (SIGTERM) gives its Lease up: the standby takes over at once, not
/// after the lease duration (120 s here, longer than the test waits).
#[tokio::test]
async fn a_stopping_leader_releases_its_lease() {
    with_namespace("op-release-lease", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let mut first = replica(&ctx, "replica-a", "120")?;
        leads(&ctx, "replica-a").await?;
        let second = replica(&ctx, "replica-b", "120")?;
        let exit = first.terminate().await?;
        ensure!(
            exit.success(),
            "replica-a exited with {exit}:\n{}",
            first.log()
        );
        ensure!(
            first.log().contains("released the leader Lease"),
            "replica-a did not release its Lease:\n{}",
            first.log()
        );
        // Well before the 120 s lease could expire (TIMEOUT is shorter).
        leads(&ctx, "replica-b")
            .await
            .map_err(|e| anyhow::anyhow!("{e}; replica-b log:\n{}", second.log()))?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// A replica asked to stop at any moment of its life — while connecting, while a candidate,
/// just after winning, while its controller starts — exits 0 promptly and gives up any Lease
/// it won. The moments are drawn from a seed printed first (`LC_STOP_SEED=<seed>` replays).
#[tokio::test]
async fn a_replica_stopped_at_any_moment_exits_cleanly() {
    const ROUNDS: usize = 10;
    with_namespace("op-stop-anytime", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let seed = std::env::var("LC_STOP_SEED").map_or_else(
            |_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            },
            |s| s.trim().parse().expect("LC_STOP_SEED is a number"),
        );
        println!("stop seed {seed} (replay: LC_STOP_SEED={seed})");
        let mut rng = Pcg64::seed_from_u64(seed);
        for round in 0..ROUNDS {
            let name = format!("replica-{round}");
            let mut replica = replica(&ctx, &name, "120")?;
            // Half the rounds stop it some time after it logged its start (connecting,
            // campaigning), half some time after it won the Lease (controller starting).
            let after_lead = rng.next_u64() % 2 == 0;
            let delay = Duration::from_millis(rng.next_u64() % 250);
            let moment = if after_lead {
                leads(&ctx, &name).await?;
                format!("{} ms after it led", delay.as_millis())
            } else {
                eventually(&format!("{name} to log its start"), TIMEOUT, || {
                    let started = replica.log().contains("\"msg\":\"starting\"");
                    async move { started.then_some(()) }
                })
                .await
                .map_err(anyhow::Error::msg)?;
                format!("{} ms after it started", delay.as_millis())
            };
            tokio::time::sleep(delay).await;
            let exit = replica.terminate().await.map_err(|e| {
                anyhow::anyhow!("round {round}, seed {seed}: stopped {moment}: {e}")
            })?;
            let log = replica.log();
            ensure!(
                exit.success(),
                "round {round}, seed {seed}: stopped {moment}, exited with {exit}:\n{log}"
            );
            ensure!(
                !log.contains("became leader") || log.contains("released the leader Lease"),
                "round {round}, seed {seed}: stopped {moment}, led but kept the Lease:\n{log}"
            );
            // Whatever it knew when it stopped, the Lease does not name it any more.
            let holder = ctx
                .api::<Lease>()
                .get_opt("listacompra-operator")
                .await?
                .and_then(|l| l.spec?.holder_identity);
            ensure!(
                holder.as_deref() != Some(name.as_str()),
                "round {round}, seed {seed}: stopped {moment}, the Lease still names it:\n{log}"
            );
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_release_removes_what_it_created() {
    with_namespace("op-delete", |ctx| async move {
        e2e::crd::install_crds(&ctx.client).await?;
        let operator = Operator::start(&ctx)?;
        let endpoint = Endpoint::start().await?;
        apply(&ctx, &release("1.0.0", 1, &endpoint.url)).await?;
        released(&ctx, &operator, "1.0.0", Phase::Succeeded).await?;
        ctx.api::<ListaCompraRelease>()
            .delete("lc", &DeleteParams::foreground())
            .await?;
        // Everything carries an owner reference: the garbage collector removes it all.
        eventually("the children to be gone", TIMEOUT, || {
            let (deployments, services, jobs) = (
                ctx.api::<Deployment>(),
                ctx.api::<Service>(),
                ctx.api::<Job>(),
            );
            async move {
                let d = deployments
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .len();
                let s = services
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .len();
                let j = jobs.list(&ListParams::default()).await.ok()?.items.len();
                (d + s + j == 0).then_some(())
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;
        // The operator forgets it (its backoff count included).
        eventually("the operator to forget the release", TIMEOUT, || {
            let log = operator.log();
            async move { log.contains("\"msg\":\"release gone\"").then_some(()) }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}:\n{}", operator.log()))?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
