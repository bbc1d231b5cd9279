use std::path::PathBuf;

/// Everything that can go wrong while bringing up or talking to the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A start script exited non-zero; its stderr already went to the test output.
    #[error("`{script} {args}` failed with {status}; see its message above")]
    Script {
        /// The script that failed.
        script: PathBuf,
        /// Its arguments, joined by spaces.
        args: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// A start script could not be run at all.
    #[error("could not run {script}: {source}")]
    Spawn {
        /// The script.
        script: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The env file written by the scripts could not be read.
    #[error("could not read the environment file {path}: {source}")]
    EnvFile {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The env file lacks a key the scripts should have written.
    #[error("{key} is missing from {path}; the start script did not record it")]
    MissingKey {
        /// The key.
        key: String,
        /// The env file.
        path: PathBuf,
    },
    /// The kubeconfig could not be loaded.
    #[error("invalid kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// A manifest in the repository could not be parsed.
    #[error("invalid manifest {path}: {message}")]
    Manifest {
        /// Its path.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Something did not reach the awaited state.
    #[error("waiting for {what} failed: {message}")]
    Wait {
        /// What was awaited.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// A tool (helm, kubectl) exited non-zero.
    #[error("`{command}` failed: {message}")]
    Tool {
        /// The command line.
        command: String,
        /// What it printed.
        message: String,
    },
    /// A file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the harness was doing.
        action: String,
        /// The client error.
        source: kube::Error,
    },
    /// A local file, process or socket operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What the harness was doing.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A workspace binary the tests run has not been built.
    #[error("{path} does not exist; {fix}")]
    MissingBinary {
        /// Where it was expected.
        path: PathBuf,
        /// How to build it.
        fix: String,
    },
    /// The workload runner could not run a pod as its spec says.
    #[error("{message}")]
    Workload {
        /// What is wrong.
        message: String,
    },
    /// An HTTP call (to the API server, the operator or Prometheus) failed.
    #[error("HTTP call failed while {action}: {source}")]
    Http {
        /// What the harness was doing.
        action: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// The full-stack story did not go as it must.
    #[error("{message}")]
    Check {
        /// What was expected and what happened.
        message: String,
    },
    /// A database call failed.
    #[error("database call failed while {action}: {source}")]
    Database {
        /// What the harness was doing.
        action: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

/// Result with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
