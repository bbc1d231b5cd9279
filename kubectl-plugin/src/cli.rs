//! The command line: `kubectl listacompra <command> RELEASE [flags]`.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # The release's live tree: attempt, phase, Jobs, Deployments, pods, gates, approvals
  kubectl listacompra get lc -n production -w

  # A pipeline's gate: waits for the verdict, exits 0 when the release succeeded
  kubectl listacompra status lc -n production --timeout 30m

  # Approve the attempt waiting for QA, as yourself
  kubectl listacompra approve lc --role qa

  # Stop the attempt in flight and roll back now
  kubectl listacompra abort lc

  # What the migration said
  kubectl listacompra logs lc migration

Exit codes:
  0  done (status: the release succeeded)
  1  status: the release rolled back or failed
  2  wrong usage
  3  status: timed out before a verdict
  4  the cluster could not be asked, or its API server refused (RBAC, admission)
  5  the command does not apply to the release as it stands (not found, nothing to abort)";

/// Drives ListaCompraReleases: a live tree, a status that waits for the verdict, approvals,
/// retry, pause, resume, abort and history.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-listacompra",
    bin_name = "kubectl listacompra",
    version,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Namespace of the release (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people: colours and symbols on a terminal, plain text when piped.
    Text,
    /// For programs.
    Json,
}

/// The Jobs of an attempt whose logs `logs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobKind {
    /// The migration Job (`status.migrationJob`).
    Migration,
    /// The schema revert Job of a rollback (`status.revertJob`).
    Revert,
    /// The smoke-test Job (`status.smokeTest.job`).
    Smoke,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the release as a tree: attempt and phase, Jobs, Deployments and pods, gates,
    /// approvals.
    #[command(after_help = "Example:\n  kubectl listacompra get lc -w")]
    Get {
        /// Name of the ListaCompraRelease.
        release: String,
        /// Keep watching and redraw on every change.
        #[arg(short, long)]
        watch: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Wait for the current attempt's verdict, printing one line per step: exits 0 when it
    /// succeeded, 1 (naming the reason) when it rolled back or failed, 3 on timeout.
    #[command(
        after_help = "Example (a pipeline step):\n  kubectl listacompra status lc --timeout 20m || exit 1"
    )]
    Status {
        /// Name of the ListaCompraRelease.
        release: String,
        /// How long to wait, e.g. `90s`, `30m`, `2h`.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List the past attempts: version, outcome, reason, duration, approvers.
    History {
        /// Name of the ListaCompraRelease.
        release: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Approve the attempt waiting in AwaitingApproval (or, with --restore, a restore of the
    /// release's database), as yourself, in one role (creates a ListaCompraApproval; the API
    /// server checks you may approve as that role).
    #[command(
        after_help = "Examples:\n  kubectl listacompra approve lc --role product-owner\n  kubectl listacompra approve lc --role release-manager --restore corrupt-lists"
    )]
    Approve {
        /// Name of the ListaCompraRelease.
        release: String,
        /// The role you approve as (one of spec.approvals.requiredRoles).
        #[arg(long)]
        role: String,
        /// Why, for people (a ticket, the test report).
        #[arg(long)]
        comment: Option<String>,
        /// Approve this ListaCompraRestore of the release instead of its attempt (it waits
        /// in phase Pending for its approvals).
        #[arg(long)]
        restore: Option<String>,
    },
    /// Release the same version again after a rollback or failure (sets a new
    /// spec.retryToken: a change of the spec).
    Retry {
        /// Name of the ListaCompraRelease.
        release: String,
    },
    /// Stop the release at its next step (sets spec.paused: a change of the spec).
    Pause {
        /// Name of the ListaCompraRelease.
        release: String,
    },
    /// Let a paused release go on (clears spec.paused: a change of the spec).
    Resume {
        /// Name of the ListaCompraRelease.
        release: String,
    },
    /// Stop the attempt in flight and roll back to the stable version now (an annotation
    /// naming the attempt; the spec is not touched).
    Abort {
        /// Name of the ListaCompraRelease.
        release: String,
    },
    /// Print the logs of the current attempt's migration, schema revert or smoke-test Job
    /// (every pod it ran, oldest first).
    #[command(after_help = "Example:\n  kubectl listacompra logs lc migration --tail 50")]
    Logs {
        /// Name of the ListaCompraRelease.
        release: String,
        /// Which Job.
        #[arg(value_enum)]
        job: JobKind,
        /// Only the last lines of each pod.
        #[arg(long)]
        tail: Option<i64>,
    },
    /// Print a shell completion script, e.g. `source <(kubectl-listacompra completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The release the command is about, if it names one.
    pub fn release(&self) -> Option<&str> {
        match self {
            Self::Get { release, .. }
            | Self::Status { release, .. }
            | Self::History { release, .. }
            | Self::Approve { release, .. }
            | Self::Retry { release }
            | Self::Pause { release }
            | Self::Resume { release }
            | Self::Abort { release }
            | Self::Logs { release, .. } => Some(release),
            Self::Completion { .. } => None,
        }
    }
}

/// `90s`, `30m`, `2h` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 90s, 30m or 2h"))?;
    let seconds = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        _ => return Err(format!("`{text}`: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5d").unwrap_err().contains("s, m or h"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
