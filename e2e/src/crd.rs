//! Installing the project's CRDs, from the YAML committed under `config/crd/`.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use crate::env::repo_root;
use crate::{Error, Result};

/// Path of the committed `ListaCompraRelease` CRD, relative to the repository root.
pub const RELEASE_CRD: &str = "config/crd/listacompra.app_listacomprareleases.yaml";
/// Path of the committed `ListaCompraApproval` CRD, relative to the repository root.
pub const APPROVAL_CRD: &str = "config/crd/listacompra.app_listacompraapprovals.yaml";

/// Path of the committed `ListaCompraRestore` CRD, relative to the repository root.
pub const RESTORE_CRD: &str = "config/crd/listacompra.app_listacomprarestores.yaml";

/// Applies the project's committed CRDs, `ListaCompraRelease`, `ListaCompraApproval` and
/// `ListaCompraRestore` (server-side apply, idempotent; the operator watches them), and
/// waits until the API server reports each Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    for file in [RELEASE_CRD, APPROVAL_CRD, RESTORE_CRD] {
        install_crd(client, file).await?;
    }
    Ok(())
}

async fn install_crd(client: &Client, file: &str) -> Result<()> {
    let path = repo_root().join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::EnvFile {
        path: path.clone(),
        source,
    })?;
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let kube_error = |action: &str| {
        let action = format!("{action} CRD {name}");
        move |source| Error::Kube { action, source }
    };
    api.patch(
        &name,
        &PatchParams::apply("listacompra-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(kube_error("applying"))?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(Duration::from_secs(60), established).await {
        Ok(result) => result.map(|_| ()).map_err(|e| Error::Wait {
            what: format!("CRD {name} to be Established"),
            message: e.to_string(),
        }),
        Err(_) => Err(Error::Wait {
            what: format!("CRD {name} to be Established"),
            message: "timed out after 60s".to_owned(),
        }),
    }
}

/// The smallest valid release named `name` (no namespace): version 1.0.0 of an image in a
/// registry that needs no pull Secret, its environment from Secrets `db`, `redis`,
/// `rabbitmq` and `jwt`, schema revision 3.
pub fn minimal_release(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "listacompra.app/v1alpha1",
        "kind": "ListaCompraRelease",
        "metadata": { "name": name },
        "spec": {
            "version": "1.0.0",
            "image": { "repository": "registry.example/listacompra/api" },
            "env": {
                "databaseUrl": { "name": "db", "key": "url" },
                "redisUrl": { "name": "redis", "key": "url" },
                "rabbitmqUrl": { "name": "rabbitmq", "key": "url" },
                "jwtSecret": { "name": "jwt", "key": "secret" }
            },
            "migrations": { "schemaVersion": 3 }
        }
    })
}
