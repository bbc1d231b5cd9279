//! The commands: each reads or changes releases through the API server with the user's own
//! credentials (so RBAC and admission decide what they may do).

use std::process::ExitCode;

use kube::api::{Api, ListParams};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};
use listacompra_crds::ListaCompraRelease;

use crate::cli::{Cli, Command};
use crate::error::{self, Error, Result};

mod abort;
mod approve;
mod edit;
mod get;
mod history;
mod logs;
mod status;

/// Label selector of everything the operator created for `release`.
pub fn children_selector(release: &str) -> String {
    format!("listacompra.app/release={release},app.kubernetes.io/managed-by=listacompra-operator")
}

/// The cluster, the namespace the command works in, and the release it names.
#[derive(Clone)]
pub struct Target {
    /// A client with the user's credentials.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
    /// The release's name.
    pub release: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.release)
    }
}

impl Target {
    /// The releases of the namespace.
    pub fn releases(&self) -> Api<ListaCompraRelease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Any namespaced kind of the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads the release, or says it does not exist.
    pub async fn release(&self) -> Result<ListaCompraRelease> {
        self.releases()
            .get_opt(&self.release)
            .await
            .map_err(error::kube(format!("reading ListaCompraRelease {self:?}")))?
            .ok_or_else(|| Error::NotFound {
                namespace: self.namespace.clone(),
                name: self.release.clone(),
            })
    }

    /// Lists the children of kind `K` the operator created for the release; `None` when the
    /// user may not list them (an approver reads releases, not their pods).
    pub async fn children<K>(&self) -> Result<Option<Vec<K>>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = ListParams::default().labels(&children_selector(&self.release));
        match self.api::<K>().list(&params).await {
            Ok(list) => Ok(Some(list.items)),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(None),
            Err(source) => Err(Error::Kube {
                action: format!("listing the {} of {self:?}", K::plural(&Default::default())),
                source,
            }),
        }
    }
}

/// Runs the command; the exit code says how it went (see the `--help` of the command line).
pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Completion { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(
            *shell,
            &mut command,
            "kubectl-listacompra",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let target = connect(&cli).await?;
    match cli.command {
        Command::Get { watch, output, .. } => get::run(&target, watch, output).await,
        Command::Status { timeout, .. } => status::run(&target, timeout).await,
        Command::History { output, .. } => history::run(&target, output).await,
        Command::Approve {
            role,
            comment,
            restore,
            ..
        } => match restore {
            Some(restore) => approve::restore(&target, &role, &restore, comment).await,
            None => approve::run(&target, &role, comment).await,
        },
        Command::Retry { .. } => edit::retry(&target).await,
        Command::Pause { .. } => edit::pause(&target, true).await,
        Command::Resume { .. } => edit::pause(&target, false).await,
        Command::Abort { .. } => abort::run(&target).await,
        Command::Logs { job, tail, .. } => logs::run(&target, job, tail).await,
        Command::Completion { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// A client from the kubeconfig (its `--context`, else the current one; in a pod, the
/// pod's service account), and the namespace (`-n`, else the context's).
async fn connect(cli: &Cli) -> Result<Target> {
    let config = match &cli.context {
        Some(context) => Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        })
        .await
        .map_err(|e| Error::Config(format!("context {context}: {e}")))?,
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Target {
        client,
        namespace,
        release: cli.command.release().unwrap_or_default().to_owned(),
    })
}
