//! Names and labels of everything the operator creates for a release.

use std::collections::BTreeMap;

/// Label key naming the release an object belongs to.
pub const RELEASE_LABEL: &str = "listacompra.app/release";
/// Label key naming the version a pod template or Job runs.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
/// Annotation holding the hash of what the operator last applied to an object.
pub const SPEC_HASH_ANNOTATION: &str = "listacompra.app/spec-hash";
/// Label key carrying the release attempt a Job belongs to (`status.attempt`).
pub const ATTEMPT_LABEL: &str = "listacompra.app/attempt";
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "listacompra-operator";

/// Name of the API Deployment and Service of a release.
pub fn workload_name(release: &str) -> String {
    format!("{}-api", truncate(release, 55))
}

/// Name of the AI worker Deployment of a release.
pub fn worker_name(release: &str) -> String {
    format!("{}-worker", truncate(release, 55))
}

/// `app.kubernetes.io/name` of the API pods (and of the release's other objects).
pub const API_APP: &str = "listacompra-api";
/// `app.kubernetes.io/name` of the worker pods: the API Service never selects them.
pub const WORKER_APP: &str = "listacompra-worker";

/// Labels that select the API pods of a release (immutable once the Deployment exists).
pub fn selector_labels(release: &str) -> BTreeMap<String, String> {
    app_selector(release, API_APP)
}

/// Labels that select the pods named `app` of a release.
pub fn app_selector(release: &str, app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), release.to_owned()),
    ])
}

/// Labels of every object of a release running `version`.
pub fn labels(release: &str, version: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(release);
    labels.insert(VERSION_LABEL.to_owned(), label_value(version));
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "listacompra-operator".to_owned(),
    );
    labels.insert(RELEASE_LABEL.to_owned(), release.to_owned());
    labels
}

/// Name of the ControllerRevision that records the spec of a stable `version`.
pub fn revision_name(release: &str, version: &str) -> String {
    let version = label_value(version)
        .replace(['.', '_'], "-")
        .to_ascii_lowercase();
    let hash = fnv1a(&format!("{release}\0{version}"));
    format!(
        "{}-{}-{:08x}",
        truncate(release, 40),
        truncate(&version, 40),
        hash as u32
    )
}

/// What a Job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPurpose {
    /// Migrate the schema forward for a new version.
    Migrate,
    /// Revert the schema to the stable version's revision during a rollback.
    Revert,
    /// Smoke-test the version being released, against its pods.
    Smoke,
    /// Smoke-test the stable version again after a rollback.
    SmokeStable,
}

impl JobPurpose {
    /// The word naming the purpose in the Job's name.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Migrate => "migrate",
            Self::Revert => "revert",
            Self::Smoke => "smoke",
            Self::SmokeStable => "smoke-stable",
        }
    }
}

/// Deterministic Job name of one release attempt: the same release, purpose, version,
/// revision and attempt always give the same name, so a restarted operator finds the Job
/// instead of creating a second one; another attempt (a retry, or a return to a version that
/// ran before) never finds an old attempt's Job. At most 63 characters (the `job-name` label
/// limit).
pub fn job_name(
    release: &str,
    purpose: JobPurpose,
    version: &str,
    revision: i64,
    attempt: i64,
) -> String {
    named(release, purpose.verb(), version, revision, attempt)
}

/// Name of the Job that backs the database up before attempt `attempt`'s migration of
/// `version` to `revision` (see [`job_name`]).
pub fn snapshot_job_name(release: &str, version: &str, revision: i64, attempt: i64) -> String {
    named(release, SNAPSHOT, version, revision, attempt)
}

/// The word naming a snapshot Job (as [`JobPurpose::verb`] names the others).
pub const SNAPSHOT: &str = "snapshot";

fn named(release: &str, verb: &str, version: &str, revision: i64, attempt: i64) -> String {
    let hash = fnv1a(&format!(
        "{release}\0{verb}\0{version}\0{revision}\0{attempt}"
    ));
    let version = label_value(version)
        .replace(['.', '_'], "-")
        .to_ascii_lowercase();
    let head = format!(
        "{}-{verb}-{}",
        truncate(release, 24),
        truncate(&version, 16)
    );
    format!("{}-{:08x}", head.trim_end_matches('-'), hash as u32)
}

/// Name of the Job of one step (`verb`: `restore`, `migrate`, `smoke`) of the restore
/// `restore` (uid `uid`): deterministic, so a step's Job is created once however often the
/// step is looked at, and another restore of the same name (another uid) gets other Jobs.
pub fn restore_job_name(restore: &str, uid: &str, verb: &str) -> String {
    let hash = fnv1a(&format!("{restore}\0{uid}\0{verb}"));
    let head = format!("{}-{verb}", truncate(restore, 40));
    format!("{}-{:08x}", head.trim_end_matches('-'), hash as u32)
}

/// Stable 64-bit FNV-1a hash: the same input gives the same value on every build and
/// platform (std's `DefaultHasher` does not promise that).
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric (semver build metadata `+` becomes `_`).
pub fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The first `max` characters of `text`.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_deterministic_short_and_distinct() {
        let a = job_name("listacompra", JobPurpose::Migrate, "1.2.0", 4, 1);
        assert_eq!(
            a,
            job_name("listacompra", JobPurpose::Migrate, "1.2.0", 4, 1)
        );
        assert!(a.starts_with("listacompra-migrate-1-2-0-"), "{a}");
        assert_ne!(
            a,
            job_name("listacompra", JobPurpose::Migrate, "1.2.0", 4, 2),
            "another attempt of the same version gets another Job"
        );
        assert_ne!(
            a,
            job_name("listacompra", JobPurpose::Revert, "1.2.0", 4, 1)
        );
        // A retry of the stable version that fails rolls back to that same version: its
        // smoke test after the rollback is not the attempt's first smoke test.
        assert_ne!(
            job_name("listacompra", JobPurpose::Smoke, "1.2.0", 0, 1),
            job_name("listacompra", JobPurpose::SmokeStable, "1.2.0", 0, 1)
        );
        let long = job_name(
            &"x".repeat(80),
            JobPurpose::SmokeStable,
            "10.20.30-rc.1+build.99",
            12,
            i64::MAX,
        );
        assert!(long.len() <= 63, "{long} is {} chars", long.len());
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("1.0.0+build.5"), "1.0.0_build.5");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(&"9".repeat(70)).len(), 63);
    }

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
