//! Builders of the objects a release runs: the API Deployment and Service, and the
//! migration / schema revert Jobs. Pure functions of the spec; the controller applies them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, LocalObjectReference,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretEnvSource,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use listacompra_crds::ListaCompraReleaseSpec;
use listacompra_crds::workload::{EnvFromRef, ImageSpec, PullPolicy, SecretKeyRef, ServiceType};

use crate::naming::{self, JobPurpose, SPEC_HASH_ANNOTATION};

/// What to run: a version and its image (the target, or the stable one on rollback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The semantic version.
    pub version: String,
    /// The image reference.
    pub image: String,
    /// Which spec the rest of the pod template comes from.
    pub spec: SpecSource,
    /// The fingerprint of the Secrets the pods consume, stamped on the pod template
    /// ([`SECRETS_VERSION_ANNOTATION`]) so that a changed Secret rolls the pods.
    pub secrets: Option<String>,
}

/// Pod template annotation carrying [`Workload::secrets`].
pub const SECRETS_VERSION_ANNOTATION: &str = "listacompra.app/secrets-version";

/// Where the pod template of a [`Workload`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecSource {
    /// The release's current spec.
    Current,
    /// The spec recorded when the stable version succeeded (its ControllerRevision), so a
    /// rollback restores the stable pod template, not the failed release's settings.
    Stable,
}

/// Everything that identifies the objects of one release.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
    /// Owner reference to the release (controller: true).
    pub reference: OwnerReference,
}

fn meta(owner: &Owner, name: String, version: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(owner.namespace.clone()),
        labels: Some(naming::labels(&owner.name, version)),
        owner_references: Some(vec![owner.reference.clone()]),
        ..ObjectMeta::default()
    }
}

fn secret_env(name: &str, source: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: source.name.clone(),
                key: source.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// The API server's environment: every secret by reference, plus PORT, APP_VERSION and, when
/// `spec.env.tracing` asks for traces, the `OTEL_*` variables, and with `spec.env.s3` the
/// `S3_*` variables (credentials by reference).
/// The names of the Secrets the API pods of `spec` consume (environment variables and
/// `envFrom`), read from the pod template itself so that the list cannot drift from it. A
/// change of one of them is a rotation (see `decide::rotating`).
pub fn consumed_secrets(spec: &ListaCompraReleaseSpec) -> std::collections::BTreeSet<String> {
    let (vars, from) = env(spec, "");
    let by_key = vars
        .into_iter()
        .filter_map(|v| v.value_from?.secret_key_ref.map(|r| r.name));
    let whole = from
        .into_iter()
        .filter_map(|f| f.secret_ref.map(|r| r.name));
    by_key.chain(whole).collect()
}

fn env(spec: &ListaCompraReleaseSpec, version: &str) -> (Vec<EnvVar>, Vec<EnvFromSource>) {
    let e = &spec.env;
    let mut vars = vec![
        secret_env("DATABASE_URL", &e.database_url),
        secret_env("REDIS_URL", &e.redis_url),
        secret_env("RABBITMQ_URL", &e.rabbitmq_url),
        secret_env("JWT_SECRET", &e.jwt_secret),
    ];
    if let Some(key) = &e.pplx_api_key {
        vars.push(secret_env("PPLX_API_KEY", key));
    }
    if let Some(token) = &e.healthcheck_token {
        vars.push(secret_env("HEALTHCHECK_TOKEN", token));
    }
    vars.push(plain_env("PORT", spec.service.port.to_string()));
    vars.push(plain_env("APP_VERSION", version.to_owned()));
    if let Some(tracing) = &e.tracing {
        vars.push(plain_env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            tracing.otlp_endpoint.clone(),
        ));
        vars.push(plain_env(
            "OTEL_TRACES_SAMPLER",
            "parentbased_traceidratio".to_owned(),
        ));
        vars.push(plain_env(
            "OTEL_TRACES_SAMPLER_ARG",
            tracing
                .sampling_ratio
                .clone()
                .unwrap_or_else(|| "1".to_owned()),
        ));
        vars.push(plain_env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("service.version={version}"),
        ));
    }
    if let Some(s3) = &e.s3 {
        vars.push(plain_env("S3_BUCKET", s3.bucket.clone()));
        vars.push(plain_env("S3_REGION", s3.region.clone()));
        if let Some(endpoint) = &s3.endpoint {
            vars.push(plain_env("S3_ENDPOINT", endpoint.clone()));
        }
        if let Some(public) = &s3.public_endpoint {
            vars.push(plain_env("S3_PUBLIC_ENDPOINT", public.clone()));
        }
        vars.push(plain_env(
            "S3_FORCE_PATH_STYLE",
            s3.force_path_style.to_string(),
        ));
        vars.push(secret_env(
            "S3_ACCESS_KEY_ID",
            &s3.credentials_secret_ref.access_key_id(),
        ));
        vars.push(secret_env(
            "S3_SECRET_ACCESS_KEY",
            &s3.credentials_secret_ref.secret_access_key(),
        ));
    }
    (vars, env_from(&e.env_from))
}

/// Each whole ConfigMap or Secret of `sources` as a container's `envFrom`.
pub(crate) fn env_from(sources: &[EnvFromRef]) -> Vec<EnvFromSource> {
    sources
        .iter()
        .map(|source| EnvFromSource {
            config_map_ref: source
                .config_map_name
                .as_ref()
                .map(|name| ConfigMapEnvSource {
                    name: name.clone(),
                    optional: None,
                }),
            secret_ref: source.secret_name.as_ref().map(|name| SecretEnvSource {
                name: name.clone(),
                optional: None,
            }),
            ..EnvFromSource::default()
        })
        .collect()
}

/// Restricted Pod Security Standard: non-root, read-only root filesystem, no privileges.
pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Restricted Pod Security Standard at the pod level: non-root (uid and gid 65532), the
/// runtime's default seccomp profile.
pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn pull_policy(policy: PullPolicy) -> String {
    match policy {
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Always => "Always",
        PullPolicy::Never => "Never",
    }
    .to_owned()
}

fn pull_secrets(image: &ImageSpec) -> Option<Vec<LocalObjectReference>> {
    (!image.pull_secrets.is_empty()).then(|| {
        image
            .pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

/// Seconds a probe may take: longer than the API's check of one dependency (2 s,
/// `health::CHECK_TIMEOUT`), so that a slow optional dependency (Redis, RabbitMQ, the object
/// store), which `/ready` only reports, never fails the probe (Kubernetes' default is 1 s).
const PROBE_TIMEOUT_SECONDS: i32 = 4;

fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(PROBE_TIMEOUT_SECONDS),
        ..Probe::default()
    }
}

/// Seconds a stopping API process gets to finish its in-flight requests after SIGTERM.
const IN_FLIGHT_GRACE_SECONDS: i64 = 30;

/// A `preStop` sleep of `seconds` (none for 0): the pod keeps serving while its endpoint
/// removal reaches every proxy, and only then gets SIGTERM. A sleep action, not an exec of
/// `sleep`, since the image has no shell.
fn drain(seconds: i64) -> Option<Lifecycle> {
    (seconds > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    })
}

/// One of the two Deployments of a release. Both run the same workload (version, image,
/// environment, Secrets' stamp) and move together: applied together, stamped with one hash
/// ([`deployment_hash`]), and a rollout is complete only when both are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API server (`serve`, without its in-process workers), behind the Service.
    Api,
    /// The AI worker and outbox relay (`worker`), scaled by `spec.worker`.
    Worker,
}

impl Role {
    /// The Deployment's name.
    pub fn name(self, release: &str) -> String {
        match self {
            Self::Api => naming::workload_name(release),
            Self::Worker => naming::worker_name(release),
        }
    }

    /// The pods' `app.kubernetes.io/name`.
    fn app(self) -> &'static str {
        match self {
            Self::Api => naming::API_APP,
            Self::Worker => naming::WORKER_APP,
        }
    }
}

/// The two Deployments running `workload`, each stamped with [`deployment_hash`], in the
/// order they are applied: the worker first, so that the API pods (which stop relaying with
/// `RUN_WORKER=false`) never change while no worker of the new template exists.
pub fn deployments(
    owner: &Owner,
    spec: &ListaCompraReleaseSpec,
    workload: &Workload,
) -> [(Role, Deployment); 2] {
    let api = deployment_spec(&owner.name, spec, workload, Role::Api);
    let worker = deployment_spec(&owner.name, spec, workload, Role::Worker);
    let hash = identity(&api, &worker);
    let deployment = |role: Role, content: DeploymentSpec| {
        let mut metadata = meta(owner, role.name(&owner.name), &workload.version);
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert("app.kubernetes.io/name".to_owned(), role.app().to_owned());
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SPEC_HASH_ANNOTATION.to_owned(), hash.clone());
        Deployment {
            metadata,
            spec: Some(content),
            status: None,
        }
    };
    [
        (Role::Worker, deployment(Role::Worker, worker)),
        (Role::Api, deployment(Role::Api, api)),
    ]
}

/// The hash [`deployments`] stamps on both Deployments of `workload`: equal hashes mean the
/// same workload, and two Deployments with the same hash belong to the same one.
pub fn deployment_hash(
    release: &str,
    spec: &ListaCompraReleaseSpec,
    workload: &Workload,
) -> String {
    identity(
        &deployment_spec(release, spec, workload, Role::Api),
        &deployment_spec(release, spec, workload, Role::Worker),
    )
}

/// The hash of a workload's two Deployment specs. The worker's replicas are left out: they
/// are capacity, not identity (see `decide::deployments_spec`), so a scaled worker still runs
/// the workload it ran, and the scale reaches it with the next apply (every apply is a
/// server-side apply of the whole object).
fn identity(api: &DeploymentSpec, worker: &DeploymentSpec) -> String {
    let worker = DeploymentSpec {
        replicas: None,
        ..worker.clone()
    };
    hash_of(&(api, worker))
}

fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    format!("{:016x}", naming::fnv1a(&json))
}

/// The container of `role`: the API serves on the Service's port with the health gate's
/// probe paths and a drain before it stops; the worker runs `worker` (relay and AI jobs,
/// `/metrics` on the same port) with its own resources.
fn container(spec: &ListaCompraReleaseSpec, workload: &Workload, role: Role) -> Container {
    let port = spec.service.port;
    let (mut env, env_from) = env(spec, &workload.version);
    let common = Container {
        image: Some(workload.image.clone()),
        image_pull_policy: Some(pull_policy(spec.image.pull_policy)),
        env_from: (!env_from.is_empty()).then_some(env_from),
        security_context: Some(container_security()),
        ..Container::default()
    };
    match role {
        Role::Api => {
            // The relay and the AI worker run in the worker pods only.
            env.push(plain_env("RUN_WORKER", "false".to_owned()));
            Container {
                name: "api".to_owned(),
                args: Some(vec!["serve".to_owned()]),
                ports: Some(vec![ContainerPort {
                    name: Some("http".to_owned()),
                    container_port: port,
                    ..ContainerPort::default()
                }]),
                env: Some(env),
                resources: spec.pod.resources.clone(),
                liveness_probe: Some(http_probe(&spec.health.liveness_path, port, 10)),
                readiness_probe: Some(http_probe(&spec.health.readiness_path, port, 5)),
                lifecycle: drain(spec.pod.drain_seconds),
                ..common
            }
        }
        Role::Worker => Container {
            name: "worker".to_owned(),
            args: Some(vec!["worker".to_owned()]),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: port,
                ..ContainerPort::default()
            }]),
            env: Some(env),
            resources: spec.worker.resources.clone(),
            // No kubelet probes: images from before the worker Deployment run `worker`
            // without an HTTP endpoint (a rollback to one of them must work), and this
            // process has no traffic to be ready for. It exits non-zero when one of its
            // tasks dies, so the kubelet restarts it; its `/health`, `/ready` and
            // `/metrics` are for Prometheus and people.
            ..common
        },
    }
}

fn deployment_spec(
    release: &str,
    spec: &ListaCompraReleaseSpec,
    workload: &Workload,
    role: Role,
) -> DeploymentSpec {
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(naming::labels(release, &workload.version));
    pod_labels.insert("app.kubernetes.io/name".to_owned(), role.app().to_owned());
    let mut pod_annotations = spec.pod.annotations.clone();
    if let Some(secrets) = &workload.secrets {
        pod_annotations.insert(SECRETS_VERSION_ANNOTATION.to_owned(), secrets.clone());
    }
    let pod_annotations = (!pod_annotations.is_empty()).then_some(pod_annotations);
    let (replicas, grace) = match role {
        // The drain, then the requests in flight.
        Role::Api => (
            spec.replicas,
            spec.pod.drain_seconds + IN_FLIGHT_GRACE_SECONDS,
        ),
        // No traffic to drain; the job in hand is finished or, unacknowledged, redelivered.
        Role::Worker => (spec.worker.replicas, IN_FLIGHT_GRACE_SECONDS),
    };
    DeploymentSpec {
        replicas: Some(replicas),
        selector: LabelSelector {
            match_labels: Some(naming::app_selector(release, role.app())),
            ..LabelSelector::default()
        },
        strategy: Some(DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".to_owned())),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        }),
        progress_deadline_seconds: Some(spec.progress_deadline_seconds),
        revision_history_limit: Some(5),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels),
                annotations: pod_annotations,
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container(spec, workload, role)],
                service_account_name: spec.pod.service_account_name.clone(),
                automount_service_account_token: Some(false),
                image_pull_secrets: pull_secrets(&spec.image),
                security_context: Some(pod_security()),
                termination_grace_period_seconds: Some(grace),
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}

/// The Service in front of the API pods.
pub fn service(owner: &Owner, spec: &ListaCompraReleaseSpec) -> Service {
    let type_ = match spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let mut metadata = meta(owner, naming::workload_name(&owner.name), "");
    if let Some(labels) = metadata.labels.as_mut() {
        labels.remove(naming::VERSION_LABEL);
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(naming::selector_labels(&owner.name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: spec.service.port,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Which Job to build: its name, attempt, purpose and the schema revision it moves to.
#[derive(Debug, Clone)]
pub struct JobOrder {
    /// Job name ([`naming::job_name`]).
    pub name: String,
    /// The release attempt it belongs to.
    pub attempt: i64,
    /// Migrate forward, revert, or smoke-test.
    pub purpose: JobPurpose,
    /// Schema revision to move to (migrations and reverts only).
    pub revision: i64,
}

/// What a Job's container runs, and with which limits.
struct JobRun {
    /// Pod label `app.kubernetes.io/name`: never the API's, so the Service never selects it.
    app: &'static str,
    command: Vec<String>,
    env: Vec<EnvVar>,
    env_from: Vec<EnvFromSource>,
    backoff_limit: i32,
    active_deadline_seconds: i64,
    annotations: BTreeMap<String, String>,
}

impl JobRun {
    /// `<migrations.command> --to <revision>` with the API's environment.
    fn schema(spec: &ListaCompraReleaseSpec, version: &str, revision: i64) -> Self {
        let (env, env_from) = env(spec, version);
        let mut command = spec.migrations.command.clone();
        command.extend(["--to".to_owned(), revision.to_string()]);
        Self {
            app: "listacompra-migrations",
            command,
            env,
            env_from,
            backoff_limit: spec.migrations.backoff_limit,
            active_deadline_seconds: spec.migrations.active_deadline_seconds,
            annotations: spec.migrations.pod_annotations.clone(),
        }
    }

    /// `smokeTest.command` against the release's Service; a client, so none of the API's
    /// environment (no Secret). No retry: a flaky smoke test is a failed one.
    fn smoke(owner: &Owner, spec: &ListaCompraReleaseSpec) -> Self {
        let smoke = spec.smoke_test.clone().unwrap_or_default();
        Self {
            app: "listacompra-smoke",
            command: smoke.command,
            env: vec![plain_env("SMOKE_BASE_URL", service_url(owner, spec))],
            env_from: Vec::new(),
            backoff_limit: 0,
            active_deadline_seconds: smoke.active_deadline_seconds,
            annotations: smoke.pod_annotations,
        }
    }
}

/// The in-cluster URL of the release's Service.
pub fn service_url(owner: &Owner, spec: &ListaCompraReleaseSpec) -> String {
    format!(
        "http://{}.{}.svc:{}",
        naming::workload_name(&owner.name),
        owner.namespace,
        spec.service.port
    )
}

/// The Job of `order`, running `workload`'s image: a migration or revert Job
/// (`<migrations.command> --to <revision>` with the API's environment) or a smoke-test Job.
pub fn job(
    owner: &Owner,
    spec: &ListaCompraReleaseSpec,
    order: JobOrder,
    workload: &Workload,
) -> Job {
    let run = match order.purpose {
        JobPurpose::Migrate | JobPurpose::Revert => {
            JobRun::schema(spec, &workload.version, order.revision)
        }
        JobPurpose::Smoke | JobPurpose::SmokeStable => JobRun::smoke(owner, spec),
    };
    let mut labels = naming::labels(&owner.name, &workload.version);
    labels.insert("app.kubernetes.io/name".to_owned(), run.app.to_owned());
    // `migrate`, `revert`, `smoke` or `smoke-stable`: at most one Job of each per attempt.
    labels.insert(
        "listacompra.app/job".to_owned(),
        order.purpose.verb().to_owned(),
    );
    labels.insert(naming::ATTEMPT_LABEL.to_owned(), order.attempt.to_string());
    let mut metadata = meta(owner, order.name, &workload.version);
    metadata.labels = Some(labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(run.backoff_limit),
            active_deadline_seconds: Some(run.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!run.annotations.is_empty()).then_some(run.annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    containers: vec![Container {
                        name: order.purpose.verb().to_owned(),
                        image: Some(workload.image.clone()),
                        image_pull_policy: Some(pull_policy(spec.image.pull_policy)),
                        command: Some(run.command),
                        env: Some(run.env),
                        env_from: (!run.env_from.is_empty()).then_some(run.env_from),
                        security_context: Some(container_security()),
                        // A failing command's last log lines become its termination
                        // message, which the release's conditions quote.
                        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                        ..Container::default()
                    }],
                    service_account_name: spec.pod.service_account_name.clone(),
                    automount_service_account_token: Some(false),
                    image_pull_secrets: pull_secrets(&spec.image),
                    security_context: Some(pod_security()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The hash the controller stamped on an object it applied, if any.
pub fn applied_hash(metadata: &ObjectMeta) -> Option<&str> {
    metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
        .map(String::as_str)
}

/// Whether an existing object may be applied by the operator for `owner`: it is controlled
/// by this release (same uid). An object someone else created under the same name is never
/// taken over.
pub fn is_ours(metadata: &ObjectMeta, owner: &Owner) -> bool {
    metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true) && r.uid == owner.reference.uid && r.kind == owner.reference.kind
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::fixtures::spec;

    fn pod_spec(spec: &ListaCompraReleaseSpec) -> PodSpec {
        let workload = Workload {
            version: "1.0.0".into(),
            image: "reg/api:1.0.0".into(),
            spec: SpecSource::Current,
            secrets: None,
        };
        deployment_spec("lc", spec, &workload, Role::Api)
            .template
            .spec
            .expect("pod spec")
    }

    #[test]
    fn the_consumed_secrets_are_those_the_pod_template_names() {
        let mut s = spec("1.0.0");
        assert_eq!(
            consumed_secrets(&s).into_iter().collect::<Vec<_>>(),
            ["db", "j", "q", "r"]
        );
        s.env.env_from = vec![listacompra_crds::workload::EnvFromRef {
            config_map_name: Some("settings".into()),
            secret_name: Some("extra".into()),
        }];
        let names = consumed_secrets(&s);
        assert!(
            names.contains("extra") && !names.contains("settings"),
            "{names:?}"
        );
        let pod = pod_spec(&s);
        let container = &pod.containers[0];
        for name in &names {
            let in_env = container.env.iter().flatten().any(|v| {
                v.value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                    .is_some_and(|r| &r.name == name)
            });
            let in_from = container
                .env_from
                .iter()
                .flatten()
                .any(|f| f.secret_ref.as_ref().is_some_and(|r| &r.name == name));
            assert!(in_env || in_from, "{name} is not in the pod template");
        }
    }

    #[test]
    fn the_worker_runs_the_same_workload_in_a_deployment_of_its_own() {
        let owner = Owner {
            name: "lc".into(),
            namespace: "shop".into(),
            reference: OwnerReference::default(),
        };
        let mut s = spec("1.0.0");
        s.worker.replicas = 3;
        s.worker.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_owned(), Quantity("128Mi".into()))].into()),
            ..ResourceRequirements::default()
        });
        s.pod.annotations = [("team".to_owned(), "lists".to_owned())].into();
        let workload = Workload {
            version: "1.0.0".into(),
            image: "reg/api:1.0.0".into(),
            spec: SpecSource::Current,
            secrets: Some("s-1".into()),
        };
        let [(first, worker), (_, api)] = deployments(&owner, &s, &workload);
        assert_eq!(first, Role::Worker, "the worker is applied first");
        assert_eq!(worker.metadata.name.as_deref(), Some("lc-worker"));
        let hash = deployment_hash("lc", &s, &workload);
        for d in [&api, &worker] {
            assert_eq!(
                applied_hash(&d.metadata),
                Some(hash.as_str()),
                "one hash on both"
            );
        }

        let api = api.spec.expect("api spec");
        let worker = worker.spec.expect("worker spec");
        assert_eq!((api.replicas, worker.replicas), (Some(2), Some(3)));
        let pod_labels = |d: &DeploymentSpec| {
            d.template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default()
        };
        let selects = |selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let service_selector = service(&owner, &s)
            .spec
            .and_then(|s| s.selector)
            .unwrap_or_default();
        assert!(selects(&service_selector, &pod_labels(&api)));
        assert!(
            !selects(&service_selector, &pod_labels(&worker)),
            "the Service never sends requests to a worker"
        );
        let worker_selector = worker.selector.match_labels.clone().unwrap_or_default();
        assert!(selects(&worker_selector, &pod_labels(&worker)));
        assert!(
            !selects(&worker_selector, &pod_labels(&api)),
            "the worker Deployment never adopts API pods"
        );

        let annotations = |d: &DeploymentSpec| {
            d.template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default()
        };
        for d in [&api, &worker] {
            let a = annotations(d);
            assert_eq!(
                a.get(SECRETS_VERSION_ANNOTATION).map(String::as_str),
                Some("s-1")
            );
            assert_eq!(a.get("team").map(String::as_str), Some("lists"));
        }
        let container =
            |d: &DeploymentSpec| d.template.spec.as_ref().expect("pod spec").containers[0].clone();
        let (a, w) = (container(&api), container(&worker));
        assert_eq!(a.image, w.image);
        assert_eq!(w.args, Some(vec!["worker".to_owned()]));
        assert_eq!(w.resources, s.worker.resources);
        let vars = |c: &Container| {
            c.env
                .iter()
                .flatten()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let (mut api_vars, worker_vars) = (vars(&a), vars(&w));
        assert_eq!(
            api_vars.remove("RUN_WORKER"),
            Some(Some("false".to_owned())),
            "the API pods run no worker"
        );
        assert_eq!(api_vars, worker_vars, "the same environment otherwise");
        assert!(
            w.liveness_probe.is_none() && w.readiness_probe.is_none(),
            "an image from before the worker Deployment serves no probe endpoint"
        );
        assert!(w.lifecycle.is_none(), "no traffic to drain");

        let mut scaled = s.clone();
        scaled.worker.replicas = 1;
        assert_eq!(
            deployment_hash("lc", &scaled, &workload),
            hash,
            "a scaled worker runs the same workload"
        );
        let [(_, worker), _] = deployments(&owner, &scaled, &workload);
        assert_eq!(
            worker.spec.and_then(|d| d.replicas),
            Some(1),
            "and the apply scales it"
        );
        let mut more_api = s.clone();
        more_api.replicas = 5;
        assert_ne!(
            deployment_hash("lc", &more_api, &workload),
            hash,
            "the API's replicas count"
        );
    }

    #[test]
    fn job_pods_are_never_selected_by_the_service() {
        let owner = Owner {
            name: "lc".into(),
            namespace: "ns".into(),
            reference: OwnerReference::default(),
        };
        let workload = Workload {
            version: "1.0.0".into(),
            image: "reg/api:1.0.0".into(),
            spec: SpecSource::Current,
            secrets: None,
        };
        let order = JobOrder {
            name: "lc-migrate-1-0-0-0".into(),
            attempt: 3,
            purpose: JobPurpose::Migrate,
            revision: 4,
        };
        let job = job(&owner, &spec("1.0.0"), order, &workload);
        let labels = job
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.labels)
            .unwrap_or_default();
        let selector = service(&owner, &spec("1.0.0"))
            .spec
            .and_then(|s| s.selector)
            .unwrap_or_default();
        assert!(!selector.is_empty());
        assert!(
            !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "the Service selects the Job's pod: {labels:?}"
        );
        assert_eq!(
            labels.get(naming::ATTEMPT_LABEL).map(String::as_str),
            Some("3")
        );
    }

    #[test]
    fn the_smoke_job_is_a_client_of_the_service_with_no_secret_and_no_retry() {
        let owner = Owner {
            name: "lc".into(),
            namespace: "shop".into(),
            reference: OwnerReference::default(),
        };
        let mut spec = spec("1.0.0");
        spec.service.port = 8080;
        spec.smoke_test = Some(listacompra_crds::smoke::SmokeTestSpec {
            pod_annotations: [("sidecar.istio.io/inject".to_owned(), "false".to_owned())].into(),
            ..Default::default()
        });
        let workload = Workload {
            version: "1.0.0".into(),
            image: "reg/api:1.0.0".into(),
            spec: SpecSource::Current,
            secrets: None,
        };
        let order = JobOrder {
            name: "lc-smoke-1-0-0-0".into(),
            attempt: 2,
            purpose: JobPurpose::Smoke,
            revision: 0,
        };
        let job = job(&owner, &spec, order, &workload);
        let job_spec = job.spec.expect("a Job spec");
        assert_eq!(job_spec.backoff_limit, Some(0));
        assert_eq!(job_spec.active_deadline_seconds, Some(180));
        let template = job_spec.template;
        let meta = template.metadata.expect("pod metadata");
        let labels = meta.labels.unwrap_or_default();
        assert_eq!(
            labels.get("listacompra.app/job").map(String::as_str),
            Some("smoke")
        );
        assert_eq!(
            meta.annotations
                .unwrap_or_default()
                .get("sidecar.istio.io/inject")
                .map(String::as_str),
            Some("false")
        );
        let container = &template.spec.expect("pod spec").containers[0];
        assert_eq!(container.image.as_deref(), Some("reg/api:1.0.0"));
        assert_eq!(
            container.command,
            Some(vec!["listacompra-api".to_owned(), "smoke".to_owned()])
        );
        let env: Vec<_> = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref(), e.value_from.is_some()))
            .collect();
        assert_eq!(
            env,
            [("SMOKE_BASE_URL", Some("http://lc-api.shop.svc:8080"), false)],
            "the smoke test gets the Service's URL and nothing of the API's secrets"
        );
        assert_eq!(container.env_from, None);
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    fn plain_vars(pod: &PodSpec) -> BTreeMap<String, Option<String>> {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|v| v.value_from.is_none())
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect()
    }

    #[test]
    fn tracing_gives_the_pods_the_otel_variables_and_nothing_without_it() {
        let vars = plain_vars(&pod_spec(&spec("1.0.0")));
        assert!(!vars.keys().any(|k| k.starts_with("OTEL_")), "{vars:?}");

        let mut traced = spec("1.0.0");
        traced.env.tracing = Some(listacompra_crds::workload::TracingSpec {
            otlp_endpoint: "http://jaeger.observability:4318".into(),
            sampling_ratio: Some("0.25".into()),
        });
        let vars = plain_vars(&pod_spec(&traced));
        let get = |k: &str| vars.get(k).cloned().flatten();
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://jaeger.observability:4318")
        );
        assert_eq!(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            Some("parentbased_traceidratio")
        );
        assert_eq!(get("OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.25"));
        assert_eq!(
            get("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
            Some("service.version=1.0.0")
        );

        traced.env.tracing = Some(listacompra_crds::workload::TracingSpec {
            otlp_endpoint: "https://otel.example:4318".into(),
            sampling_ratio: None,
        });
        let vars = plain_vars(&pod_spec(&traced));
        assert_eq!(
            vars.get("OTEL_TRACES_SAMPLER_ARG")
                .cloned()
                .flatten()
                .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn s3_gives_the_pods_the_bucket_and_its_credentials_by_reference_only() {
        let vars = plain_vars(&pod_spec(&spec("1.0.0")));
        assert!(!vars.keys().any(|k| k.starts_with("S3_")), "{vars:?}");

        let mut with_s3 = spec("1.0.0");
        with_s3.env.s3 = serde_json::from_value(serde_json::json!({
            "bucket": "lc-attachments",
            "endpoint": "http://minio.storage:9000",
            "forcePathStyle": true,
            "credentialsSecretRef": { "name": "lc-s3" },
        }))
        .expect("an s3 spec");
        let pod = pod_spec(&with_s3);
        let vars = plain_vars(&pod);
        let get = |k: &str| vars.get(k).cloned().flatten();
        assert_eq!(get("S3_BUCKET").as_deref(), Some("lc-attachments"));
        assert_eq!(get("S3_REGION").as_deref(), Some("us-east-1"));
        assert_eq!(
            get("S3_ENDPOINT").as_deref(),
            Some("http://minio.storage:9000")
        );
        assert_eq!(get("S3_FORCE_PATH_STYLE").as_deref(), Some("true"));
        assert!(!vars.contains_key("S3_PUBLIC_ENDPOINT"));
        let secret = |name: &str| {
            pod.containers[0]
                .env
                .iter()
                .flatten()
                .find(|v| v.name == name)
                .and_then(|v| v.value_from.as_ref())
                .and_then(|f| f.secret_key_ref.as_ref())
                .map(|r| (r.name.clone(), r.key.clone()))
        };
        assert_eq!(
            secret("S3_ACCESS_KEY_ID"),
            Some(("lc-s3".to_owned(), "accessKeyId".to_owned()))
        );
        assert_eq!(
            secret("S3_SECRET_ACCESS_KEY"),
            Some(("lc-s3".to_owned(), "secretAccessKey".to_owned()))
        );
        assert!(
            crate::references::of(&with_s3)
                .iter()
                .any(|r| r.name == "lc-s3" && r.field == "spec.env.s3.credentialsSecretRef"),
            "the credentials Secret is checked before launch"
        );
    }

    #[test]
    fn probes_outlast_one_dependency_check_of_the_api() {
        // The API checks each dependency for at most 2 s (health::CHECK_TIMEOUT); a probe
        // that gave up first would take a pod out for a dependency /ready only reports.
        let pod = pod_spec(&spec("1.0.0"));
        let container = &pod.containers[0];
        for probe in [&container.readiness_probe, &container.liveness_probe] {
            let timeout = probe.as_ref().and_then(|p| p.timeout_seconds);
            assert!(timeout.is_some_and(|t| t > 2), "{timeout:?}");
        }
    }

    #[test]
    fn pods_drain_before_they_stop() {
        let pod = pod_spec(&spec("1.0.0"));
        let pre_stop = pod.containers[0]
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds);
        assert_eq!(pre_stop, Some(5), "default drain is a 5 s preStop sleep");
        assert_eq!(pod.termination_grace_period_seconds, Some(35));

        let mut no_drain = spec("1.0.0");
        no_drain.pod.drain_seconds = 0;
        let pod = pod_spec(&no_drain);
        assert!(
            pod.containers[0].lifecycle.is_none(),
            "drainSeconds 0: no preStop"
        );
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
    }

    #[test]
    fn only_objects_controlled_by_the_release_are_ours() {
        let owner = Owner {
            name: "lc".into(),
            namespace: "ns".into(),
            reference: OwnerReference {
                api_version: "listacompra.app/v1alpha1".into(),
                kind: "ListaCompraRelease".into(),
                name: "lc".into(),
                uid: "u-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        };
        let with = |refs: Vec<OwnerReference>| ObjectMeta {
            owner_references: Some(refs),
            ..ObjectMeta::default()
        };
        assert!(is_ours(&with(vec![owner.reference.clone()]), &owner));
        assert!(
            !is_ours(&ObjectMeta::default(), &owner),
            "no owner: someone else's"
        );
        let other_uid = OwnerReference {
            uid: "u-2".into(),
            ..owner.reference.clone()
        };
        assert!(
            !is_ours(&with(vec![other_uid]), &owner),
            "a release of the same name that was deleted and re-created"
        );
        let not_controller = OwnerReference {
            controller: None,
            ..owner.reference.clone()
        };
        assert!(!is_ours(&with(vec![not_controller]), &owner));
    }
}
