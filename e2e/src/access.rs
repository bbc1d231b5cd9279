//! What a client may do, asked of the API server itself (SelfSubjectAccessReview), to prove
//! RBAC both sufficient and least privilege.

use std::fmt;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{Error, Result};

/// One request: `verb` on `group`/`resource` (`resource/subresource` allowed) in `namespace`
/// (empty: all namespaces, or a cluster-scoped resource), optionally for one `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The verb, e.g. `get`.
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource, optionally with `/subresource`.
    pub resource: String,
    /// The namespace; empty for all namespaces or cluster-scoped resources.
    pub namespace: String,
    /// The object's name; empty for any.
    pub name: String,
}

impl Check {
    /// `verb group/resource` in `namespace` (any name).
    pub fn new(verb: &str, group: &str, resource: &str, namespace: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: String::new(),
        }
    }

    /// The same check for the object named `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if !self.name.is_empty() {
            write!(f, " {}", self.name)?;
        }
        if self.namespace.is_empty() {
            write!(f, " (all namespaces / cluster)")
        } else {
            write!(f, " in {}", self.namespace)
        }
    }
}

/// Whether the API server allows `check` to the user of `client`.
pub async fn allowed(client: &Client, check: &Check) -> Result<bool> {
    let (resource, subresource) = match check.resource.split_once('/') {
        Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
        None => (check.resource.clone(), None),
    };
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(check.verb.clone()),
                group: Some(check.group.clone()),
                resource: Some(resource),
                subresource,
                namespace: non_empty(&check.namespace),
                name: non_empty(&check.name),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|source| Error::Kube {
            action: format!("asking whether the client may {check}"),
            source,
        })?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Checks that every one of `must` is allowed and every one of `must_not` denied; the
/// error lists every check that came out the other way.
pub async fn verify(client: &Client, must: &[Check], must_not: &[Check]) -> Result<()> {
    let mut wrong = Vec::new();
    for check in must {
        if !allowed(client, check).await? {
            wrong.push(format!("denied but needed: {check}"));
        }
    }
    for check in must_not {
        if allowed(client, check).await? {
            wrong.push(format!("allowed but must not be: {check}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Wait {
            what: "the RBAC to be exactly what the operator needs".to_owned(),
            message: wrong.join("; "),
        })
    }
}
