//! The operator's error type.

/// Everything a reconcile can fail on. Each is retried with backoff; none panics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A release without a namespace (cannot happen for a namespaced kind).
    #[error("release {0} has no namespace")]
    MissingNamespace(String),
    /// A Secret or key the spec refers to is missing or not UTF-8.
    #[error("secret {name} key {key}: {problem}")]
    Secret {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// Credentials may not be sent where the release says (see `gates::egress`).
    #[error("{0}")]
    Refused(String),
    /// A Kubernetes API call did not answer in time.
    #[error("kubernetes API call timed out while {0}")]
    Timeout(String),
}

impl Error {
    /// Short reason for the `reconcile_errors_total{reason}` metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "conflict",
            Self::Kube { .. } => "kube_api",
            Self::MissingNamespace(_) => "invalid_object",
            Self::Secret { .. } => "secret",
            Self::Timeout(_) => "timeout",
            Self::Refused(_) => "refused",
        }
    }
}

/// Result with the operator [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a kube error with what the operator was doing.
pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}
