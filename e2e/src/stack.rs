//! The full stack in one namespace: a fresh database, the Secrets a platform team would
//! create, the operator, and the workload runner playing kubelet and kube-proxy for the
//! real `listacompra-api` processes, scraped by the real Prometheus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use listacompra_crds::ListaCompraRelease;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::binaries::workspace_binary;
use crate::faults::{self, FaultProxy};
use crate::operator::OperatorProcess;
use crate::runner::{Image, RUN_ANNOTATION, Runner, RunnerConfig};
use crate::services::Services;
use crate::{Error, Result};

/// Name of the release (and the prefix of the objects the operator makes).
pub const RELEASE: &str = "listacompra";
/// Image repository of the releases; the runner reads the tag.
pub const IMAGE: &str = "registry.local/listacompra/api";
/// The Service the operator creates for the release.
pub const SERVICE: &str = "listacompra-api";

/// How the stack behaves.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Extra environment by image tag (see [`RunnerConfig::builds`]).
    pub builds: BTreeMap<String, BTreeMap<String, String>>,
    /// API replicas per release.
    pub replicas: i32,
    /// Two operator replicas electing a leader (one stands by), instead of one without
    /// leader election.
    pub operator_standby: bool,
    /// Where logs go.
    pub log_dir: PathBuf,
    /// The PostgreSQL server of the release's database, as a superuser URL of its `postgres`
    /// database; `None`: the shared one of `services.sh`.
    pub postgres_admin_url: Option<String>,
    /// More images the runner runs, by repository (see [`RunnerConfig::images`]).
    pub images: BTreeMap<String, Image>,
    /// The PostgreSQL server of `postgres_admin_url` as a StatefulSet of the namespace (its
    /// pod annotated for the runner), so that it can be stopped and started as a workload:
    /// created, and its pod ready, before the stack's database is.
    pub database: Option<StatefulSet>,
    /// The pods and Jobs reach PostgreSQL through a [`FaultProxy`] the test can slow or cut
    /// ([`Stack::database_faults`]); the harness's own queries go straight to it.
    pub database_faults: bool,
    /// The kubeconfig the operator runs with (a ServiceAccount's with the chart's RBAC, say);
    /// `None`: the cluster admin's.
    pub operator_kubeconfig: Option<PathBuf>,
}

impl StackOptions {
    /// The story's stack: two replicas, the story's builds, logs in `log_dir`.
    pub fn story(log_dir: PathBuf) -> Self {
        Self {
            builds: crate::story::builds(),
            replicas: 2,
            operator_standby: false,
            log_dir,
            postgres_admin_url: None,
            images: BTreeMap::new(),
            database: None,
            database_faults: false,
            operator_kubeconfig: None,
        }
    }
}

/// The Lease the operator replicas elect a leader with (the operator's default name, in the
/// stack's namespace, its `POD_NAMESPACE`).
pub const LEASE: &str = "listacompra-operator";

/// The environment of an operator replica `identity` that elects a leader: a short lease,
/// so that a killed leader's successor takes over within seconds.
fn elected(identity: &str) -> Vec<(String, String)> {
    [
        ("LEADER_ELECTION", "true"),
        ("LEASE_DURATION_SECONDS", "10"),
        ("POD_NAME", identity),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The running stack of one namespace.
pub struct Stack {
    /// Client of the local cluster.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
    /// The workload runner.
    pub runner: Runner,
    /// The operator process (replica `a` with [`StackOptions::operator_standby`]).
    pub operator: OperatorProcess,
    /// With [`StackOptions::operator_standby`], the second replica (`b`).
    pub standby: Option<OperatorProcess>,
    /// `http://127.0.0.1:port` of the API Service.
    pub api_url: String,
    /// The Prometheus the gates query.
    pub prometheus_url: String,
    /// With [`StackOptions::database_faults`], the wire between the pods and PostgreSQL.
    pub database_faults: Option<FaultProxy>,
    database_url: String,
    admin_url: String,
    database: String,
    replicas: i32,
    /// The object store of attachments: (endpoint, bucket, region).
    s3: (String, String, String),
}

impl Stack {
    /// Creates the database, Secrets and ConfigMap in `namespace`, and starts the runner and
    /// the operator.
    pub async fn start(
        client: Client,
        kubeconfig: &Path,
        namespace: &str,
        services: &Services,
        options: StackOptions,
    ) -> Result<Self> {
        let admin_url = match &options.postgres_admin_url {
            Some(url) => url.clone(),
            None => services.postgres_admin_url()?.to_owned(),
        };
        std::fs::create_dir_all(&options.log_dir).map_err(|source| Error::Io {
            action: format!("creating {}", options.log_dir.display()),
            source,
        })?;
        let runner = Runner::start(
            client.clone(),
            namespace,
            RunnerConfig {
                api_binary: workspace_binary("listacompra-api")?,
                images: options.images.clone(),
                cluster: None,
                builds: options.builds.clone(),
                prometheus_targets: Some(services.prometheus_targets_dir()?),
                log_dir: options.log_dir.join("pods"),
            },
        )?;
        if let Some(database) = &options.database {
            start_database(&client, namespace, &runner, database, &admin_url).await?;
        }
        let database = format!("lc_{}", namespace.replace('-', "_"));
        let database_url = crate::services::with_database(&admin_url, &database)?;
        let mut admin = connect(&admin_url).await?;
        // A database left by an earlier run of the same namespace (the demo's) goes first.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .map_err(|source| Error::Database {
            action: format!("dropping the old database {database}"),
            source,
        })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .execute(&mut admin)
        .await
        .map_err(|source| Error::Database {
            action: format!("creating database {database}"),
            source,
        })?;

        let database_faults = if options.database_faults {
            Some(FaultProxy::start(faults::upstream_of(&database_url)?).await?)
        } else {
            None
        };
        let pods_database_url = match &database_faults {
            Some(proxy) => faults::through(&database_url, proxy.address())?,
            None => database_url.clone(),
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let jwt = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        for (name, key, value) in [
            ("listacompra-db", "url", pods_database_url.as_str()),
            ("listacompra-redis", "url", services.redis_url()?),
            ("listacompra-rabbitmq", "url", services.rabbitmq_url()?),
            ("listacompra-jwt", "JWT_SECRET", jwt.as_str()),
            ("listacompra-health", "token", token.as_str()),
        ] {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                string_data: Some([(key.to_owned(), value.to_owned())].into()),
                ..Secret::default()
            };
            create(&secrets, &secret, name).await?;
        }
        // The object store's credentials, under the keys spec.env.s3 reads by default.
        let env = services.env();
        let s3_credentials = Secret {
            metadata: ObjectMeta {
                name: Some("listacompra-s3".to_owned()),
                ..ObjectMeta::default()
            },
            string_data: Some(
                [
                    (
                        "accessKeyId".to_owned(),
                        env.get("S3_ACCESS_KEY_ID")?.to_owned(),
                    ),
                    (
                        "secretAccessKey".to_owned(),
                        env.get("S3_SECRET_ACCESS_KEY")?.to_owned(),
                    ),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        create(&secrets, &s3_credentials, "listacompra-s3").await?;
        let s3 = (
            env.get("S3_ENDPOINT")?.to_owned(),
            env.get("S3_BUCKET")?.to_owned(),
            env.get("S3_REGION")?.to_owned(),
        );
        // Queues and exchanges of this namespace's deployment, apart from other tests'.
        let runtime = ConfigMap {
            metadata: ObjectMeta {
                name: Some("listacompra-runtime".to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(
                [
                    ("AMQP_PREFIX".to_owned(), namespace.to_owned()),
                    ("LOG_FORMAT".to_owned(), "json".to_owned()),
                ]
                .into(),
            ),
            ..ConfigMap::default()
        };
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        create(&config_maps, &runtime, "listacompra-runtime").await?;

        let api_url = format!("http://{}", runner.service_address(SERVICE).await?);
        let log = |name: &str| options.log_dir.join(name);
        let kubeconfig = options.operator_kubeconfig.as_deref().unwrap_or(kubeconfig);
        let (operator, standby) = if options.operator_standby {
            (
                OperatorProcess::start_with_env(
                    kubeconfig,
                    namespace,
                    log("operator.log"),
                    elected("a"),
                )?,
                Some(OperatorProcess::start_with_env(
                    kubeconfig,
                    namespace,
                    log("operator-b.log"),
                    elected("b"),
                )?),
            )
        } else {
            (
                OperatorProcess::start(kubeconfig, namespace, log("operator.log"))?,
                None,
            )
        };
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
            runner,
            operator,
            standby,
            api_url,
            prometheus_url: services.prometheus_url()?.to_owned(),
            database_faults,
            database_url,
            admin_url,
            database,
            replicas: options.replicas,
            s3,
        })
    }

    /// The release manifest of `version` needing schema revision `schema`: the health gate
    /// through the Service, the smoke test (a Job the runner runs against the Service), the
    /// runbook's KPIs (the CRD's defaults) from Prometheus with a
    /// short analysis, and attachments in the local S3 server.
    pub fn manifest(&self, version: &str, schema: i64) -> Value {
        json!({
            "apiVersion": "listacompra.app/v1alpha1",
            "kind": "ListaCompraRelease",
            "metadata": { "name": RELEASE, "namespace": self.namespace },
            "spec": {
                "version": version,
                "image": { "repository": IMAGE },
                "replicas": self.replicas,
                "pod": { "annotations": { RUN_ANNOTATION: "true" } },
                "env": {
                    "databaseUrl": { "name": "listacompra-db", "key": "url" },
                    "redisUrl": { "name": "listacompra-redis", "key": "url" },
                    "rabbitmqUrl": { "name": "listacompra-rabbitmq", "key": "url" },
                    // One Secret for the key and, once rotated, the previous key (through
                    // envFrom: JWT_SECRET_PREVIOUS), so a rotation is one atomic change.
                    "jwtSecret": { "name": "listacompra-jwt", "key": "JWT_SECRET" },
                    "healthcheckToken": { "name": "listacompra-health", "key": "token" },
                    "envFrom": [
                        { "configMapName": "listacompra-runtime" },
                        { "secretName": "listacompra-jwt" }
                    ],
                    "s3": {
                        "bucket": self.s3.1,
                        "region": self.s3.2,
                        "endpoint": self.s3.0,
                        "forcePathStyle": true,
                        "credentialsSecretRef": { "name": "listacompra-s3" }
                    }
                },
                "migrations": {
                    "schemaVersion": schema,
                    "backoffLimit": 0,
                    "podAnnotations": { RUN_ANNOTATION: "true" }
                },
                "health": {
                    "baseUrl": self.api_url,
                    "tokenSecretRef": { "name": "listacompra-health", "key": "token" },
                    "intervalSeconds": 1,
                    "timeoutSeconds": 1,
                    "successThreshold": 3,
                    "failureThreshold": 3
                },
                "smokeTest": {
                    "activeDeadlineSeconds": 120,
                    "podAnnotations": { RUN_ANNOTATION: "true" }
                },
                "analysis": {
                    "prometheus": { "address": self.prometheus_url },
                    "initialDelaySeconds": 10,
                    "intervalSeconds": 5,
                    "measurements": 3
                },
                "progressDeadlineSeconds": 300
            }
        })
    }

    /// Applies `manifest` the way a GitOps tool does (server-side apply).
    pub async fn apply(&self, manifest: &Value) -> Result<()> {
        self.releases()
            .patch(
                RELEASE,
                &PatchParams::apply("e2e-gitops").force(),
                &Patch::Apply(manifest),
            )
            .await
            .map_err(|source| Error::Kube {
                action: "applying the release".to_owned(),
                source,
            })?;
        Ok(())
    }

    /// The release API of the namespace.
    pub fn releases(&self) -> Api<ListaCompraRelease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The release as it is now.
    pub async fn release(&self) -> Result<ListaCompraRelease> {
        self.releases()
            .get(RELEASE)
            .await
            .map_err(|source| Error::Kube {
                action: "reading the release".to_owned(),
                source,
            })
    }

    /// The names of the release's Jobs of `purpose` (`migrate`, `revert`, `smoke`), sorted.
    pub async fn jobs(&self, purpose: &str) -> Result<Vec<String>> {
        let api: Api<k8s_openapi::api::batch::v1::Job> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let list = api
            .list(
                &kube::api::ListParams::default().labels(&format!("listacompra.app/job={purpose}")),
            )
            .await
            .map_err(|source| Error::Kube {
                action: format!("listing the {purpose} Jobs"),
                source,
            })?;
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Rotates the JWT key in one change of the Secret `listacompra-jwt`: a new
    /// `JWT_SECRET`, and the old one as `JWT_SECRET_PREVIOUS` (which still verifies the
    /// tokens it signed).
    pub async fn rotate_jwt_key(&self) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let current = api
            .get("listacompra-jwt")
            .await
            .map_err(|source| Error::Kube {
                action: "reading the JWT Secret".to_owned(),
                source,
            })?;
        let old = current
            .data
            .as_ref()
            .and_then(|d| d.get("JWT_SECRET"))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default();
        let new = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        api.patch(
            "listacompra-jwt",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "stringData": { "JWT_SECRET": new, "JWT_SECRET_PREVIOUS": old }
            })),
        )
        .await
        .map_err(|source| Error::Kube {
            action: "rotating the JWT Secret".to_owned(),
            source,
        })?;
        Ok(())
    }

    /// The image of the API Deployment's container.
    pub async fn deployed_image(&self) -> Result<String> {
        self.image_of(&format!("{RELEASE}-api")).await
    }

    /// The image of Deployment `name` (`<release>-worker`: the AI worker's).
    pub async fn image_of(&self, name: &str) -> Result<String> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = api.get(name).await.map_err(|source| Error::Kube {
            action: format!("reading Deployment {name}"),
            source,
        })?;
        Ok(deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default())
    }

    /// The schema revision the database is at (0 when nothing is applied).
    pub async fn schema_revision(&self) -> Result<i64> {
        let mut db = connect(&self.database_url).await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut db)
            .await
            .map_err(|source| Error::Database {
                action: "looking for the migrations table".to_owned(),
                source,
            })?;
        if !exists {
            return Ok(0);
        }
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut db)
            .await
            .map_err(|source| Error::Database {
                action: "reading the schema revision".to_owned(),
                source,
            })
    }

    /// For a failing test: the end of the operator's log (newest first) and where the pods'
    /// logs are (`log_dir`, as given in [`StackOptions::log_dir`]).
    pub fn print_logs(&self, log_dir: &Path) {
        let log = self.operator.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "--- operator log (last lines, newest first)\n{}",
            tail.join("\n")
        );
        eprintln!("--- pod logs in {}", log_dir.join("pods").display());
    }

    /// Every row of `table` in the release's database, each as its JSON text, sorted: what
    /// a restore test compares row by row.
    pub async fn rows(&self, table: &str) -> Result<Vec<String>> {
        let mut db = connect(&self.database_url).await?;
        let query = format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1");
        // The table name is the test's own constant, never input.
        sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .fetch_all(&mut db)
            .await
            .map_err(|source| Error::Database {
                action: format!("reading the rows of {table}"),
                source,
            })
    }

    /// Runs the statement `sql` on the release's database (a test's own corruption, say);
    /// the rows it touched.
    pub async fn execute(&self, sql: &'static str) -> Result<u64> {
        let mut db = connect(&self.database_url).await?;
        sqlx::query(sql)
            .execute(&mut db)
            .await
            .map(|done| done.rows_affected())
            .map_err(|source| Error::Database {
                action: format!("running {sql}"),
                source,
            })
    }

    /// Whether the release's database has the table `name`.
    pub async fn has_table(&self, name: &str) -> Result<bool> {
        let mut db = connect(&self.database_url).await?;
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(&mut db)
            .await
            .map_err(|source| Error::Database {
                action: format!("looking for table {name}"),
                source,
            })
    }

    /// With a standby replica: SIGKILLs the replica that holds the Lease (as when its node
    /// dies) and starts it again, now to stand by; the other takes over once the Lease
    /// expires. Returns the identity killed (`None`: no replica led, nothing killed).
    pub async fn kill_leader(&mut self) -> Result<Option<String>> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let holder = leases
            .get_opt(LEASE)
            .await
            .map_err(|source| Error::Kube {
                action: format!("reading Lease {LEASE}"),
                source,
            })?
            .and_then(|l| l.spec?.holder_identity);
        let replica = match holder.as_deref() {
            Some("a") => &mut self.operator,
            Some("b") => match self.standby.as_mut() {
                Some(b) => b,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        replica.kill_and_restart().await?;
        Ok(holder)
    }

    /// Stops the runner's processes and drops the database.
    pub async fn shutdown(self) {
        self.runner.shutdown().await;
        drop(self.operator);
        drop(self.standby);
        if let Ok(mut admin) = connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("namespace", &self.namespace)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

async fn create<K>(api: &Api<K>, object: &K, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .map_err(|source| Error::Kube {
            action: format!("creating {name}"),
            source,
        })?;
    Ok(())
}

/// How long a database StatefulSet's pod may take to be ready.
const DATABASE_STARTUP: Duration = Duration::from_secs(90);

/// Creates the database StatefulSet `database` and waits until the runner runs its pod and
/// PostgreSQL takes sessions at `admin_url` (its TCP readiness passes while it still starts
/// up, answering 57P03).
async fn start_database(
    client: &Client,
    namespace: &str,
    runner: &Runner,
    database: &StatefulSet,
    admin_url: &str,
) -> Result<()> {
    let name = database.metadata.name.clone().unwrap_or_default();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    create(&sets, database, &format!("StatefulSet {name}")).await?;
    let pod = format!("{name}-0");
    let started = std::time::Instant::now();
    loop {
        let serving = runner.ready_pods().contains_key(&pod) && connect(admin_url).await.is_ok();
        if serving {
            return Ok(());
        }
        if started.elapsed() > DATABASE_STARTUP {
            return Err(Error::Workload {
                message: format!(
                    "the database pod {pod} did not take sessions within {DATABASE_STARTUP:?}: \
                     {:?}",
                    runner.take_events()
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn connect(url: &str) -> Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(url)
        .await
        .map_err(|source| Error::Database {
            action: "connecting to PostgreSQL".to_owned(),
            source,
        })
}

/// Waits `period` between polls of the story.
pub const POLL: Duration = Duration::from_millis(500);
