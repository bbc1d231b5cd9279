//! The environment a container would get: its `env` and `envFrom`, with every reference to a
//! Secret or ConfigMap resolved the way the kubelet resolves it.

use std::collections::BTreeMap;
use std::ops::Range;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

use crate::{Error, Result};

/// Resolves `container`'s environment in `namespace`, for `pod`'s downward-API fields. A
/// missing Secret, ConfigMap or key is an error naming it, as the kubelet would refuse to
/// start the container.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    pod: &Pod,
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
                } else if let Some(r) = &from.field_ref {
                    field(pod, &r.field_path)?
                } else {
                    continue; // resourceFieldRef: no limits to read on this machine
                }
            }
            (None, None) => String::new(),
        };
        vars.insert(var.name.clone(), value);
    }
    Ok(vars)
}

/// A URL that names a Service of the pod's namespace by its cluster DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    /// The byte range of `host[:port]` in the value.
    pub authority: Range<usize>,
    /// The Service's name.
    pub service: String,
    /// The port the URL asks for (the scheme's default when it names none).
    pub port: u16,
}

/// Where `value` holds a URL naming a Service of `namespace` by its cluster DNS name
/// (`<service>.<namespace>.svc` or `...svc.cluster.local`, with or without a port).
pub fn cluster_service(value: &str, namespace: &str) -> Option<ServiceUrl> {
    let scheme_end = value.find("://")?;
    let start = scheme_end + 3;
    let rest = &value[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None if &value[..scheme_end] == "https" => (authority, 443),
        None => (authority, 80),
    };
    let service = [".svc.cluster.local", ".svc"]
        .iter()
        .find_map(|suffix| host.strip_suffix(&format!(".{namespace}{suffix}")))?;
    if service.is_empty() || service.contains('.') || authority.contains('@') {
        return None;
    }
    Some(ServiceUrl {
        authority: start..start + end,
        service: service.to_owned(),
        port,
    })
}

/// A downward-API field of `pod` (the paths the kubelet supports for environment variables).
fn field(pod: &Pod, path: &str) -> Result<String> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        other => {
            return Err(Error::Workload {
                message: format!("fieldRef {other:?} is not supported by the workload runner"),
            });
        }
    };
    Ok(value.unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_of_the_namespace_are_found_and_others_left_alone() {
        let url = "http://lc-api.story.svc:8080";
        let found = cluster_service(url, "story").expect("a Service URL");
        assert_eq!(
            (&url[found.authority], found.service.as_str(), found.port),
            ("lc-api.story.svc:8080", "lc-api", 8080)
        );
        let long = "https://lc-api.story.svc.cluster.local/v1?x=1";
        let found = cluster_service(long, "story").expect("a Service URL");
        assert_eq!(
            (&long[found.authority], found.service.as_str(), found.port),
            ("lc-api.story.svc.cluster.local", "lc-api", 443)
        );
        for other in [
            "http://lc-api.other.svc:8080",
            "http://127.0.0.1:5432/db",
            "postgres://u:p@lc-api.story.svc:5432/db",
            "http://a.b.story.svc:80",
            "lc-api.story.svc",
            "http://lc-api.story.svc:http",
        ] {
            assert_eq!(cluster_service(other, "story"), None, "{other}");
        }
    }
}
