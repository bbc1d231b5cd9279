//! `kubectl logs` for the pods the runner runs: a kwok `Logs` object per pod points kwok's
//! kubelet API at the CRI-format copy of the process's output (see `process::cri_log`).
//! Owned by the pod, so it goes with it.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::Shared;
use super::process::cri_log;

/// Publishes the log file of `pod`'s first container; a cluster without kwok's `Logs`
/// (made from older settings) only loses `kubectl logs`, which is recorded.
pub async fn publish(shared: &Shared, pod: &Pod, log: &std::path::Path) {
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
    let api: Api<DynamicObject> =
        Api::namespaced_with(shared.client.clone(), &shared.namespace, &resource);
    let object = serde_json::from_value::<DynamicObject>(json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Logs",
        "metadata": {
            "name": name,
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "uid": pod.metadata.uid.clone().unwrap_or_default(),
            }],
        },
        "spec": { "logs": [{ "containers": [container], "logsFile": cri_log(log), "follow": true }] },
    }));
    let created = match object {
        Ok(object) => api
            .create(&PostParams::default(), &object)
            .await
            .map(|_| ()),
        Err(e) => {
            shared.record(format!("pod {name}: no kubectl logs: {e}"));
            return;
        }
    };
    match created {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => shared.record(format!("pod {name}: no kubectl logs: {e}")),
    }
}
