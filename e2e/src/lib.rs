//! Harness for tests that need the real local cluster or the real backing services.
//!
//! Everything is started by the shell scripts in `e2e/scripts` (the same ones `make demo`
//! uses), which are idempotent: the first test of a run starts a component, later tests
//! and later runs reuse it. The scripts record every endpoint in one env file that this
//! crate reads, so the two sides never disagree about ports or paths.
//!
//! ```no_run
//! # async fn demo() {
//! e2e::cluster::with_namespace("smoke", |ctx| async move {
//!     let _pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ctx.api();
//!     Ok::<(), kube::Error>(())
//! })
//! .await;
//! # }
//! ```

pub mod access;
pub mod alerting;
pub mod api;
pub mod approvals;
pub mod attachments;
pub mod backups;
pub mod binaries;
pub mod cluster;
pub mod crd;
pub mod env;
mod error;
pub mod faults;
pub mod gotest;
pub mod helm;
pub mod identity;
pub mod load;
pub mod operator;
pub mod private;
pub mod runner;
pub mod sequence;
pub mod services;
pub mod stack;
pub mod story;
pub mod timeline;

pub use error::{Error, Result};

/// What a finished command printed (stdout, then stderr); an [`Error::Tool`] naming
/// `command`, with that text, when it did not exit 0.
pub(crate) fn printed(command: impl Into<String>, output: &std::process::Output) -> Result<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(Error::Tool {
            command: command.into(),
            message: text,
        })
    }
}
