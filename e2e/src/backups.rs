//! A PostgreSQL of a test's own ([`PrivateService::archiving_postgres`]) that archives its WAL
//! with pgBackRest into a posix repository on this machine (Debian's `pgbackrest`): what a
//! backup or restore test backs up, restores and breaks without touching the PostgreSQL other
//! tests share, and how to run pgBackRest against it as the repository's owner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::private::PrivateService;
use crate::{Error, Result};

/// The image repository the backup CronJobs of the tests name; the runner runs Debian's
/// `pgbackrest` for it, as the repository's owner.
pub const PGBACKREST_IMAGE: &str = "registry.local/listacompra/pgbackrest";
/// The program that stands in for [`PGBACKREST_IMAGE`].
pub const PGBACKREST_BINARY: &str = "/usr/bin/pgbackrest";

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
        Ok(Self {
            admin_url: server.admin_url.clone().ok_or_else(|| Error::Workload {
                message: "services.sh wrote no LC_POSTGRES_ADMIN_URL".to_owned(),
            })?,
            pgbackrest_env,
            owner,
            server,
        })
    }

    /// `pgbackrest info --output=json` of the stanza: what the repository holds.
    pub fn info(&self) -> Result<serde_json::Value> {
        let out = self.as_owner(PGBACKREST_BINARY, &["info", "--output=json"])?;
        serde_json::from_slice(&out).map_err(|e| Error::Workload {
            message: format!("pgbackrest info printed no JSON: {e}"),
        })
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
