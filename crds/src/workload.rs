//! What to run: image, replicas, resources, Service, pod metadata and the API's environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS subdomain (RFC 1123), as Kubernetes requires of Secret, ConfigMap and
/// ServiceAccount names: lower-case alphanumerics, `-` and `.`, starting and ending with an
/// alphanumeric.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key of a Secret or ConfigMap: alphanumerics, `-`, `_` and `.`.
pub const CONFIG_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// An `http` or `https` URL without spaces (an OTLP endpoint).
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s]*)?$";

/// A ratio from 0 to 1 as a decimal string of at most six decimals (no floats in specs).
pub const RATIO_PATTERN: &str = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$";

/// An image repository as the distribution spec's reference grammar has it: an optional
/// registry host (with a `.` or a port, or `localhost`) and lower-case path components.
pub const IMAGE_REPOSITORY_PATTERN: &str = r"^(((localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:[0-9]+)?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9]+)/)?[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";

/// CEL: the `resources` of the object are quantities (a ResourceRequirements field of a CRD
/// is only a map of strings to the API server, which would accept `cpu: lots` and leave the
/// Deployment to fail).
pub const RESOURCES_ARE_QUANTITIES: &str = "!has(self.resources) || ((!has(self.resources.limits) || !('cpu' in self.resources.limits) || isQuantity(string(self.resources.limits['cpu']))) && (!has(self.resources.limits) || !('memory' in self.resources.limits) || isQuantity(string(self.resources.limits['memory']))) && (!has(self.resources.limits) || !('ephemeral-storage' in self.resources.limits) || isQuantity(string(self.resources.limits['ephemeral-storage']))) && (!has(self.resources.requests) || !('cpu' in self.resources.requests) || isQuantity(string(self.resources.requests['cpu']))) && (!has(self.resources.requests) || !('memory' in self.resources.requests) || isQuantity(string(self.resources.requests['memory']))) && (!has(self.resources.requests) || !('ephemeral-storage' in self.resources.requests) || isQuantity(string(self.resources.requests['ephemeral-storage']))))";

/// The container image of the API server (and of its migration Job).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tag) && has(self.digest))").message("set either image.tag or image.digest, not both"))]
pub struct ImageSpec {
    /// Image repository without tag or digest, e.g. `ghcr.io/listacompra/api`: an optional
    /// registry host, then lower-case path components (the distribution spec's grammar).
    #[schemars(length(min = 1, max = 255), regex(pattern = IMAGE_REPOSITORY_PATTERN))]
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
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN)))]
    pub pull_secrets: Vec<String>,
}

impl ImageSpec {
    /// The image reference pods of `version` run: `repository@digest`, else
    /// `repository:tag`, else `repository:version`.
    pub fn reference(&self, version: &str) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("{}@{digest}", self.repository),
            (None, Some(tag)) => format!("{}:{tag}", self.repository),
            (None, None) => format!("{}:{version}", self.repository),
        }
    }
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
    /// Name of the Secret (a DNS subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = CONFIG_KEY_PATTERN))]
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
    /// More variables, each from a whole ConfigMap or Secret (for example `RUST_LOG`, or
    /// `OTEL_EXPORTER_OTLP_HEADERS` from a Secret when the trace collector wants a token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromRef>,
    /// Traces of the API pods, exported with OpenTelemetry over OTLP/HTTP (to Jaeger or a
    /// collector). Absent: no traces (log lines then carry no trace id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
    /// The object store of attachments (`S3_BUCKET` and the other `S3_*` variables): an S3
    /// bucket, or a bucket of any S3-protocol server. Absent: attachments are off and their
    /// endpoints answer 501.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// Where attachments are stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.forcePathStyle || ((!has(self.endpoint) || !self.endpoint.matches('^https?://[0-9.]+(:[0-9]+)?(/.*)?$')) && (!has(self.publicEndpoint) || !self.publicEndpoint.matches('^https?://[0-9.]+(:[0-9]+)?(/.*)?$')))").message("an endpoint or publicEndpoint given by IP address cannot hold the bucket in its host name: set forcePathStyle: true").field_path(".forcePathStyle"))]
#[x_kube(validation = Rule::new("self.forcePathStyle || !self.bucket.contains('.') || (has(self.endpoint) && self.endpoint.startsWith('http://') && (!has(self.publicEndpoint) || self.publicEndpoint.startsWith('http://')))").message("a bucket name with dots breaks TLS in virtual-hosted style (the certificate covers one label): set forcePathStyle: true").field_path(".forcePathStyle"))]
pub struct S3Spec {
    /// `S3_BUCKET`: the bucket (3 to 63 lower-case letters, digits, dots and hyphens).
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// `S3_REGION` (default `us-east-1`): the region the requests are signed for.
    #[serde(default = "default_region")]
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub region: String,
    /// `S3_ENDPOINT`: where the API pods reach the store, for example
    /// `http://minio.storage:9000`. Default: AWS's endpoint of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = HTTP_URL_PATTERN))]
    pub endpoint: Option<String>,
    /// `S3_PUBLIC_ENDPOINT`: where clients reach the store, which the presigned upload and
    /// download URLs name. Default: `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = HTTP_URL_PATTERN))]
    pub public_endpoint: Option<String>,
    /// `S3_FORCE_PATH_STYLE`: address the bucket as `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key` (most S3-protocol servers other than AWS want it).
    #[serde(default)]
    pub force_path_style: bool,
    /// The Secret with the access key id and secret access key (`S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY`).
    pub credentials_secret_ref: S3CredentialsRef,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// A Secret holding S3 credentials, and its keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    /// Name of the Secret (a DNS subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The key of the access key id (default `accessKeyId`).
    #[serde(default = "default_access_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = CONFIG_KEY_PATTERN))]
    pub access_key_id_key: String,
    /// The key of the secret access key (default `secretAccessKey`).
    #[serde(default = "default_secret_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = CONFIG_KEY_PATTERN))]
    pub secret_access_key_key: String,
}

fn default_access_key_key() -> String {
    "accessKeyId".to_owned()
}

fn default_secret_key_key() -> String {
    "secretAccessKey".to_owned()
}

impl S3CredentialsRef {
    /// The access key id's key of the Secret.
    pub fn access_key_id(&self) -> SecretKeyRef {
        SecretKeyRef {
            name: self.name.clone(),
            key: self.access_key_id_key.clone(),
        }
    }

    /// The secret access key's key of the Secret.
    pub fn secret_access_key(&self) -> SecretKeyRef {
        SecretKeyRef {
            name: self.name.clone(),
            key: self.secret_access_key_key.clone(),
        }
    }
}

/// Where the API pods send their traces, and how many.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/HTTP endpoint, for example
    /// `http://jaeger-collector.observability:4318` (traces go to `/v1/traces` under it).
    #[schemars(length(min = 8, max = 2048), regex(pattern = HTTP_URL_PATTERN))]
    pub otlp_endpoint: String,
    /// The share of new traces to keep, from `"0"` to `"1"` (default `"1"`, every trace), as
    /// a decimal string. A request whose caller sends a sampled `traceparent` is always
    /// traced (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RATIO_PATTERN))]
    pub sampling_ratio: Option<String>,
}

/// All keys of a ConfigMap or of a Secret as environment variables (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapName) != has(self.secretName)").message("set exactly one of configMapName or secretName"))]
pub struct EnvFromRef {
    /// Name of a ConfigMap whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub config_map_name: Option<String>,
    /// Name of a Secret whose keys become variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
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

/// Pod-level settings of the API Deployment (labels, annotations and ServiceAccount also of
/// the worker's).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.labels) || !self.labels.exists(k, k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'listacompra.app/release'])").message("pod.labels must not set app.kubernetes.io/name, app.kubernetes.io/instance, app.kubernetes.io/version, app.kubernetes.io/managed-by or listacompra.app/release: the operator sets them (its Service and Deployment select on them)").field_path(".labels"))]
#[x_kube(validation = Rule::new("!has(self.labels) || self.labels.all(k, self.labels[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))").message("pod.labels values must be label values: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric").field_path(".labels"))]
#[x_kube(validation = Rule::new(RESOURCES_ARE_QUANTITIES).message("pod.resources: cpu, memory and ephemeral-storage requests and limits must be quantities such as 500m, 0.5, 256Mi or 1Gi").field_path(".resources"))]
pub struct PodSettings {
    /// Labels added to the API and worker pods. The operator's own labels (`app.kubernetes.io/name`,
    /// `instance`, `version`, `managed-by`, `listacompra.app/release`) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the API and worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
    /// ServiceAccount the API and worker pods run as (a DNS subdomain). Defaults to the namespace's
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
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

/// The AI worker and outbox relay: a Deployment of their own (`<release>-worker`), running
/// the same image, version and environment as the API pods, rolled out, held and rolled
/// back with them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(RESOURCES_ARE_QUANTITIES).message("worker.resources: cpu, memory and ephemeral-storage requests and limits must be quantities such as 500m, 0.5, 256Mi or 1Gi").field_path(".resources"))]
pub struct WorkerSpec {
    /// Number of worker pods: the runbook's "scale the replica" when AI jobs queue up. `0`
    /// stops AI suggestions and the outbox relay until scaled up again: requests and events
    /// wait in the database and the queue, nothing is lost. At `0` the operator creates no
    /// worker Deployment (a release created with `0` has none until scaled up); one that
    /// exists is kept, scaled to none.
    #[serde(default = "default_worker_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        Self {
            replicas: default_worker_replicas(),
            resources: None,
        }
    }
}

fn default_worker_replicas() -> i32 {
    1
}
