//! `kubectl logs` for the pods the runner runs: a kwok `Logs` object per pod points kwok's
//! kubelet API at the CRI-format copy of the process's output (see `process::cri_log`).
//! Owned by the pod, so it goes with it.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::Shared;
use super::process::cri_log;

/// Publishes the log file of `pod`'s first container; a cluster without kwok's `Logs`
/// (made from older settings) only loses `kubectl logs`, which is recorded.
pub(super) async fn publish(shared: &Shared, pod: &Pod, log: &Path) {
    match publish_file(&shared.client, &shared.namespace, pod, &cri_log(log)).await {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => shared.record(format!("pod {}: no kubectl logs: {e}", pod.name_any())),
    }
}

/// Makes kwok serve `file` (CRI log format: `<RFC 3339 time> <stream> F <line>` per line)
/// as the logs of `pod`'s first container, through the kubelet API that `kubectl logs`
/// reaches: a kwok `Logs` object named after the pod and owned by it.
pub async fn publish_file(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    file: &Path,
) -> kube::Result<()> {
    let name = pod.name_any();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    // The plural of `Logs` is `logs`, which kube's guess would not make.
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs"),
        "logs",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let mut object = DynamicObject::new(&name, &resource).within(namespace);
    object.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: name.clone(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            ..Default::default()
        },
    ]);
    object.data = json!({
        "spec": { "logs": [{ "containers": [container], "logsFile": file, "follow": true }] }
    });
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}
