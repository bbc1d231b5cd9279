//! Who else writes a release's spec, read from its managed fields: a GitOps tool (Argo CD,
//! Flux, Helm) or a pipeline that applied it. A spec change made here is undone at that
//! tool's next sync, so commands that change the spec warn about it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

/// Field manager of the plugin's own writes.
pub const FIELD_MANAGER: &str = "kubectl-listacompra";

/// Managers that are a person at a terminal, not a tool that syncs from a source.
fn is_person(manager: &str) -> bool {
    manager == FIELD_MANAGER || manager.starts_with("kubectl")
}

/// The field managers, other than people's kubectl, that own fields of `spec`.
pub fn spec_managers(entries: &[ManagedFieldsEntry]) -> Vec<String> {
    let mut managers: Vec<String> = entries
        .iter()
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").is_some())
        })
        .filter_map(|e| e.manager.clone())
        .filter(|m| !is_person(m))
        .collect();
    managers.sort();
    managers.dedup();
    managers
}

/// The warning printed before a spec change, if a tool manages the spec.
pub fn warning(release: &str, managers: &[String]) -> Option<String> {
    (!managers.is_empty()).then(|| {
        format!(
            "warning: the spec of {release} is also managed by {}; its next sync may undo this change: make it in that tool's source (Git, values) too",
            managers.join(", ")
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
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Apply".to_owned()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn a_gitops_tool_owning_spec_fields_is_named_and_people_and_status_writers_are_not() {
        let entries = [
            entry(
                "argocd-controller",
                None,
                json!({"f:spec": {"f:version": {}}}),
            ),
            entry(
                "kubectl-client-side-apply",
                None,
                json!({"f:spec": {"f:paused": {}}}),
            ),
            entry(FIELD_MANAGER, None, json!({"f:spec": {"f:retryToken": {}}})),
            entry(
                "listacompra-operator",
                Some("status"),
                json!({"f:status": {}}),
            ),
            entry(
                "kustomize-controller",
                None,
                json!({"f:metadata": {"f:labels": {}}}),
            ),
        ];
        let managers = spec_managers(&entries);
        assert_eq!(managers, ["argocd-controller"]);
        let text = warning("lc", &managers).expect("a warning");
        assert!(text.contains("argocd-controller"), "{text}");
        assert_eq!(warning("lc", &spec_managers(&entries[1..])), None);
    }
}
