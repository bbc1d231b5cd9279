//! Approvals: the runbook's "approval of QA + Product Owner" before a production release.
//!
//! A release that lists `spec.approvals.requiredRoles` waits in phase `AwaitingApproval`
//! until, for each role, a `ListaCompraApproval` names the release, its version and its
//! attempt; a restore of its database waits the same way for approvals that also name the
//! restore. Who approved is checked by the API server, not trusted from a field: the
//! ValidatingAdmissionPolicy the chart installs admits an approval only when its
//! `spec.approver` is the requesting user and that user belongs to a group mapped to
//! `spec.role`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::release::SEMVER_PATTERN;
use crate::workload::DNS_SUBDOMAIN_PATTERN;

/// A role name: a DNS label (lower-case alphanumerics and `-`), e.g. `qa`, `product-owner`.
pub const ROLE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Approvals a release needs before its attempt launches anything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicy {
    /// Roles that must each approve an attempt before its migration starts, e.g.
    /// `[qa, product-owner]`, each by a different user. An approval counts for one role, one
    /// version and one attempt: approving 1.2.0 never approves 1.3.0 or a retry, and a
    /// change of the spec before the attempt launches starts a new attempt. Which users hold
    /// a role is the cluster's business (the chart's `approvals.roles` maps roles to groups).
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 1, max = 63), regex(pattern = ROLE_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub required_roles: Vec<String>,
}

/// One approval the current attempt counted (also kept in the history).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The role approved as.
    pub role: String,
    /// The user who approved (verified by the API server when the approval was created).
    pub approver: String,
    /// Name of the `ListaCompraApproval`.
    pub approval: String,
    /// When the approval was created.
    pub approved_at: Time,
}

/// An approval of one attempt of a release, by one user in one role.
///
/// Create it as the approving user, with `spec.approver` set to your own user name; the
/// API server refuses it otherwise, or when you are not in a group allowed to approve as
/// `spec.role`. It cannot be changed afterwards; a release manager withdraws it, before the
/// release launches, by deleting it.
// Each `printcolumn(...)` repeats `type_ = "string"`: clippy reads that as duplication.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "listacompra.app",
    version = "v1alpha1",
    kind = "ListaCompraApproval",
    plural = "listacompraapprovals",
    singular = "listacompraapproval",
    shortname = "lcapproval",
    category = "listacompra",
    namespaced,
    selectable = ".spec.release",
    doc = "An approval of one attempt of a ListaCompraRelease, by one user in one role. The API server checks who created it (see the chart's ValidatingAdmissionPolicy).",
    printcolumn(
        name = "Release",
        type_ = "string",
        description = "The release approved",
        json_path = ".spec.release"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The version approved",
        json_path = ".spec.version"
    ),
    printcolumn(
        name = "Attempt",
        type_ = "integer",
        description = "The attempt approved",
        json_path = ".spec.attempt"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        description = "The role approved as",
        json_path = ".spec.role"
    ),
    printcolumn(
        name = "Approver",
        type_ = "string",
        description = "Who approved",
        json_path = ".spec.approver"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("an approval cannot be changed: delete it and create a new one"))]
#[x_kube(validation = Rule::new("has(self.restore) == has(self.restoreUID)").message("spec.restore and spec.restoreUID go together: restoreUID is the restore's metadata.uid (kubectl listacompra approve --restore fills both)").field_path(".restoreUID"))]
pub struct ListaCompraApprovalSpec {
    /// Name of the `ListaCompraRelease` (in this namespace) being approved.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub release: String,
    /// The version being approved: the release's `spec.version`.
    #[schemars(length(max = 128), regex(pattern = SEMVER_PATTERN))]
    pub version: String,
    /// The attempt being approved: the release's `status.attempt` while it waits in
    /// `AwaitingApproval` (`kubectl get lcr NAME -o jsonpath='{.status.attempt}'`). An
    /// approval created before that attempt began does not count (so neither one written in
    /// advance for a retry nor one left from an earlier release of the same name).
    #[schemars(range(min = 1))]
    pub attempt: i64,
    /// The role approved as, one of the release's `spec.approvals.requiredRoles`.
    #[schemars(length(min = 1, max = 63), regex(pattern = ROLE_PATTERN))]
    pub role: String,
    /// Your user name as the API server knows it (`kubectl auth whoami`). The API server
    /// refuses an approval whose approver is not the user creating it.
    #[schemars(length(min = 1, max = 1024))]
    pub approver: String,
    /// Why, for people (a ticket, the test report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
    /// The `ListaCompraRestore` (in this namespace) being approved, instead of an attempt:
    /// a restore of a release with `spec.approvals` loses the writes made since its backup
    /// set, so it waits for one approval per required role, like an attempt. `version` and
    /// `attempt` are then the release's current ones (`status.currentVersion`,
    /// `status.attempt`), and the approval counts only when created after the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub restore: Option<String>,
    /// With `restore`: that restore's `metadata.uid` (`kubectl get lcrestore NAME -o
    /// jsonpath='{.metadata.uid}'`), so that the approval counts for that object only, never
    /// for another created later under the same name.
    #[serde(
        default,
        rename = "restoreUID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 128))]
    pub restore_uid: Option<String>,
}
