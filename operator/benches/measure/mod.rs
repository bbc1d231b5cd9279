//! What the operator's benchmarks measure with: a process's memory and CPU from `/proc`, a
//! metric from a `/metrics` page, whether a Deployment is rolled out, and room in the local
//! cluster for a thousand more pods and Services.

#![allow(dead_code)] // each bench uses a different part

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::cluster::TestContext;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::json;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`), as MiB; 0 when gone.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The peak resident memory of process `pid` since it started, in MiB.
pub fn hwm_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Whether process `pid` runs: it exists and is not a zombie (exited, not yet waited for).
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// CPU time of process `pid` (user and system), in clock ticks (1/100 s).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // After the command name: state is field 0; utime and stime are fields 11 and 12.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The sum of every sample of metric `name` (all labels, or those whose label set contains
/// `labels`) in a Prometheus text page.
pub fn sum_of(page: &str, name: &str, labels: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of every sample of the metric `name` (all labels) at `http://<address>/metrics`.
pub async fn metric(http: &reqwest::Client, address: &str, name: &str) -> Result<f64> {
    let page = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(sum_of(&page, name, ""))
}

/// Whether the Deployment's current template is rolled out: every replica updated and ready.
pub fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    status.observed_generation == d.metadata.generation
        && status.updated_replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.replicas == Some(want)
}

/// The last lines of a log, for a failure message.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Room in the local cluster for `pods` more pods and Services: a kwok node with the pods'
/// capacity, and a second Service IP range (a ServiceCIDR: the cluster's own /24 holds 254
/// Services). Both go with [`Room::clear`].
pub struct Room {
    node: String,
    cidr: String,
}

fn service_cidrs(ctx: &TestContext) -> Api<DynamicObject> {
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("networking.k8s.io", "v1", "ServiceCIDR"),
        "servicecidrs",
    );
    Api::all_with(ctx.client.clone(), &resource)
}

impl Room {
    /// Makes room for `pods` pods and as many Services.
    pub async fn make(ctx: &TestContext, pods: usize) -> Result<Self> {
        let room = Self {
            node: format!("{}-scale", ctx.namespace),
            cidr: format!("{}-scale", ctx.namespace),
        };
        let capacity = (pods + 100).to_string();
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": room.node,
                "annotations": { "kwok.x-k8s.io/node": "fake" },
                "labels": { "type": "kwok", "kubernetes.io/hostname": room.node }
            },
            "status": {
                "allocatable": { "cpu": "1000", "memory": "4Ti", "pods": capacity },
                "capacity": { "cpu": "1000", "memory": "4Ti", "pods": capacity }
            }
        }))?;
        Api::<Node>::all(ctx.client.clone())
            .create(&PostParams::default(), &node)
            .await
            .context("creating the scale node")?;
        let cidr: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": { "name": room.cidr },
            "spec": { "cidrs": ["10.100.0.0/20"] }
        }))?;
        if let Err(e) = service_cidrs(ctx)
            .create(&PostParams::default(), &cidr)
            .await
        {
            room.clear(ctx).await;
            return Err(e).context("creating the scale ServiceCIDR");
        }
        Ok(room)
    }

    /// Waits (up to `timeout`) until no pod is left on the node; whether none is.
    pub async fn drained(&self, ctx: &TestContext, timeout: Duration) -> bool {
        let pods: Api<Pod> = ctx.api();
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let started = Instant::now();
        loop {
            let left = pods.list(&on_node).await.map_or(1, |l| l.items.len());
            if left == 0 {
                return true;
            }
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits (up to 10 min) for the node's pods to go, then deletes the node and the
    /// ServiceCIDR (whose finalizer keeps it until its Services are gone).
    pub async fn clear(&self, ctx: &TestContext) {
        self.drained(ctx, Duration::from_secs(600)).await;
        let dp = DeleteParams::default();
        let _ = Api::<Node>::all(ctx.client.clone())
            .delete(&self.node, &dp)
            .await;
        let _ = service_cidrs(ctx).delete(&self.cidr, &dp).await;
    }
}
