//! How far a release's workload has rolled out, read from its two Deployments' status.

use k8s_openapi::api::apps::v1::Deployment;

use crate::decide::WorkloadState;

/// The release's workload as its two Deployments show it: the API's hash; rolled out only
/// when both are, with the same hash (a worker left at another workload is not rolled out);
/// stalled when either is. A missing worker is rolled out only when no worker pod is
/// `wanted` (the operator creates no Deployment for a worker of none).
pub fn workload_state(
    api: Option<&Deployment>,
    worker: Option<&Deployment>,
    wanted: bool,
) -> WorkloadState {
    let (Some(api), worker) = (api.map(rollout), worker.map(rollout)) else {
        return WorkloadState::default();
    };
    let worker_done = match &worker {
        Some(w) => w.hash == api.hash && w.available,
        None => !wanted,
    };
    WorkloadState {
        available: api.available && worker_done,
        stalled: api.stalled.clone().or_else(|| {
            let stalled = worker.and_then(|w| w.stalled)?;
            Some(format!("the worker Deployment: {stalled}"))
        }),
        hash: api.hash,
    }
}

/// One Deployment's rollout: its hash, whether its current template is rolled out, and why
/// it stalled.
fn rollout(d: &Deployment) -> WorkloadState {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current =
        status.observed_generation.unwrap_or_default() >= d.metadata.generation.unwrap_or_default();
    let available = current
        && status.updated_replicas.unwrap_or_default() == wanted
        && status.available_replicas.unwrap_or_default() == wanted
        && status.replicas.unwrap_or_default() == wanted;
    let stalled = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| {
            (c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .then(|| {
                c.message
                    .unwrap_or_else(|| "progress deadline exceeded".to_owned())
            })
        });
    WorkloadState {
        hash: crate::workload::applied_hash(&d.metadata).map(str::to_owned),
        available,
        stalled: if current { stalled } else { None },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::naming::SPEC_HASH_ANNOTATION;

    /// A Deployment stamped `hash`, wanting `replicas`, with `ready` of them updated and
    /// available.
    fn deployment(hash: &str, replicas: i32, ready: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                annotations: Some([(SPEC_HASH_ANNOTATION.to_owned(), hash.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(ready),
                updated_replicas: Some(ready),
                available_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
        }
    }

    fn stalled(mut d: Deployment) -> Deployment {
        d.status.get_or_insert_with(Default::default).conditions =
            Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some("ReplicaSet \"x\" has timed out progressing.".into()),
                ..DeploymentCondition::default()
            }]);
        d
    }

    #[test]
    fn the_workload_is_rolled_out_only_when_both_deployments_are_at_one_hash() {
        let api = deployment("h1", 2, 2);
        let both = workload_state(Some(&api), Some(&deployment("h1", 1, 1)), true);
        assert_eq!(both.hash.as_deref(), Some("h1"));
        assert!(both.available);

        let scaled_to_zero = workload_state(Some(&api), Some(&deployment("h1", 0, 0)), true);
        assert!(
            scaled_to_zero.available,
            "a worker scaled to 0 has rolled out"
        );

        let rolling = workload_state(Some(&api), Some(&deployment("h1", 2, 1)), true);
        assert!(!rolling.available, "the worker is still rolling");

        let other = workload_state(Some(&api), Some(&deployment("h0", 1, 1)), true);
        assert!(!other.available, "the worker runs another workload");
        assert_eq!(
            other.hash.as_deref(),
            Some("h1"),
            "the API's hash names the workload"
        );

        let missing = workload_state(Some(&api), None, true);
        assert!(!missing.available, "no worker Deployment");
        assert_eq!(missing.hash.as_deref(), Some("h1"));
        assert!(
            workload_state(Some(&api), None, false).available,
            "no worker wanted, none made"
        );

        assert_eq!(
            workload_state(None, Some(&deployment("h1", 1, 1)), true),
            WorkloadState::default()
        );
    }

    #[test]
    fn either_deployment_stalling_stalls_the_workload_and_says_which() {
        let api = deployment("h1", 2, 2);
        let worker = stalled(deployment("h1", 1, 0));
        let state = workload_state(Some(&api), Some(&worker), true);
        let message = state.stalled.expect("stalled");
        assert!(
            message.starts_with("the worker Deployment: ReplicaSet"),
            "{message}"
        );

        let state = workload_state(Some(&stalled(deployment("h1", 2, 1))), Some(&worker), true);
        assert!(
            state.stalled.is_some_and(|m| m.starts_with("ReplicaSet")),
            "the API's own first"
        );

        let mut old = stalled(deployment("h1", 1, 0));
        old.metadata.generation = Some(3);
        let state = workload_state(Some(&api), Some(&old), true);
        assert_eq!(
            state.stalled, None,
            "a condition of an older generation is not this rollout's"
        );
    }
}
