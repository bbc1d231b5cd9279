//! The plugin's one error type.

/// What can go wrong; every message says what was being done and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig (or in-cluster configuration).
    #[error("loading the kubeconfig: {0}")]
    Config(String),
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// The release does not exist.
    #[error(
        "ListaCompraRelease {namespace}/{name} not found (list them: kubectl get lcr -n {namespace})"
    )]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The API server ended a watch or answered without what was asked.
    #[error("{0}")]
    Cluster(String),
    /// The command makes no sense for the release as it stands.
    #[error("{0}")]
    Refused(String),
    /// Writing to the terminal failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The command does not apply to the release as it stands (as opposed to a cluster that
    /// could not be asked or refused).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Refused(_))
    }
}

/// The plugin's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a kube call's error with what was being done.
pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}
