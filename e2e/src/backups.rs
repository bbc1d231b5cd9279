//! A PostgreSQL of a test's own that archives its WAL with pgBackRest into a posix
//! repository on this machine (Debian's `pgbackrest`), started by `services.sh` with its own
//! state folder and port: what a backup or restore test backs up, restores and breaks without
//! touching the PostgreSQL other tests share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The image repository the backup CronJobs of the tests name; the runner runs Debian's
/// `pgbackrest` for it, as the repository's owner.
pub const PGBACKREST_IMAGE: &str = "registry.local/listacompra/pgbackrest";
/// The program that stands in for [`PGBACKREST_IMAGE`].
pub const PGBACKREST_BINARY: &str = "/usr/bin/pgbackrest";

/// The running server and its repository.
#[derive(Debug)]
pub struct BackedUpPostgres {
    state: PathBuf,
    port: u16,
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
        let state =
            std::env::temp_dir().join(format!("lc-pgbackrest-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&state).map_err(|source| Error::Io {
            action: format!("creating {}", state.display()),
            source,
        })?;
        let port = crate::runner::free_port()?;
        let mut server = Self {
            state,
            port,
            admin_url: String::new(),
            pgbackrest_env: BTreeMap::new(),
            owner: (0, 0),
        };
        // From here on, dropping `server` stops what the script started.
        server.script("up", Some(stanza))?;
        let env = server.env_file()?;
        let get = |key: &str| {
            env.get(key).cloned().ok_or_else(|| Error::Workload {
                message: format!("services.sh wrote no {key} for the backed-up PostgreSQL"),
            })
        };
        let id = |key: &str| -> Result<u32> {
            get(key)?.parse().map_err(|_| Error::Workload {
                message: format!("{key} is not a user id"),
            })
        };
        server.pgbackrest_env = get("LC_PGBACKREST_ENV")?
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        server.admin_url = get("LC_POSTGRES_ADMIN_URL")?;
        server.owner = (id("LC_PGBACKREST_UID")?, id("LC_PGBACKREST_GID")?);
        Ok(server)
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
        let dir = self.state.join(name);
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

    fn script(&self, command: &str, stanza: Option<&str>) -> Result<()> {
        let script = crate::env::repo_root().join("e2e/scripts/services.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .args([command, "postgres"])
            .env("LC_STATE", &self.state)
            .env("LC_ENV_FILE", self.state.join("env"))
            .env("LC_PG_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(stanza) = stanza {
            cmd.env("LC_PGBACKREST_STANZA", stanza);
        }
        let status = cmd.status().map_err(|source| Error::Io {
            action: format!("running {}", script.display()),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Workload {
                message: format!("services.sh {command} postgres (pgBackRest) failed: {status}"),
            })
        }
    }

    fn env_file(&self) -> Result<BTreeMap<String, String>> {
        let path = self.state.join("env");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            action: format!("reading {}", path.display()),
            source,
        })?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

impl Drop for BackedUpPostgres {
    fn drop(&mut self) {
        if self.script("down", None).is_ok() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}
