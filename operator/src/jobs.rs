//! What a failed Job's pods said: the kubelet keeps a container's termination message (with
//! `terminationMessagePolicy: FallbackToLogsOnError`, the end of its log when it failed
//! without writing one), and the release's conditions quote it, so that "the migration
//! failed" or "the smoke test failed" comes with the command's own error.

use k8s_openapi::api::core::v1::Pod;

/// Longest quoted message, in characters.
const MAX_MESSAGE: usize = 400;

/// The last line of the termination message of the pod that ended last, if any said one.
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .flat_map(|pod| {
            pod.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .filter_map(|t| {
                    let line = t
                        .message
                        .as_deref()?
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())?;
                    Some((t.finished_at.clone(), line.trim().to_owned()))
                })
        })
        .max_by(|a, b| a.0.as_ref().map(|t| t.0).cmp(&b.0.as_ref().map(|t| t.0)))
        .map(|(_, line)| {
            if line.chars().count() > MAX_MESSAGE {
                let cut: String = line.chars().take(MAX_MESSAGE).collect();
                format!("{cut}…")
            } else {
                line
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn pod(finished: i64, message: Option<&str>) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            finished_at: Some(Time(
                                Timestamp::from_second(finished).expect("a time"),
                            )),
                            message: message.map(str::to_owned),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_last_line_of_the_pod_that_ended_last_is_quoted() {
        let pods = [
            pod(10, Some("error: first try failed\n")),
            pod(
                20,
                Some("{\"level\":\"ERROR\"}\nerror: smoke test failed at step \"log in\"\n\n"),
            ),
            pod(15, None),
        ];
        assert_eq!(
            termination_message(&pods).as_deref(),
            Some("error: smoke test failed at step \"log in\"")
        );
        assert_eq!(termination_message(&[pod(1, None)]), None);
        assert_eq!(termination_message(&[]), None);
        let long = termination_message(&[pod(1, Some(&"x".repeat(1000)))]).expect("quoted");
        assert_eq!(long.chars().count(), MAX_MESSAGE + 1);
    }
}
