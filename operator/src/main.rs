//! `listacompra-operator`: the controller for `ListaCompraRelease` resources.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use listacompra_operator::check;
use listacompra_operator::controller::{self, Context};
use listacompra_operator::leader::{self, Elector, Timing};
use listacompra_operator::server;
use listacompra_operator::shutdown::Stop;
use listacompra_operator::telemetry::{self, LogFormat, Metrics};
use tracing::{error, info};

/// Releases the ListaCompra API: migrations, rollout, health and KPI gates, rollback.
///
/// Connects in-cluster, or through KUBECONFIG / ~/.kube/config outside a cluster.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Without a command, the operator runs.
    #[command(subcommand)]
    command: Option<Command>,
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Take a Lease before acting, so that only one replica acts.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "listacompra-operator")]
    lease_name: String,
    /// This replica's identity in the Lease: the pod name (from the downward API), else the
    /// host name with a random suffix.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Hosts besides each release's own Service that the gates may send credentials from
    /// Secrets to (comma-separated `host`, `host:port` or `*.domain`): a Prometheus with
    /// authentication, an external health endpoint. A release alone cannot add to it.
    #[arg(long, env = "GATE_ALLOWED_HOSTS", value_delimiter = ',')]
    gate_allowed_hosts: Vec<String>,
    /// Watch the metadata of Secrets, so that a changed Secret rolls the API pods that
    /// consume it, verified by the health gate. Needs `list` and `watch` on Secrets.
    #[arg(long, env = "WATCH_SECRETS", default_value_t = false, action = clap::ArgAction::Set)]
    watch_secrets: bool,
    /// Seconds a Lease stays valid without renewal. The leader stops acting after 2/3 of it
    /// without a successful renewal, before another replica may take over.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Checks an installed operator and exits 0 when it works (the chart's `helm test`):
    /// the CRDs are served, a replica answers /readyz through the metrics Service, and a
    /// leader renews the Lease.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Base URL of the operator's metrics Service, e.g.
    /// `http://listacompra-operator-metrics.listacompra-system.svc:8080`.
    #[arg(long, env = "OPERATOR_METRICS_URL")]
    metrics_url: url::Url,
    /// The leader Lease to watch for a renewal; without it, leader election is not checked.
    #[arg(long, env = "LEASE_NAME")]
    lease_name: Option<String>,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds the leader may take to renew (the operator's lease duration).
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
}

/// `listacompra-operator check`: one line per finding; exit 0 when all hold.
async fn check(args: CheckArgs) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            println!("FAIL cannot connect to Kubernetes (in-cluster or KUBECONFIG): {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = check::Target {
        metrics_url: args.metrics_url,
        lease: args.lease_name.map(|name| (args.lease_namespace, name)),
        lease_duration: Duration::from_secs(args.lease_duration_seconds),
    };
    let findings = check::run(&client, &target).await;
    for finding in &findings {
        println!("{finding}");
    }
    if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Check(check_args)) = args.command.take() {
        return check(check_args).await;
    }
    // Before anything slow, so that a SIGTERM at any later moment is a stop request, never
    // lost.
    let stop = match Stop::on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(args.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(args, stop).await;
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, stop: Stop) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot connect to Kubernetes (in-cluster or KUBECONFIG): {e}")
    })?;
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let (bound, http) = server::serve(args.metrics_address, metrics.clone(), ready.clone())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (--metrics-address): {e}",
                args.metrics_address
            )
        })?;
    tokio::spawn(http);
    let identity = leader::identity(args.identity.as_deref());
    info!(metrics = %bound, identity = %identity, namespaces = ?args.namespaces, "starting");
    ready.store(true, Ordering::Relaxed);

    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), Some(identity.clone()))
            .with_allowed_hosts(args.gate_allowed_hosts.clone())
            .with_secret_rotation(args.watch_secrets),
    );
    if !args.leader_election {
        metrics.leader.set(1);
        controller::run(ctx, args.namespaces, stop).await;
        return Ok(());
    }
    let elector = Elector::new(
        client,
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        Timing::for_lease(Duration::from_secs(args.lease_duration_seconds)),
    );
    tokio::select! {
        acquired = elector.acquire() => acquired?,
        () = stop.requested() => {
            // A campaign write may have taken the Lease as the stop came, or after its call
            // timed out here: give it up if it names this replica, so a successor need not
            // wait for it to expire.
            elector.release().await;
            return Ok(());
        }
    }
    metrics.leader.set(1);
    tokio::select! {
        // The controller ends on a stop request: give the Lease up so a successor takes over
        // at once instead of waiting for it to expire.
        () = controller::run(ctx, args.namespaces, stop) => {
            elector.release().await;
            Ok(())
        }
        () = elector.hold() => Err(anyhow::anyhow!("lost the leader Lease; exiting so that only the new leader acts")),
    }
}
