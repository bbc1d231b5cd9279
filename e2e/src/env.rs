//! Starting components through the scripts, and reading the endpoints they record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use crate::{Error, Result};

/// Every backing service: what the full stack needs.
pub const ALL_SERVICES: &[Component] = &[
    Component::Postgres,
    Component::Redis,
    Component::RabbitMq,
    Component::Alertmanager,
    Component::Prometheus,
    Component::S3,
];

/// Something the scripts can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
    Cluster,
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// RabbitMQ.
    RabbitMq,
    /// Alertmanager (with `config/alertmanager`), to which Prometheus sends its alerts.
    Alertmanager,
    /// Prometheus.
    Prometheus,
    /// Jaeger v2 (OTLP in, traces in memory, query API).
    Jaeger,
    /// The S3-protocol server (s3s-fs) with the attachments bucket.
    S3,
}

impl Component {
    fn command(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Self::Cluster => ("cluster.sh", &["up"]),
            Self::Postgres => ("services.sh", &["up", "postgres"]),
            Self::Redis => ("services.sh", &["up", "redis"]),
            Self::RabbitMq => ("services.sh", &["up", "rabbitmq"]),
            Self::Alertmanager => ("services.sh", &["up", "alertmanager"]),
            Self::Prometheus => ("services.sh", &["up", "prometheus"]),
            Self::Jaeger => ("services.sh", &["up", "jaeger"]),
            Self::S3 => ("services.sh", &["up", "s3"]),
        }
    }
}

/// The `KEY=VALUE` endpoints recorded by the scripts (for example `DATABASE_URL`).
#[derive(Debug, Clone)]
pub struct Env {
    path: PathBuf,
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads an env file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::EnvFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(path, &text))
    }

    fn parse(path: &Path, text: &str) -> Self {
        let vars = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self {
            path: path.to_owned(),
            vars,
        }
    }

    /// The value of `key`, or an error naming the key and the file.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::MissingKey {
                key: key.to_owned(),
                path: self.path.clone(),
            })
    }
}

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_owned)
}

/// The components this process has already brought up: each script runs once per process.
static STARTED: Mutex<BTreeSet<Component>> = Mutex::new(BTreeSet::new());
/// Where the scripts said their env file is.
static ENV_PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Runs `e2e/scripts/<script> <args>` (its stderr goes to ours) and returns the path it
/// printed as the last line on stdout: the scripts print the file they made, and only that.
pub(crate) fn run_script(script: &str, args: &[&str]) -> Result<Option<PathBuf>> {
    let script = repo_root().join("e2e/scripts").join(script);
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn {
            script: script.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Script {
            script,
            args: args.join(" "),
            status: output.status,
        });
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    Ok(printed
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim())))
}

/// Starts the given components when they are not running (blocking) and returns the
/// endpoints. Already running components are reused, also across test processes.
pub fn ensure_blocking(components: &[Component]) -> Result<Env> {
    let mut started = STARTED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut env_path = ENV_PATH.lock().unwrap_or_else(PoisonError::into_inner);
    for &component in components {
        if started.contains(&component) {
            continue;
        }
        let (script, args) = component.command();
        if let Some(path) = run_script(script, args)? {
            *env_path = Some(path);
        }
        started.insert(component);
    }
    let path = env_path.clone().ok_or_else(|| Error::MissingKey {
        key: "LC_ENV_FILE".to_owned(),
        path: repo_root().join("e2e/scripts"),
    })?;
    Env::read(&path)
}

/// [`ensure_blocking`] for async callers.
pub async fn ensure(components: &[Component]) -> Result<Env> {
    let components = components.to_vec();
    tokio::task::spawn_blocking(move || ensure_blocking(&components))
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt_install` (e2e/scripts/lib.sh) installs what dpkg does not have *installed*: a
    /// package removed but not purged (dpkg state `config-files`, for which `dpkg -s` still
    /// exits 0) is missing too. A cold `make test` on a machine where redis-server had been
    /// removed so stopped at "redis-server: command not found". dpkg and apt-get are stand-ins
    /// here that answer as Debian's do for the three states and record what is installed.
    #[test]
    fn apt_install_installs_packages_removed_but_not_purged() {
        let dir = std::env::temp_dir().join(format!("lc-apt-{}", std::process::id()));
        let bin = dir.join("bin");
        // (Emptied first: a run killed before its clean-up may have left a record behind.)
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&bin).unwrap();
        let states = "case \"$pkg\" in present) s='install ok installed';; \
                      removed) s='deinstall ok config-files';; *) s='';; esac";
        let stand_ins = [
            (
                "dpkg",
                format!(
                    "pkg=$2; {states}\n[ -n \"$s\" ] && printf 'Package: %s\\nStatus: %s\\n' \"$pkg\" \"$s\""
                ),
            ),
            (
                "dpkg-query",
                format!("pkg=${{@: -1}}; {states}\n[ -n \"$s\" ] && printf '%s' \"$s\""),
            ),
            (
                "apt-get",
                format!(
                    "for a in \"$@\"; do case $a in install) i=1;; -*) ;; *) [ -n \"$i\" ] && echo \"$a\" >>{}/installed;; esac; done; exit 0",
                    dir.display()
                ),
            ),
            ("sudo", "exec \"$@\"".to_owned()),
        ];
        for (name, body) in stand_ins {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let lib = repo_root().join("e2e/scripts/lib.sh");
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; apt_install present removed absent",
                lib.display()
            ))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("LC_CACHE", dir.join("cache"))
            .output()
            .unwrap();
        let installed = std::fs::read_to_string(dir.join("installed")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            output.status.success(),
            "apt_install failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            installed.lines().collect::<Vec<_>>(),
            ["removed", "absent"],
            "apt-get install was asked for these (stderr: {})",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn parses_key_values_and_names_missing_keys() {
        let env = Env::parse(
            Path::new("/x/env"),
            "DATABASE_URL=postgres://a@b/c?x=1\n\nbroken line\nREDIS_URL = redis://r\n",
        );
        assert_eq!(env.get("DATABASE_URL").unwrap(), "postgres://a@b/c?x=1");
        assert_eq!(env.get("REDIS_URL").unwrap(), "redis://r");
        let err = env.get("RABBITMQ_URL").unwrap_err().to_string();
        assert!(
            err.contains("RABBITMQ_URL") && err.contains("/x/env"),
            "{err}"
        );
    }
}
