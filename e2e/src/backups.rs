//! A PostgreSQL of a test's own ([`PrivateService::archiving_postgres`]) that archives its WAL
//! with pgBackRest into a posix repository on this machine (Debian's `pgbackrest`): what a
//! backup or restore test backs up, restores and breaks without touching the PostgreSQL other
//! tests share, and how to run pgBackRest against it as the repository's owner. A restore
//! test hands the server over to the cluster ([`BackedUpPostgres::hand_over`]): the same data
//! folder, port and archiving, run by the workload runner as a StatefulSet's pod
//! ([`BackedUpPostgres::stateful_set`]), which the operator can stop and start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::private::PrivateService;
use crate::runner::{Image, RUN_ANNOTATION};
use crate::stack::StackOptions;
use crate::{Error, Result};

/// The image repository the backup CronJobs of the tests name; the runner runs Debian's
/// `pgbackrest` for it, as the repository's owner.
pub const PGBACKREST_IMAGE: &str = "registry.local/listacompra/pgbackrest";
/// The program that stands in for [`PGBACKREST_IMAGE`].
pub const PGBACKREST_BINARY: &str = "/usr/bin/pgbackrest";
/// The image repository of the database StatefulSet; the runner runs Debian's `postgres`
/// for it, as the data folder's owner.
pub const POSTGRES_IMAGE: &str = "registry.local/listacompra/postgres";
/// The StatefulSet [`BackedUpPostgres::stack_options`] runs the server as.
pub const DATABASE: &str = "postgres";
/// The ConfigMap of the stanza's pgBackRest options ([`BackedUpPostgres::options`]).
pub const OPTIONS: &str = "pgbackrest";

/// The running server and its repository.
#[derive(Debug)]
pub struct BackedUpPostgres {
    server: PrivateService,
    /// The superuser URL of its `postgres` database.
    pub admin_url: String,
    /// The pgBackRest options of its stanza and repository (`PGBACKREST_*`), as a backup
    /// container's environment would carry them.
    pub pgbackrest_env: BTreeMap<String, String>,
    /// The user id and group id that own the data folder and the repository.
    pub owner: (u32, u32),
    /// Its folder: the data folder `data` and the Unix socket are in it.
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    port: u16,
    /// The pgBackRest configuration file its `archive_command` reads.
    config: PathBuf,
}

impl BackedUpPostgres {
    /// Starts one with the pgBackRest stanza `stanza` created.
    pub fn start(stanza: &str) -> Result<Self> {
        let server = PrivateService::archiving_postgres(stanza)?;
        let env = server.env()?;
        let id = |key: &str| -> Result<u32> {
            env.get(key)?.parse().map_err(|_| Error::Workload {
                message: format!("{key} is not a user id"),
            })
        };
        let pgbackrest_env = env
            .get("LC_PGBACKREST_ENV")?
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let owner = (id("LC_PGBACKREST_UID")?, id("LC_PGBACKREST_GID")?);
        let port = env
            .get("LC_PG_PORT")?
            .parse()
            .map_err(|_| Error::Workload {
                message: "LC_PG_PORT is not a port".to_owned(),
            })?;
        let dir = PathBuf::from(env.get("LC_PG_DIR")?);
        let config = PathBuf::from(env.get("LC_PGBACKREST_CONFIG")?);
        Ok(Self {
            dir,
            port,
            config,
            admin_url: server.admin_url.clone().ok_or_else(|| Error::Workload {
                message: "services.sh wrote no LC_POSTGRES_ADMIN_URL".to_owned(),
            })?,
            pgbackrest_env,
            owner,
            server,
        })
    }

    /// The images a stack running this server as a StatefulSet needs: PostgreSQL (stopped
    /// with SIGINT, its fast shutdown, as the official image's `STOPSIGNAL` says) and
    /// pgBackRest, both as the pod's user.
    pub fn images() -> Result<BTreeMap<String, Image>> {
        Ok([
            (
                POSTGRES_IMAGE.to_owned(),
                Image::new(postgres_binary()?)
                    .as_pod_user()
                    .stop_signal("SIGINT"),
            ),
            (
                PGBACKREST_IMAGE.to_owned(),
                Image::new(PGBACKREST_BINARY).as_pod_user(),
            ),
        ]
        .into())
    }

    /// `base` with this server as the release's database: its superuser URL, the images
    /// [`Self::images`], and the server as the StatefulSet `postgres` (see
    /// [`Self::stateful_set`]), which a release's `spec.backups.database` names.
    pub fn stack_options(&self, base: StackOptions) -> Result<StackOptions> {
        let mut images = base.images.clone();
        images.extend(Self::images()?);
        Ok(StackOptions {
            postgres_admin_url: Some(self.admin_url.clone()),
            images,
            database: Some(self.stateful_set(DATABASE)),
            ..base
        })
    }

    /// The ConfigMap [`OPTIONS`]: the stanza's pgBackRest options, as a platform team keeps
    /// them for the release's backup Jobs (`spec.backups.envFrom`).
    pub fn options(&self) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(OPTIONS.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(self.pgbackrest_env.clone()),
            ..ConfigMap::default()
        }
    }

    /// A release's `spec.backups` for this server: the runbook's schedules (the CRD's
    /// defaults: full daily at 01:00, incremental every 6 hours) but suspended, so that a
    /// test or the demo decides when a backup runs (pgBackRest locks the stanza: a scheduled
    /// backup at 06:00 would make the test's own backup fail); pgBackRest's options from
    /// [`Self::options`], run as the repository's owner by the workload runner; and the
    /// StatefulSet of [`Self::stack_options`] as what a restore stops and restores into (its
    /// data folder is on this machine: no claim to mount).
    pub fn release_backups(&self) -> serde_json::Value {
        let (uid, gid) = self.owner;
        serde_json::json!({
            "image": { "repository": PGBACKREST_IMAGE, "tag": "2.45" },
            "envFrom": [{ "configMapName": OPTIONS }],
            "full": { "schedule": "0 1 * * *", "maxAgeSeconds": 26 * 3600, "suspend": true },
            "incremental": { "schedule": "0 */6 * * *", "maxAgeSeconds": 7 * 3600, "suspend": true },
            "runAsUser": uid,
            "runAsGroup": gid,
            "podAnnotations": { RUN_ANNOTATION: "true" },
            "database": { "statefulSet": DATABASE }
        })
    }

    /// Stops the server that `services.sh` started, so that [`Self::stateful_set`] can run
    /// it; its data stays.
    pub fn hand_over(&self) -> Result<()> {
        self.server.down()
    }

    /// This server as the StatefulSet `name` of one replica: the same data folder, port,
    /// socket folder and WAL archiving, as the data folder's owner, ready once it accepts TCP
    /// connections. Its environment holds the stanza's pgBackRest options, for the
    /// `restore_command` a restore leaves behind.
    pub fn stateful_set(&self, name: &str) -> StatefulSet {
        let labels: BTreeMap<String, String> =
            [("app.kubernetes.io/name".to_owned(), name.to_owned())].into();
        let stanza = self
            .pgbackrest_env
            .get("PGBACKREST_STANZA")
            .cloned()
            .unwrap_or_default();
        let setting = |s: String| ["-c".to_owned(), s];
        let mut args = vec![
            "-D".to_owned(),
            self.data_dir().display().to_string(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        for s in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", self.dir.display()),
            "max_connections=300".to_owned(),
            "fsync=off".to_owned(),
            "authentication_timeout=10s".to_owned(),
            "archive_mode=on".to_owned(),
            "wal_level=replica".to_owned(),
            format!(
                "archive_command=pgbackrest --config={} --stanza={stanza} archive-push %p",
                self.config.display()
            ),
        ] {
            args.extend(setting(s));
        }
        let (uid, gid) = self.owner;
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(name.to_owned()),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: Some([(RUN_ANNOTATION.to_owned(), "true".to_owned())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        security_context: Some(PodSecurityContext {
                            run_as_user: Some(uid.into()),
                            run_as_group: Some(gid.into()),
                            run_as_non_root: Some(true),
                            ..PodSecurityContext::default()
                        }),
                        termination_grace_period_seconds: Some(60),
                        containers: vec![Container {
                            name: "postgres".to_owned(),
                            image: Some(format!("{POSTGRES_IMAGE}:15")),
                            command: Some(vec!["postgres".to_owned()]),
                            args: Some(args),
                            env: Some(
                                self.pgbackrest_env
                                    .iter()
                                    .map(|(k, v)| EnvVar {
                                        name: k.clone(),
                                        value: Some(v.clone()),
                                        ..EnvVar::default()
                                    })
                                    .collect(),
                            ),
                            ports: Some(vec![ContainerPort {
                                container_port: self.port.into(),
                                ..ContainerPort::default()
                            }]),
                            readiness_probe: Some(Probe {
                                tcp_socket: Some(TCPSocketAction {
                                    port: IntOrString::Int(self.port.into()),
                                    ..TCPSocketAction::default()
                                }),
                                ..Probe::default()
                            }),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }

    /// Its data folder (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pgbackrest info --output=json` of the stanza: what the repository holds.
    pub fn info(&self) -> Result<serde_json::Value> {
        let out = self.as_owner(PGBACKREST_BINARY, &["info", "--output=json"])?;
        serde_json::from_slice(&out).map_err(|e| Error::Workload {
            message: format!("pgbackrest info printed no JSON: {e}"),
        })
    }

    /// The labels of the backup sets the repository holds, oldest first.
    pub fn sets(&self) -> Result<Vec<String>> {
        let info = self.info()?;
        Ok(info[0]["backup"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|set| set["label"].as_str().map(str::to_owned))
            .collect())
    }

    /// Runs `pgbackrest args...` with the stanza's options, as the repository's owner.
    pub fn pgbackrest(&self, args: &[&str]) -> Result<Vec<u8>> {
        self.as_owner(PGBACKREST_BINARY, args)
    }

    /// Runs `program args...` as the owner of the data folder and the repository, with the
    /// stanza's pgBackRest options in its environment; its standard output.
    pub fn as_owner(&self, program: &str, args: &[&str]) -> Result<Vec<u8>> {
        let (uid, gid) = self.owner;
        let out = Command::new("setpriv")
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_owned(),
                program.to_owned(),
            ])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.pgbackrest_env)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Io {
                action: format!("running {program}"),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Workload {
                message: format!(
                    "{program} {} failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out.stdout)
    }

    /// A folder the owner may write, for a restore to go into.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let dir = self.server.state().join(name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            action: format!("creating {}", dir.display()),
            source,
        })?;
        let (uid, gid) = self.owner;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|source| Error::Io {
            action: format!("handing {} to its owner", dir.display()),
            source,
        })?;
        Ok(dir)
    }
}

/// Debian's `postgres` server program (the newest installed major version).
fn postgres_binary() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/postgres"))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
    });
    found.pop().ok_or_else(|| Error::Workload {
        message: "no /usr/lib/postgresql/*/bin/postgres. Fix: apt-get install postgresql"
            .to_owned(),
    })
}
