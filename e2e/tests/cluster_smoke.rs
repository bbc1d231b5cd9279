//! Smoke tests of the real local control plane: the pinned server, kwok nodes, built-in
//! controllers (Deployment, Job) and a custom resource with a status subresource.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::cluster::{Cluster, TestContext, eventually, with_namespace};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn server_runs_the_pinned_release_with_ready_kwok_nodes() -> Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let version = client.apiserver_version().await?;
    println!(
        "server version: {} ({}.{})",
        version.git_version, version.major, version.minor
    );
    ensure!(
        version.git_version == cluster.expected_version()?,
        "server says {}, the pinned release is {}",
        version.git_version,
        cluster.expected_version()?
    );
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await?;
    let ready: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| {
            has_condition(
                n.status.as_ref().and_then(|s| s.conditions.as_ref()),
                "Ready",
            )
        })
        .map(ResourceExt::name_any)
        .collect();
    ensure!(
        !ready.is_empty(),
        "no Ready node among {:?}",
        nodes
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    );
    Ok(())
}

fn has_condition(
    conditions: Option<&Vec<k8s_openapi::api::core::v1::NodeCondition>>,
    type_: &str,
) -> bool {
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

#[tokio::test]
async fn deployment_of_two_replicas_becomes_available() {
    with_namespace("deployment", |ctx: TestContext| async move {
        let deployments: Api<Deployment> = ctx.api();
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] }
                }
            }
        }))?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await?;
        let available = eventually(
            "Deployment web to have 2 available replicas",
            TIMEOUT,
            || {
                let deployments = deployments.clone();
                async move {
                    let d = deployments.get("web").await.ok()?;
                    let status = d.status?;
                    let available = status
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Available" && c.status == "True");
                    (available && status.available_replicas == Some(2)).then_some(())
                }
            },
        )
        .await;
        available.map_err(anyhow::Error::msg)
    })
    .await;
}

#[tokio::test]
async fn job_runs_to_complete() {
    with_namespace("job", |ctx: TestContext| async move {
        let jobs: Api<Job> = ctx.api();
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "once" },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{ "name": "once", "image": "example.invalid/once:1" }]
                    }
                }
            }
        }))?;
        jobs.create(&PostParams::default(), &job).await?;
        eventually("Job once to be Complete", TIMEOUT, || {
            let jobs = jobs.clone();
            async move {
                let status = jobs.get("once").await.ok()?.status?;
                let complete = status
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True");
                (complete && status.succeeded == Some(1)).then_some(())
            }
        })
        .await
        .map_err(anyhow::Error::msg)
    })
    .await;
}

#[tokio::test]
async fn custom_resource_is_created_watched_and_status_patched() {
    with_namespace("crd", |ctx: TestContext| async move {
        let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": "widgets.e2e.listacompra.app" },
            "spec": {
                "group": "e2e.listacompra.app",
                "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": { "status": {} },
                    "schema": { "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": { "type": "object", "properties": { "size": { "type": "integer", "minimum": 1 } } },
                            "status": { "type": "object", "properties": { "phase": { "type": "string" } } }
                        }
                    } }
                }]
            }
        }))?;
        let ssa = PatchParams::apply("listacompra-e2e").force();
        crds.patch("widgets.e2e.listacompra.app", &ssa, &Patch::Apply(&crd)).await?;
        eventually("the Widget CRD to be Established", TIMEOUT, || {
            let crds = crds.clone();
            async move {
                let conditions = crds.get("widgets.e2e.listacompra.app").await.ok()?.status?.conditions?;
                conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;

        let gvk = GroupVersionKind::gvk("e2e.listacompra.app", "v1", "Widget");
        let widgets: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ApiResource::from_gvk(&gvk));
        // Watch first, so the status change must arrive as an event.
        let mut events = watcher::watcher(widgets.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        let widget: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "e2e.listacompra.app/v1",
            "kind": "Widget",
            "metadata": { "name": "w1" },
            "spec": { "size": 3 }
        }))?;
        widgets.create(&PostParams::default(), &widget).await?;

        // The status subresource ignores status on create and spec on a status patch.
        let patched = widgets
            .patch_status("w1", &PatchParams::default(), &Patch::Merge(json!({ "status": { "phase": "Ready" }, "spec": { "size": 9 } })))
            .await?;
        ensure!(patched.data["status"]["phase"] == "Ready", "status not patched: {:?}", patched.data);
        ensure!(patched.data["spec"]["size"] == 3, "a status patch changed spec: {:?}", patched.data);

        let seen = tokio::time::timeout(TIMEOUT, async {
            while let Some(object) = events.try_next().await? {
                if object.name_any() == "w1" && object.data["status"]["phase"] == "Ready" {
                    return anyhow::Ok(object);
                }
            }
            anyhow::bail!("the watch ended before the status change arrived")
        })
        .await
        .context("no watch event carried the patched status")??;
        ensure!(seen.data["spec"]["size"] == 3);

        // Schema validation is enforced by the server.
        let invalid: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "e2e.listacompra.app/v1", "kind": "Widget",
            "metadata": { "name": "w2" }, "spec": { "size": 0 }
        }))?;
        let err = widgets.create(&PostParams::default(), &invalid).await.expect_err("size 0 must be rejected");
        ensure!(err.to_string().contains("spec.size"), "rejection does not name spec.size: {err}");
        Ok(())
    })
    .await;
}
