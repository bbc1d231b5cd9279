//! What to run: image, replicas, resources, Service, pod metadata and the API's environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The container image of the API server (and of its migration Job).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tag) && has(self.digest))").message("set either image.tag or image.digest, not both"))]
pub struct ImageSpec {
    /// Image repository without tag or digest, e.g. `ghcr.io/listacompra/api`.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^@\s]+$"))]
    pub repository: String,
    /// Image tag. Defaults to `spec.version` when neither tag nor digest is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub tag: Option<String>,
    /// Image digest, e.g. `sha256:0123...`. Pins the exact image; the tag is then not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,
    /// When the kubelet pulls the image.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Names of Secrets (type `kubernetes.io/dockerconfigjson`) used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub pull_secrets: Vec<String>,
}

/// Image pull policy, as in a Pod's `imagePullPolicy`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Pull on every start.
    Always,
    /// Never pull.
    Never,
}

/// A key of a Secret in the release's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The environment of the API server, by reference only: secrets never appear in the spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiEnvironment {
    /// `DATABASE_URL`: the PostgreSQL connection URL.
    pub database_url: SecretKeyRef,
    /// `REDIS_URL`: the Redis URL of the AI suggestion cache.
    pub redis_url: SecretKeyRef,
    /// `RABBITMQ_URL`: the AMQP URL of the outbox broker.
    pub rabbitmq_url: SecretKeyRef,
    /// `JWT_SECRET`: the key that signs access tokens.
    pub jwt_secret: SecretKeyRef,
    /// `PPLX_API_KEY`: the Perplexity API key. Without it the API uses its offline suggestion
    /// provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pplx_api_key: Option<SecretKeyRef>,
    /// `HEALTHCHECK_TOKEN`: the token that unlocks per-dependency detail on `/ready`. The health
    /// gate sends it too, unless `spec.health.tokenSecretRef` names another Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_token: Option<SecretKeyRef>,
    /// More variables, each from a whole ConfigMap or Secret (for example `RUST_LOG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromRef>,
}

/// All keys of a ConfigMap or of a Secret as environment variables (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapName) != has(self.secretName)").message("set exactly one of configMapName or secretName"))]
pub struct EnvFromRef {
    /// Name of a ConfigMap whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: Option<String>,
    /// Name of a Secret whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// The Service in front of the API pods. The container listens on the same port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Port of the Service and of the API container.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Type of the Service.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            port: default_port(),
            type_: ServiceType::default(),
        }
    }
}

fn default_port() -> i32 {
    8080
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also exposed on every node's port.
    NodePort,
    /// Also exposed through a cloud load balancer.
    LoadBalancer,
}

/// Pod-level settings of the API Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Labels added to the API pods (the operator's own selector labels always win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the API pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// ServiceAccount the API pods run as. Defaults to the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// CPU and memory requests and limits of the API container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Seconds a terminating API pod keeps serving before it is asked to stop (a `preStop`
    /// sleep): the time endpoint removal takes to reach every proxy and load balancer, so
    /// that connections routed to the pod just before it left the Service still find it
    /// listening. The pod's grace period is this plus 30 s for in-flight requests. `0` stops
    /// the pod as soon as it is deleted (requests may then fail during a rollout).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 300))]
    pub drain_seconds: i64,
}

impl Default for PodSettings {
    fn default() -> Self {
        Self {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            service_account_name: None,
            resources: None,
            drain_seconds: default_drain_seconds(),
        }
    }
}

fn default_drain_seconds() -> i64 {
    5
}
