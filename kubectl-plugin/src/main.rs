//! `kubectl listacompra`: where platform teams and pipelines meet the ListaCompra release
//! operator. A live tree of a release (`get -w`), a status that waits for the verdict and
//! exits non-zero on a rollback (a pipeline's gate), approvals, retry, pause, resume, abort
//! and history. Installed as `kubectl-listacompra` on the PATH, kubectl runs it as
//! `kubectl listacompra`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod error;
mod gitops;
mod tree;
mod verdict;

/// Exit code when the cluster could not be asked, or its API server refused (RBAC, admission).
const ERROR: u8 = 4;
/// Exit code when the command does not apply to the release as it stands (not found, nothing
/// to abort or retry, not waiting for approvals).
const REFUSED: u8 = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(if error.is_refusal() { REFUSED } else { ERROR })
        }
    }
}
