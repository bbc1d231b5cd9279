//! The environment a container would get: its `env` and `envFrom`, with every reference to a
//! Secret or ConfigMap resolved the way the kubelet resolves it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::{Api, Client};

use crate::{Error, Result};

/// Resolves `container`'s environment in `namespace`. A missing Secret, ConfigMap or key is
/// an error naming it, as the kubelet would refuse to start the container.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    container: &Container,
) -> Result<BTreeMap<String, String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut vars = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.secret_ref {
            for (k, v) in secret_data(&secrets, &r.name).await? {
                vars.insert(format!("{prefix}{k}"), v);
            }
        }
        if let Some(r) = &source.config_map_ref {
            for (k, v) in config_map_data(&config_maps, &r.name).await? {
                vars.insert(format!("{prefix}{k}"), v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    key(
                        secret_data(&secrets, &r.name).await?,
                        "Secret",
                        &r.name,
                        &r.key,
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    key(
                        config_map_data(&config_maps, &r.name).await?,
                        "ConfigMap",
                        &r.name,
                        &r.key,
                    )?
                } else {
                    continue; // fieldRef and resourceFieldRef: nothing the API server reads
                }
            }
            (None, None) => String::new(),
        };
        vars.insert(var.name.clone(), value);
    }
    Ok(vars)
}

fn key(data: BTreeMap<String, String>, kind: &str, name: &str, key: &str) -> Result<String> {
    data.get(key).cloned().ok_or_else(|| Error::Workload {
        message: format!("{kind} {name} has no key {key:?}"),
    })
}

async fn secret_data(api: &Api<Secret>, name: &str) -> Result<BTreeMap<String, String>> {
    let secret = api.get(name).await.map_err(|source| Error::Kube {
        action: format!("reading Secret {name}"),
        source,
    })?;
    let mut data: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
    for (k, v) in secret.data.unwrap_or_default() {
        data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    Ok(data)
}

async fn config_map_data(api: &Api<ConfigMap>, name: &str) -> Result<BTreeMap<String, String>> {
    let config_map = api.get(name).await.map_err(|source| Error::Kube {
        action: format!("reading ConfigMap {name}"),
        source,
    })?;
    Ok(config_map.data.unwrap_or_default())
}
