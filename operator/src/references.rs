//! What a release names that must exist before an attempt launches anything: the Secrets,
//! ConfigMaps and ServiceAccount its pods and gates use. Without them a migration Job or a
//! pod cannot start on a real node (CreateContainerConfigError), so the release waits in
//! Pending instead, naming what is missing, and starts by itself once it appears.
//!
//! [`of`] lists the references (pure); [`missing`] checks them with metadata-only GETs, so
//! the operator never reads a Secret's data here. It polls (the release requeues while it
//! waits) rather than watching Secrets: a watch needs `list` and `watch` on every Secret of
//! the namespace, and RBAC cannot limit those to metadata.

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::{Api, Client};
use listacompra_crds::ListaCompraReleaseSpec;
use listacompra_crds::workload::SecretKeyRef;
use prometheus::IntCounterVec;
use tracing::debug;

use crate::error::{Result, kube as kube_err};

/// The kind of a referenced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A ServiceAccount.
    ServiceAccount,
}

/// One object a release names, and the field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Its kind.
    pub kind: Kind,
    /// Its name in the release's namespace.
    pub name: String,
    /// The spec field that names it (e.g. `spec.env.databaseUrl`).
    pub field: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} ({})", self.kind, self.name, self.field)
    }
}

/// Everything `spec` names, in spec order.
pub fn of(spec: &ListaCompraReleaseSpec) -> Vec<Reference> {
    let mut refs = Vec::new();
    let mut secret = |field: &str, r: &SecretKeyRef| {
        refs.push(Reference {
            kind: Kind::Secret,
            name: r.name.clone(),
            field: field.to_owned(),
        });
    };
    let env = &spec.env;
    secret("spec.env.databaseUrl", &env.database_url);
    secret("spec.env.redisUrl", &env.redis_url);
    secret("spec.env.rabbitmqUrl", &env.rabbitmq_url);
    secret("spec.env.jwtSecret", &env.jwt_secret);
    if let Some(r) = &env.pplx_api_key {
        secret("spec.env.pplxApiKey", r);
    }
    if let Some(r) = &env.healthcheck_token {
        secret("spec.env.healthcheckToken", r);
    }
    if let Some(s3) = &env.s3 {
        secret(
            "spec.env.s3.credentialsSecretRef",
            &s3.credentials_secret_ref.access_key_id(),
        );
    }
    if let Some(r) = &spec.health.token_secret_ref {
        secret("spec.health.tokenSecretRef", r);
    }
    if let Some(auth) = spec
        .analysis
        .as_ref()
        .and_then(|a| a.prometheus.auth.as_ref())
    {
        if let Some(r) = &auth.bearer_token_secret_ref {
            secret("spec.analysis.prometheus.auth.bearerTokenSecretRef", r);
        }
        if let Some(basic) = &auth.basic_auth {
            secret(
                "spec.analysis.prometheus.auth.basicAuth.usernameSecretRef",
                &basic.username_secret_ref,
            );
            secret(
                "spec.analysis.prometheus.auth.basicAuth.passwordSecretRef",
                &basic.password_secret_ref,
            );
        }
    }
    for (i, from) in env.env_from.iter().enumerate() {
        if let Some(name) = &from.config_map_name {
            refs.push(Reference {
                kind: Kind::ConfigMap,
                name: name.clone(),
                field: format!("spec.env.envFrom[{i}].configMapName"),
            });
        }
        if let Some(name) = &from.secret_name {
            refs.push(Reference {
                kind: Kind::Secret,
                name: name.clone(),
                field: format!("spec.env.envFrom[{i}].secretName"),
            });
        }
    }
    if let Some(name) = &spec.pod.service_account_name {
        refs.push(Reference {
            kind: Kind::ServiceAccount,
            name: name.clone(),
            field: "spec.pod.serviceAccountName".to_owned(),
        });
    }
    refs
}

/// The references of `refs` that do not exist in `namespace`, each object looked up once.
/// An object the operator may not read (403: the chart's `rbac.secretNames` does not list
/// it) cannot be checked and counts as present; its pods will say if it is not.
pub async fn missing(
    client: &Client,
    reads: &IntCounterVec,
    namespace: &str,
    refs: &[Reference],
) -> Result<Vec<Reference>> {
    let mut absent: Vec<Reference> = Vec::new();
    let mut present: Vec<(Kind, &str)> = Vec::new();
    for r in refs {
        if present.contains(&(r.kind, r.name.as_str())) {
            continue;
        }
        if absent.iter().any(|a| a.kind == r.kind && a.name == r.name) {
            absent.push(r.clone());
            continue;
        }
        reads
            .with_label_values(&[&format!("{:?}", r.kind).to_lowercase()])
            .inc();
        if exists(client, namespace, r).await? {
            present.push((r.kind, r.name.as_str()));
        } else {
            absent.push(r.clone());
        }
    }
    Ok(absent)
}

async fn exists(client: &Client, namespace: &str, r: &Reference) -> Result<bool> {
    let found = match r.kind {
        Kind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_metadata_opt(&r.name)
            .await
            .map(|o| o.is_some()),
        Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_metadata_opt(&r.name)
            .await
            .map(|o| o.is_some()),
        Kind::ServiceAccount => Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .get_metadata_opt(&r.name)
            .await
            .map(|o| o.is_some()),
    };
    match found {
        Ok(found) => Ok(found),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            debug!(reference = %r, "not allowed to check that it exists; assuming it does");
            Ok(true)
        }
        Err(e) => Err(kube_err(format!("checking that {r} exists"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::spec;

    #[test]
    fn every_named_object_is_listed_with_its_field() {
        let mut s = spec("1.0.0");
        s.env.pplx_api_key = Some(SecretKeyRef {
            name: "pplx".into(),
            key: "key".into(),
        });
        s.env.env_from = serde_json::from_value(json!([
            { "configMapName": "settings" },
            { "secretName": "extra" }
        ]))
        .unwrap();
        s.pod.service_account_name = Some("api".into());
        let listed: Vec<String> = of(&s).iter().map(ToString::to_string).collect();
        for expected in [
            "Secret pplx (spec.env.pplxApiKey)",
            "ConfigMap settings (spec.env.envFrom[0].configMapName)",
            "Secret extra (spec.env.envFrom[1].secretName)",
            "ServiceAccount api (spec.pod.serviceAccountName)",
        ] {
            assert!(
                listed.iter().any(|l| l == expected),
                "{expected} in {listed:?}"
            );
        }
        assert!(
            listed.iter().any(|l| l.ends_with("(spec.env.databaseUrl)")),
            "{listed:?}"
        );
    }
}
