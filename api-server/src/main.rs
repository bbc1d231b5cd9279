//! `listacompra-api`: the ListaCompra HTTP API, its workers and its migrations.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use listacompra_api::config::{self, env_vars};
use listacompra_api::{app, migrate, seed, smoke, store};
use listacompra_telemetry::LogFormat;

/// mimalloc, not the system allocator: glibc's keeps the password hasher's freed 19 MiB blocks
/// and grows an arena per thread under load (see the `mimalloc` line of the workspace's
/// Cargo.toml and `make bench-abuse`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "listacompra-api",
    version,
    about = "The ListaCompra shopping-list API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (default); also runs the workers unless RUN_WORKER=false.
    Serve,
    /// Run only the outbox relay and the AI worker (the `<release>-worker` pods), with
    /// `/health`, `/ready` and `/metrics` on PORT.
    Worker,
    /// Move the schema to a revision (default: the newest), up or down, and report it. A
    /// move down across a revision whose down step loses data is refused before any step
    /// runs (unless MIGRATION_ALLOW_IRREVERSIBLE=true).
    Migrate {
        /// Target schema revision (a migration number; 0 = empty).
        #[arg(long)]
        to: Option<i64>,
        /// Print the steps from the database's revision to the target, each with whether it
        /// can be reverted, and change nothing.
        #[arg(long)]
        plan: bool,
    },
    /// Use a running API as a user would (register, log in, a list with an item, AI
    /// suggestions, clean up) and exit non-zero naming the first step that fails. The operator
    /// runs it as the release's smoke-test Job.
    Smoke {
        /// Base URL of the API.
        #[arg(long, env = "SMOKE_BASE_URL")]
        base_url: String,
        /// Seconds to wait for one answer.
        #[arg(long, env = "SMOKE_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
        request_timeout_seconds: u64,
        /// Seconds to wait for the AI suggestions to be ready.
        #[arg(long, env = "SMOKE_SUGGESTION_TIMEOUT_SECONDS", default_value_t = 60)]
        suggestion_timeout_seconds: u64,
        /// Seconds to wait for `/health` and `/ready` to answer 200 before the first step
        /// fails (a rolled-back version or a recovering dependency takes a moment).
        #[arg(long, env = "SMOKE_READY_TIMEOUT_SECONDS", default_value_t = 30)]
        ready_timeout_seconds: u64,
    },
    /// Create demo data (idempotent).
    Seed {
        /// The demo user's password.
        #[arg(long, env = "SEED_PASSWORD", default_value = "password")]
        password: String,
    },
}

/// Listens on every address at `port` (`PORT`).
async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PORT): {e}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = env_vars().config()?;
            let listener = listen(config.port).await?;
            let running = app::start(&config, listener, config.run_worker).await?;
            app::stop_on_signals(running.switch());
            running.wait().await;
            tracing::info!("stopped");
        }
        Command::Worker => {
            let config = env_vars().config()?;
            app::run_worker(&config, listen(config.port).await?).await?;
        }
        Command::Migrate { to, plan: true } => {
            let url = env_vars().database_url()?;
            let pool = store::pool(&url, 2, None)?;
            let from = migrate::current(&pool).await?;
            let target = to.unwrap_or_else(migrate::head);
            println!("schema revision {from}; to {target}:");
            for step in migrate::plan(from, target) {
                let direction = if step.up { "apply" } else { "revert" };
                match step.irreversible {
                    Some(why) => println!("  {direction} {}: irreversible: {why}", step.revision),
                    None => println!("  {direction} {}: reversible", step.revision),
                }
            }
            pool.close().await;
        }
        Command::Migrate { to, plan: false } => {
            let url = env_vars().database_url()?;
            let settings = env_vars().migration_settings()?;
            let pool = store::pool(&url, 2, None)?;
            let outcome = migrate::migrate_with(&pool, to, &settings).await?;
            tracing::info!(
                from = outcome.from,
                to = outcome.to,
                head = migrate::head(),
                "migrated"
            );
            println!(
                "schema revision {} (was {}; this binary knows up to {})",
                outcome.to,
                outcome.from,
                migrate::head()
            );
            pool.close().await;
        }
        Command::Smoke {
            base_url,
            request_timeout_seconds,
            suggestion_timeout_seconds,
            ready_timeout_seconds,
        } => {
            let config = smoke::SmokeConfig {
                base_url,
                request_timeout: Duration::from_secs(request_timeout_seconds),
                suggestion_timeout: Duration::from_secs(suggestion_timeout_seconds),
                ready_timeout: Duration::from_secs(ready_timeout_seconds),
            };
            println!("smoke test against {}", config.base_url);
            let steps = smoke::run(&config, |step| {
                println!("ok   {:<20} {} ms", step.name, step.took.as_millis());
            })
            .await?;
            println!("smoke test passed: {} steps", steps.len());
        }
        Command::Seed { password } => {
            let url = env_vars().database_url()?;
            let pool = store::pool(&url, 2, None)?;
            let created = seed::seed(&pool, &password).await?;
            println!(
                "{} {}",
                if created {
                    "created"
                } else {
                    "already present:"
                },
                seed::DEMO_EMAIL
            );
            pool.close().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    config::load_dotenv();
    // JSON log lines; traces over OTLP when the OTEL_* variables ask for them.
    let telemetry = match listacompra_telemetry::init(
        "listacompra-api",
        LogFormat::Json,
        "info,sqlx=warn,lapin=warn",
    ) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let outcome = run(cli).await;
    // Sends the spans still buffered before the process ends.
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "listacompra-api failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
