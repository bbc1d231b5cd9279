//! Approving releases as real people: the chart's approvals policy and persona ClusterRoles
//! (as committed in config/rbac), and one user per approval role with a client certificate
//! (see [`crate::identity`]).

use std::path::Path;

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use listacompra_crds::{ListaCompraApproval, ListaCompraApprovalSpec};

use crate::cluster::Cluster;
use crate::env::repo_root;
use crate::identity::Identity;
use crate::{Error, Result};

/// Prefix of the chart's cluster-scoped names in config/rbac (rendered for namespace
/// `listacompra-system`).
pub const PREFIX: &str = "listacompra-system-listacompra-operator";

/// Applies config/rbac/approval-policy.yaml and config/rbac/personas.yaml (server-side,
/// idempotent): the ValidatingAdmissionPolicy that checks approvers, and the personas'
/// ClusterRoles.
pub async fn apply_policy_and_personas(cluster: &Cluster) -> Result<()> {
    let kubectl = cluster.bin_dir()?.join("kubectl");
    let root = repo_root();
    let args = [
        "apply".to_owned(),
        "--server-side".to_owned(),
        "--field-manager=listacompra-e2e".to_owned(),
        "-f".to_owned(),
        root.join("config/rbac/approval-policy.yaml")
            .to_string_lossy()
            .into_owned(),
        "-f".to_owned(),
        root.join("config/rbac/personas.yaml")
            .to_string_lossy()
            .into_owned(),
    ];
    let output = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(&args)
        .output()
        .await
        .map_err(|source| Error::Spawn {
            script: kubectl.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            command: format!("kubectl {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Binds the chart's `persona` ClusterRole in `namespace` to `groups`, as the chart's
/// `personas.bindings` does.
pub async fn bind(client: &Client, namespace: &str, persona: &str, groups: &[&str]) -> Result<()> {
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("listacompra-{persona}")),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: format!("{PREFIX}-{persona}"),
        },
        subjects: Some(
            groups
                .iter()
                .map(|g| Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: (*g).into(),
                    namespace: None,
                })
                .collect(),
        ),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch(
            &format!("listacompra-{persona}"),
            &PatchParams::apply("listacompra-e2e").force(),
            &Patch::Apply(&binding),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::Kube {
            action: format!("binding persona {persona} in {namespace}"),
            source,
        })
}

/// An approval of `release`'s `version`, attempt `attempt`, by `approver` as `role`.
pub fn approval(
    name: &str,
    release: &str,
    version: &str,
    attempt: i64,
    role: &str,
    approver: &str,
) -> ListaCompraApproval {
    ListaCompraApproval::new(
        name,
        ListaCompraApprovalSpec {
            release: release.into(),
            version: version.into(),
            attempt,
            role: role.into(),
            approver: approver.into(),
            comment: None,
            restore: None,
            restore_uid: None,
        },
    )
}

/// QA and the Product Owner of the runbook: one user each, allowed to approve in one
/// namespace.
#[derive(Debug)]
pub struct Approvers {
    namespace: String,
    people: Vec<(String, Identity)>,
}

impl Approvers {
    /// Sets up the policy and personas, binds the approver persona in `namespace` to the
    /// QA and Product Owner groups, and makes `alice` (qa) and `pat` (product-owner), their
    /// keys in `dir`.
    pub async fn set_up(
        cluster: &Cluster,
        client: &Client,
        namespace: &str,
        dir: &Path,
    ) -> Result<Self> {
        apply_policy_and_personas(cluster).await?;
        bind(
            client,
            namespace,
            "approver",
            &["listacompra:qa", "listacompra:product-owner"],
        )
        .await?;
        let mut people = Vec::new();
        for (role, user) in [("qa", "alice"), ("product-owner", "pat")] {
            let group = format!("listacompra:{role}");
            people.push((
                role.to_owned(),
                Identity::new(cluster, user, &[group.as_str()], dir).await?,
            ));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            people,
        })
    }

    /// The person who approves as `role`.
    pub fn person(&self, role: &str) -> Option<&Identity> {
        self.people.iter().find(|(r, _)| r == role).map(|(_, p)| p)
    }

    /// The roles these people approve as.
    pub fn roles(&self) -> Vec<String> {
        self.people.iter().map(|(role, _)| role.clone()).collect()
    }

    /// The person of `role` approves `release`'s `version`, attempt `attempt`; returns
    /// their user name.
    pub async fn approve(
        &self,
        release: &str,
        version: &str,
        attempt: i64,
        role: &str,
    ) -> Result<String> {
        let name = format!(
            "{release}-{}-{attempt}-{role}",
            version.to_lowercase().replace(['.', '+'], "-")
        );
        self.create(role, |user| {
            approval(&name, release, version, attempt, role, user)
        })
        .await
    }

    /// The person of `role` approves the restore `restore` (uid `uid`) of `release`, whose
    /// current version and attempt are `version` and `attempt`; returns their user name.
    pub async fn approve_restore(
        &self,
        release: &str,
        version: &str,
        attempt: i64,
        role: &str,
        (restore, uid): (&str, &str),
    ) -> Result<String> {
        let name = format!("{restore}-{role}");
        self.create(role, |user| {
            let mut approval = approval(&name, release, version, attempt, role, user);
            approval.spec.restore = Some(restore.to_owned());
            approval.spec.restore_uid = Some(uid.to_owned());
            approval
        })
        .await
    }

    /// Creates the approval `of(user)` as the person of `role`; their user name.
    async fn create(
        &self,
        role: &str,
        of: impl FnOnce(&str) -> ListaCompraApproval,
    ) -> Result<String> {
        let person = self.person(role).ok_or_else(|| Error::Check {
            message: format!("nobody here approves as {role}"),
        })?;
        let approval = of(&person.user);
        Api::<ListaCompraApproval>::namespaced(person.client().await?, &self.namespace)
            .create(&PostParams::default(), &approval)
            .await
            .map_err(|source| Error::Kube {
                action: format!(
                    "creating approval {} as {role} ({})",
                    approval.metadata.name.clone().unwrap_or_default(),
                    person.user
                ),
                source,
            })?;
        Ok(person.user.clone())
    }
}
