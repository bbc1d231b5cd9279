//! Randomized operation sequences over one release, and the promises the operator keeps
//! through any of them.
//!
//! A [`Generator`] draws, from a seed, what people and machines do to a release: apply a new
//! version (good, breaching a KPI, or with a migration that fails), return to an earlier
//! version, change the retry token, kill the operator with SIGKILL in the middle of a release,
//! scale, edit or delete its Deployment, delete its Service, delete a running Job, cut or slow
//! the pods' database while a release is verified. A [`Model`]
//! says what must hold once the system settles after each step. The checks against the real
//! cluster and database live in `e2e/tests/sequences.rs`; this module is pure and unit-tested.
//!
//! The same seed always gives the same sequence: a failure prints its seed, and
//! `LC_SEQUENCE_SEED=<seed>` replays it.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// How a version's build behaves when released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Passes every gate.
    Good,
    /// Serves with injected latency: the p95 KPI breaches and it is rolled back.
    Slow,
    /// Its migration fails (it asks for a schema revision its build does not have).
    BrokenMigration,
}

/// A version the sequences can release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The version (and image tag).
    pub tag: &'static str,
    /// The schema revision it needs.
    pub schema: i64,
    /// How it behaves.
    pub behaviour: Behaviour,
}

/// The versions of the story's builds (see `e2e::story::builds`).
pub const VERSIONS: [Version; 4] = [
    Version {
        tag: "1.0.0",
        schema: crate::story::SCHEMAS[0],
        behaviour: Behaviour::Good,
    },
    Version {
        tag: "1.1.0",
        schema: crate::story::SCHEMAS[1],
        behaviour: Behaviour::Good,
    },
    Version {
        tag: "1.2.0",
        schema: crate::story::SCHEMAS[2],
        behaviour: Behaviour::Slow,
    },
    Version {
        tag: "1.3.0",
        schema: crate::story::BROKEN_SCHEMA,
        behaviour: Behaviour::BrokenMigration,
    },
];

/// One thing done to the release or its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Apply the release with `version` (a GitOps sync); a version that ran before is a
    /// return to it.
    Release {
        /// Index into [`VERSIONS`].
        version: usize,
    },
    /// Change `spec.retryToken` to retry the current version.
    Retry,
    /// Apply `version`, then SIGKILL the operator after `after_ms` and start a new one.
    ReleaseAndKill {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds between the apply and the kill.
        after_ms: u64,
    },
    /// `kubectl scale deploy --replicas`.
    Scale {
        /// The Deployment scaled.
        of: Child,
        /// The replicas a person sets.
        replicas: i32,
    },
    /// `kubectl label deploy --overwrite` of the version label the operator sets (an edit of
    /// metadata only: the Deployment's generation does not move).
    Relabel {
        /// The Deployment relabelled.
        of: Child,
    },
    /// `kubectl set image` to an image no release names.
    SetImage {
        /// The Deployment changed.
        of: Child,
    },
    /// `kubectl delete svc`.
    DeleteService,
    /// `kubectl delete deploy`.
    DeleteDeployment {
        /// The Deployment deleted.
        of: Child,
    },
    /// Apply a version and delete its migration Job as soon as it exists (the operator
    /// creates it again; the migration tool is idempotent).
    ReleaseAndDeleteJob {
        /// Index into [`VERSIONS`].
        version: usize,
    },
    /// Apply `version` with `spec.paused: true`, wait until a new attempt says it is paused,
    /// then apply it unpaused after `paused_ms`.
    PauseThenResume {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds it stays paused once it says so.
        paused_ms: u64,
    },
    /// Delete a Secret the release names, apply `version`; a new attempt must wait for it
    /// (launching nothing) until the Secret is created again.
    ReleaseBeforeSecret {
        /// Index into [`VERSIONS`].
        version: usize,
    },
    /// Change a Secret the pods consume (rotate the JWT key): the serving pods are rolled
    /// with it, without a migration or a new attempt.
    RotateSecret,
    /// Apply `version`, then SIGKILL the operator replica that leads after `after_ms` (the
    /// other one takes over when the Lease expires) and start it again to stand by.
    ReleaseAndKillLeader {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds between the apply and the kill.
        after_ms: u64,
    },
    /// Apply `version`, then after `after_ms` abort the attempt in flight, if one still is,
    /// as `kubectl listacompra abort` does (the annotation naming the attempt).
    ReleaseAndAbort {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds between the apply and the abort.
        after_ms: u64,
    },
    /// Apply `version`; once its analysis starts (the health gate and the smoke test
    /// passed), cut the pods' connections to PostgreSQL (their `/ready` fails fast) until the
    /// attempt leaves Verifying: the health gate's watch fails it, even a good build. Without
    /// a new attempt the cut lasts `blip_ms` while the release stands, and changes nothing it
    /// promises.
    ReleaseAndCutDatabase {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds of a cut under a standing release.
        blip_ms: u64,
    },
    /// Apply `version`; once its analysis starts (the smoke test passed), slow every query of
    /// the pods until the attempt leaves Verifying: the p95 KPI breaches in the real
    /// Prometheus and fails it, even a good build. Without a new attempt, a blip of
    /// `blip_ms` that changes nothing promised.
    ReleaseAndSlowDatabase {
        /// Index into [`VERSIONS`].
        version: usize,
        /// Milliseconds of slowness under a standing release.
        blip_ms: u64,
    },
}

impl Op {
    /// Whether the op changes the spec (a new attempt may start).
    pub fn changes_spec(&self) -> bool {
        matches!(
            self,
            Op::Release { .. }
                | Op::Retry
                | Op::ReleaseAndKill { .. }
                | Op::ReleaseAndKillLeader { .. }
                | Op::ReleaseAndAbort { .. }
                | Op::ReleaseAndDeleteJob { .. }
                | Op::PauseThenResume { .. }
                | Op::ReleaseBeforeSecret { .. }
                | Op::ReleaseAndCutDatabase { .. }
                | Op::ReleaseAndSlowDatabase { .. }
        )
    }

    /// Whether the op breaks a gate while its attempt is verified (so a new attempt rolls
    /// back whatever its build).
    pub fn breaks_verification(&self) -> bool {
        matches!(
            self,
            Op::ReleaseAndCutDatabase { .. } | Op::ReleaseAndSlowDatabase { .. }
        )
    }
}

/// Which of the release's two Deployments a drift operation hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// `<release>-api`.
    Api,
    /// `<release>-worker`.
    Worker,
}

impl Child {
    /// The Deployment's name and its container's name.
    pub fn names(self, release: &str) -> (String, &'static str) {
        match self {
            Child::Api => (format!("{release}-api"), "api"),
            Child::Worker => (format!("{release}-worker"), "worker"),
        }
    }
}

/// Draws sequences of operations from a seed.
#[derive(Debug)]
pub struct Generator {
    rng: Pcg64,
}

impl Generator {
    /// A generator whose sequences depend on `seed` only.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Pcg64::seed_from_u64(seed),
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn child(&mut self) -> Child {
        if self.below(2) == 0 {
            Child::Api
        } else {
            Child::Worker
        }
    }

    /// A sequence of `steps` operations after the first release of 1.0.0.
    pub fn sequence(&mut self, steps: usize) -> Vec<Op> {
        let mut ops = vec![Op::Release { version: 0 }];
        for _ in 0..steps {
            let version = usize::try_from(self.below(VERSIONS.len() as u64)).unwrap_or(0);
            let op = match self.below(34) {
                0..=6 => Op::Release { version },
                7..=8 => Op::Retry,
                9..=11 => Op::ReleaseAndKill {
                    version,
                    after_ms: self.below(8_000),
                },
                12 => Op::Scale {
                    of: self.child(),
                    replicas: 1 + i32::try_from(self.below(5)).unwrap_or(0),
                },
                13 => Op::Relabel { of: self.child() },
                14 => Op::SetImage { of: self.child() },
                15..=16 => Op::DeleteService,
                17 => Op::DeleteDeployment { of: self.child() },
                18..=19 => Op::ReleaseAndDeleteJob { version },
                20..=21 => Op::PauseThenResume {
                    version,
                    paused_ms: self.below(6_000),
                },
                22..=23 => Op::ReleaseBeforeSecret { version },
                24..=25 => Op::ReleaseAndKillLeader {
                    version,
                    after_ms: self.below(8_000),
                },
                26..=27 => Op::ReleaseAndAbort {
                    version,
                    after_ms: self.below(20_000),
                },
                28..=29 => Op::ReleaseAndCutDatabase {
                    version,
                    blip_ms: self.below(5_000),
                },
                30..=31 => Op::ReleaseAndSlowDatabase {
                    version,
                    blip_ms: self.below(5_000),
                },
                _ => Op::RotateSecret,
            };
            ops.push(op);
        }
        ops
    }
}

/// Where a settled release must stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The version in the spec.
    pub desired: &'static str,
    /// The terminal phase (`Succeeded`, `RolledBack`, `Failed`), as its name.
    pub phase: &'static str,
    /// The version whose image the Deployment runs.
    pub serving: &'static str,
    /// The schema revision of the database (and of `status.schemaVersion`).
    pub schema: i64,
    /// The stable version in status.
    pub stable: &'static str,
}

/// What the release must look like after each operation, from the operations alone.
#[derive(Debug, Clone)]
pub struct Model {
    desired: Version,
    stable: Version,
    /// The stable version when the current attempt started (an abort returns to it).
    stable_before: Version,
    outcome: Outcome,
    retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    RolledBack,
}

impl Model {
    /// After the first release of 1.0.0 (which succeeds).
    pub fn new() -> Self {
        Self {
            desired: VERSIONS[0],
            stable: VERSIONS[0],
            stable_before: VERSIONS[0],
            outcome: Outcome::Succeeded,
            retries: 0,
        }
    }

    /// The retry token the spec carries now (`None` before any retry).
    pub fn retry_token(&self) -> Option<String> {
        (self.retries > 0).then(|| format!("retry-{}", self.retries))
    }

    /// The version the spec names now.
    pub fn desired(&self) -> Version {
        self.desired
    }

    /// Applies `op` to the model; true when it starts a new attempt.
    pub fn apply(&mut self, op: &Op) -> bool {
        let version = match op {
            Op::Release { version }
            | Op::ReleaseAndKill { version, .. }
            | Op::ReleaseAndKillLeader { version, .. }
            | Op::ReleaseAndAbort { version, .. }
            | Op::ReleaseAndDeleteJob { version }
            | Op::PauseThenResume { version, .. }
            | Op::ReleaseBeforeSecret { version }
            | Op::ReleaseAndCutDatabase { version, .. }
            | Op::ReleaseAndSlowDatabase { version, .. } => VERSIONS[*version],
            Op::Retry => {
                self.retries += 1;
                self.desired
            }
            // Drift and crashes change nothing the release promises.
            Op::Scale { .. }
            | Op::Relabel { .. }
            | Op::SetImage { .. }
            | Op::DeleteService
            | Op::DeleteDeployment { .. }
            | Op::RotateSecret => {
                return false;
            }
        };
        let new_attempt = version != self.desired || matches!(op, Op::Retry);
        if !new_attempt {
            return false; // the same spec again: nothing starts (a failed version is not retried)
        }
        self.desired = version;
        self.stable_before = self.stable;
        // A migration Job deleted by hand is created again (the migration tool is idempotent),
        // so that release ends as any other.
        if version.behaviour == Behaviour::Good && !op.breaks_verification() {
            self.stable = version;
            self.outcome = Outcome::Succeeded;
        } else {
            self.outcome = Outcome::RolledBack;
        }
        true
    }

    /// The current attempt was aborted in flight: it rolls back to the version that was
    /// stable when it started, whatever its gates would have said. (Whether an abort lands
    /// in flight depends on timing, so the sequence tells the model what the release
    /// recorded; every promise is then checked against that.)
    pub fn aborted(&mut self) {
        self.stable = self.stable_before;
        self.outcome = Outcome::RolledBack;
    }

    /// The last promise of every sequence: whatever it left, a retry with healthy gates ends
    /// Succeeded. The operation that does it: none when the release already stands
    /// Succeeded; a retry when the desired version's build passes its gates (its attempt was
    /// aborted); otherwise a release of the newest good version.
    pub fn recovery(&self) -> Option<Op> {
        match (self.outcome, self.desired.behaviour) {
            (Outcome::Succeeded, _) => None,
            (_, Behaviour::Good) => Some(Op::Retry),
            _ => VERSIONS
                .iter()
                .rposition(|v| v.behaviour == Behaviour::Good)
                .map(|version| Op::Release { version }),
        }
    }

    /// Where the settled release must stand.
    pub fn expect(&self) -> Expectation {
        let (phase, serving) = match self.outcome {
            Outcome::Succeeded => ("Succeeded", self.desired.tag),
            Outcome::RolledBack => ("RolledBack", self.stable.tag),
        };
        Expectation {
            desired: self.desired.tag,
            phase,
            serving,
            schema: self.stable.schema,
            stable: self.stable.tag,
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a = Generator::new(42).sequence(30);
        assert_eq!(a, Generator::new(42).sequence(30));
        assert_ne!(a, Generator::new(43).sequence(30));
        assert_eq!(a[0], Op::Release { version: 0 });
        // Every kind of operation is drawn from some seed in a short run.
        let all: Vec<Op> = (0..20)
            .flat_map(|s| Generator::new(s).sequence(10))
            .collect();
        for kind in [
            "Release",
            "Retry",
            "ReleaseAndKill",
            "Scale",
            "SetImage",
            "DeleteService",
            "DeleteDeployment",
            "ReleaseAndDeleteJob",
            "PauseThenResume",
            "ReleaseBeforeSecret",
            "RotateSecret",
            "ReleaseAndKillLeader",
            "ReleaseAndAbort",
            "ReleaseAndCutDatabase",
            "ReleaseAndSlowDatabase",
        ] {
            assert!(
                all.iter()
                    .any(|op| format!("{op:?}").split([' ', '{']).next() == Some(kind)),
                "{kind} is never drawn"
            );
        }
        // Drift hits both Deployments.
        for of in [Child::Api, Child::Worker] {
            assert!(
                all.iter().any(|op| matches!(op,
                    Op::Scale { of: o, .. } | Op::Relabel { of: o } | Op::SetImage { of: o } | Op::DeleteDeployment { of: o } if *o == of)),
                "no drift of {of:?}"
            );
        }
    }

    #[test]
    fn every_sequence_ends_succeeded_after_its_recovery() {
        let mut recovered = 0;
        for seed in 0..200 {
            let mut m = Model::new();
            for op in Generator::new(seed).sequence(12) {
                m.apply(&op);
                if matches!(op, Op::ReleaseAndAbort { .. }) && seed % 2 == 0 {
                    m.aborted(); // some aborts land in flight
                }
            }
            if let Some(op) = m.recovery() {
                recovered += 1;
                assert!(m.apply(&op), "seed {seed}: {op:?} starts a new attempt");
            }
            assert_eq!(m.expect().phase, "Succeeded", "seed {seed}");
            assert_eq!(m.expect().serving, m.expect().desired, "seed {seed}");
        }
        assert!(
            recovered > 50,
            "only {recovered} of 200 sequences needed a recovery"
        );
    }

    #[test]
    fn the_model_follows_the_gitops_rules() {
        let mut m = Model::new();
        m.apply(&Op::Release { version: 1 });
        assert_eq!(
            m.expect(),
            Expectation {
                desired: "1.1.0",
                phase: "Succeeded",
                serving: "1.1.0",
                schema: VERSIONS[1].schema,
                stable: "1.1.0"
            }
        );
        m.apply(&Op::Release { version: 2 });
        assert_eq!(
            (m.expect().phase, m.expect().serving, m.expect().schema),
            ("RolledBack", "1.1.0", VERSIONS[1].schema),
            "a KPI breach rolls back workload and schema"
        );
        m.apply(&Op::Release { version: 2 });
        assert_eq!(
            m.expect().phase,
            "RolledBack",
            "the same spec is not retried"
        );
        m.apply(&Op::Retry);
        assert_eq!(m.retry_token().as_deref(), Some("retry-1"));
        assert_eq!(
            m.expect().phase,
            "RolledBack",
            "a retry of a slow build fails again"
        );
        m.apply(&Op::Release { version: 0 });
        assert_eq!(
            (m.expect().phase, m.expect().serving, m.expect().schema),
            ("Succeeded", "1.0.0", VERSIONS[0].schema),
            "a return to an earlier version migrates down"
        );
        m.apply(&Op::DeleteService);
        assert_eq!(
            m.expect().serving,
            "1.0.0",
            "drift changes nothing promised"
        );
        m.apply(&Op::Release { version: 3 });
        assert_eq!(
            (m.expect().phase, m.expect().serving, m.expect().schema),
            ("RolledBack", "1.0.0", VERSIONS[0].schema)
        );
    }

    #[test]
    fn a_rotated_secret_changes_nothing_the_release_promises() {
        let mut m = Model::new();
        m.apply(&Op::Release { version: 1 });
        let before = m.expect();
        assert!(!m.apply(&Op::RotateSecret), "no new attempt");
        assert_eq!(m.expect(), before);
    }

    #[test]
    fn an_aborted_attempt_rolls_back_to_the_version_stable_before_it() {
        let mut m = Model::new();
        m.apply(&Op::Release { version: 1 });
        assert!(m.apply(&Op::ReleaseAndAbort {
            version: 0,
            after_ms: 0
        }));
        m.aborted();
        assert_eq!(
            m.expect(),
            Expectation {
                desired: "1.0.0",
                phase: "RolledBack",
                serving: "1.1.0",
                schema: VERSIONS[1].schema,
                stable: "1.1.0"
            }
        );
        m.apply(&Op::Retry);
        assert_eq!(
            (m.expect().phase, m.expect().serving),
            ("Succeeded", "1.0.0"),
            "a retry of the aborted version releases it"
        );
    }

    #[test]
    fn a_gate_broken_during_verification_rolls_back_even_a_good_build() {
        let mut m = Model::new();
        m.apply(&Op::Release { version: 1 });
        for op in [
            Op::ReleaseAndCutDatabase {
                version: 0,
                blip_ms: 0,
            },
            Op::ReleaseAndSlowDatabase {
                version: 0,
                blip_ms: 0,
            },
        ] {
            let mut m = m.clone();
            assert!(m.apply(&op));
            assert_eq!(
                (m.expect().phase, m.expect().serving, m.expect().schema),
                ("RolledBack", "1.1.0", VERSIONS[1].schema),
                "{op:?}"
            );
            assert_eq!(m.recovery(), Some(Op::Retry), "the build is good: a retry");
            m.apply(&Op::Retry);
            assert_eq!(
                (m.expect().phase, m.expect().serving),
                ("Succeeded", "1.0.0")
            );
        }
        let before = m.expect();
        assert!(
            !m.apply(&Op::ReleaseAndCutDatabase {
                version: 1,
                blip_ms: 2_000
            }),
            "the same spec: a blip under a standing release"
        );
        assert_eq!(m.expect(), before);
    }

    #[test]
    fn a_deleted_migration_job_is_run_again() {
        let mut m = Model::new();
        m.apply(&Op::ReleaseAndDeleteJob { version: 1 });
        assert_eq!(
            (m.expect().phase, m.expect().schema),
            ("Succeeded", VERSIONS[1].schema),
            "the operator re-creates its Job"
        );
    }
}
