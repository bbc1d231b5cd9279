//! Who else writes a release's spec, read from its managed fields: a GitOps tool (Argo CD,
//! Flux, Helm) or a pipeline that applies it from a source. Commands that change the spec
//! warn about them: a tool that sets the changed field undoes the change at its next sync;
//! one that manages other fields of the spec keeps it, until its source sets the field.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

/// Field manager of the plugin's own writes.
pub const FIELD_MANAGER: &str = "kubectl-listacompra";

/// A manager that applies the spec from a source (and so applies it again): any server-side
/// apply, `kubectl apply` (client-side), or a controller's update. Not the plugin, and not
/// a person's one-off `kubectl edit`/`patch`/`scale`.
fn declarative(entry: &ManagedFieldsEntry) -> bool {
    let manager = entry.manager.as_deref().unwrap_or_default();
    if manager == FIELD_MANAGER || manager.is_empty() {
        return false;
    }
    entry.operation.as_deref() == Some("Apply")
        || manager == "kubectl-client-side-apply"
        || !manager.starts_with("kubectl")
}

/// The spec fields an entry owns (`f:spec` of its fieldsV1), if it is about the object
/// itself (not its status).
fn spec_fields(entry: &ManagedFieldsEntry) -> Option<&serde_json::Map<String, serde_json::Value>> {
    if !entry.subresource.as_deref().unwrap_or_default().is_empty() {
        return None;
    }
    entry.fields_v1.as_ref()?.0.get("f:spec")?.as_object()
}

/// The warning printed before `spec.<field>` changes, if a tool manages the spec.
pub fn warning(release: &str, field: &str, entries: &[ManagedFieldsEntry]) -> Option<String> {
    let key = format!("f:{field}");
    let mut setters = Vec::new();
    let mut others = Vec::new();
    for entry in entries.iter().filter(|e| declarative(e)) {
        let Some(fields) = spec_fields(entry) else {
            continue;
        };
        let manager = entry.manager.clone().unwrap_or_default();
        let list = if fields.contains_key(&key) {
            &mut setters
        } else {
            &mut others
        };
        if !list.contains(&manager) {
            list.push(manager);
        }
    }
    if !setters.is_empty() {
        return Some(format!(
            "warning: spec.{field} of {release} is set by {}; its next sync will undo this change: change it in that tool's source (Git, values) too",
            setters.join(", ")
        ));
    }
    (!others.is_empty()).then(|| {
        format!(
            "note: the spec of {release} is also managed by {} (GitOps or a pipeline); it does not set spec.{field}, so this change stays until its source sets it",
            others.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    use super::*;

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn a_tool_that_sets_the_field_is_a_warning_one_that_manages_others_a_note() {
        let entries = [
            entry(
                "argocd-controller",
                "Update",
                None,
                json!({"f:spec": {"f:version": {}, "f:paused": {}}}),
            ),
            entry("kubectl", "Apply", None, json!({"f:spec": {"f:image": {}}})),
            entry(
                "kubectl-edit",
                "Update",
                None,
                json!({"f:spec": {"f:paused": {}}}),
            ),
            entry(
                FIELD_MANAGER,
                "Update",
                None,
                json!({"f:spec": {"f:retryToken": {}}}),
            ),
            entry(
                "listacompra-operator",
                "Update",
                Some("status"),
                json!({"f:status": {}}),
            ),
            entry(
                "kustomize-controller",
                "Apply",
                None,
                json!({"f:metadata": {"f:labels": {}}}),
            ),
        ];
        let paused = warning("lc", "paused", &entries).expect("a warning");
        assert!(
            paused.starts_with("warning: spec.paused of lc is set by argocd-controller;"),
            "{paused}"
        );
        let retry = warning("lc", "retryToken", &entries).expect("a note");
        assert!(
            retry.starts_with(
                "note: the spec of lc is also managed by argocd-controller, kubectl (GitOps"
            ),
            "{retry}"
        );
        // People's one-off edits, the plugin itself and status writers are no tools.
        assert_eq!(warning("lc", "paused", &entries[2..]), None);
    }
}
