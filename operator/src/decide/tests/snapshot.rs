//! The snapshot before the migration (`spec.backups`): seeded simulations of whole attempts
//! in which the snapshot Job passes or fails, takes its time, lags in the cache or is deleted
//! by hand, while the release is paused, aborted or superseded.

use std::collections::BTreeMap;

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn with_backups(mut s: ListaCompraReleaseSpec) -> ListaCompraReleaseSpec {
    s.backups = Some(
        serde_json::from_value(serde_json::json!({
            "image": { "repository": "reg/pgbackrest", "tag": "2.45" },
            "envFrom": [{ "configMapName": "pgbackrest" }]
        }))
        .expect("valid backups"),
    );
    s
}

/// 1.0.0 (schema 3) serves and is stable.
fn settled() -> ListaCompraReleaseStatus {
    let mut s = status(Phase::Succeeded, "1.0.0");
    s.attempt = Some(1);
    s.current_image = Some("reg/api:1.0.0".into());
    s
}

/// What one simulated release of 1.1.0 (schema 4) did.
#[derive(Debug)]
struct Run {
    end: Phase,
    degraded: Option<String>,
    trail: Vec<String>,
}

/// Releases 1.1.0 with backups from a settled 1.0.0, drawing from `seed` the snapshot Jobs'
/// outcomes and durations, the cache's lag, hand deletions, pauses, an abort and a
/// supersession (a retry token), and checks at every step what must always hold:
/// - no migration Job is created in an attempt before that attempt's snapshot is complete;
/// - a snapshot is never taken twice for one attempt once complete;
/// - a failed snapshot never moves the schema (no migration, no revert).
fn simulate(seed: u64) -> Run {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let stable = with_backups(spec("1.0.0"));
    let mut spec = with_backups(spec("1.1.0"));
    let mut status = settled();
    let mut jobs: BTreeMap<String, SimJob> = BTreeMap::new();
    let mut serving_version = "1.0.0".to_owned();
    let mut now = 100;
    let mut trail = Vec::new();
    let mut aborted = None;
    let mut superseded = false;
    for _ in 0..300 {
        // Hand edits and interruptions, now and then.
        match below(40) {
            0 => spec.paused = !spec.paused,
            1 if aborted.is_none() && status.phase == Some(Phase::Migrating) => {
                aborted = status.attempt;
                trail.push(format!("t{now} abort {aborted:?}"));
            }
            2 if !superseded && status.phase == Some(Phase::Migrating) => {
                superseded = true;
                spec.retry_token = Some("again".into());
                trail.push(format!("t{now} retry token"));
            }
            3 => {
                if let Some(s) = status.snapshot.as_ref()
                    && jobs.remove(&s.job).is_some()
                {
                    trail.push(format!("t{now} hand-delete {}", s.job));
                }
            }
            _ => {}
        }
        if below(60) == 0 {
            spec.paused = false; // never paused for good
        }
        let mut look = |name: Option<&String>| {
            SimJob::look(name.and_then(|n| jobs.get_mut(n)), || below(4) == 0)
        };
        let snapshot_job = look(
            status
                .snapshot
                .as_ref()
                .filter(|s| s.completion_time.is_none())
                .map(|s| &s.job),
        );
        let migration_job = look(status.migration_job.as_ref());
        let revert_job = look(status.revert_job.as_ref());
        let mut case = Case::new("sim", spec.clone(), status.clone())
            .stable_from(stable.clone())
            .job(migration_job)
            .revert(revert_job)
            .snapshot(snapshot_job)
            .at(t(now));
        // The stable version's pods are built from its recorded spec.
        case.workload = serving(
            if serving_version == "1.0.0" {
                &stable
            } else {
                &spec
            },
            &serving_version,
        );
        if aborted.is_some() {
            case = case.aborted(aborted.unwrap_or_default());
        }
        if gate_due(&spec, &status, None, t(now)).health {
            case = case.check(Ok(()));
        }
        let d = case.run();
        for action in &d.actions {
            match action {
                Action::TakeSnapshot { name, attempt: a } => {
                    let done = status
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.attempt == *a && s.completion_time.is_some());
                    assert!(
                        !done,
                        "seed {seed}: a second snapshot for attempt {a}: {trail:?}"
                    );
                    jobs.entry(name.clone()).or_insert(SimJob {
                        passes: below(4) != 0,
                        looks_left: below(5),
                    });
                    trail.push(format!("t{now} snapshot {name}"));
                }
                Action::CreateJob {
                    name,
                    purpose,
                    attempt: a,
                    ..
                } => {
                    if *purpose == JobPurpose::Migrate {
                        let taken = d
                            .status
                            .snapshot
                            .as_ref()
                            .is_some_and(|s| s.attempt == *a && s.completion_time.is_some());
                        assert!(
                            taken,
                            "seed {seed}: migration {name} without a snapshot: {:?} {trail:?}",
                            d.status.snapshot
                        );
                    }
                    jobs.entry(name.clone()).or_insert(SimJob {
                        passes: true,
                        looks_left: below(3),
                    });
                    trail.push(format!("t{now} create {name}"));
                }
                Action::DeleteJob { name } => {
                    jobs.remove(name);
                    trail.push(format!("t{now} delete {name}"));
                }
                Action::RecordStable { .. } => {}
            }
        }
        let degraded = conditions::get(&d.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .map(|c| c.reason.clone());
        if degraded.as_deref() == Some("SnapshotFailed") {
            assert!(
                d.status.migration_job.is_none() && d.status.schema_version == Some(3),
                "seed {seed}: a failed snapshot moved the schema: {:?} {trail:?}",
                d.status
            );
        }
        if let Some(w) = &d.workload {
            serving_version.clone_from(&w.version);
        }
        status = d.status;
        now += 5;
        let phase = status.phase.expect("a phase");
        if matches!(phase, Phase::Succeeded | Phase::RolledBack | Phase::Failed)
            && !spec.paused
            && status.describes(&spec)
        {
            return Run {
                end: phase,
                degraded,
                trail,
            };
        }
    }
    panic!("seed {seed}: no end after 300 looks ({trail:?})");
}

#[test]
fn simulated_attempts_never_migrate_without_their_snapshot() {
    let seeds = seeds("LC_SNAPSHOT_SEEDS");
    // Each end reached, with the first seed's trail that reached it.
    let mut ends = BTreeMap::new();
    for seed in 0..seeds {
        let run = simulate(seed);
        ends.entry(format!("{:?} {:?}", run.end, run.degraded))
            .or_insert_with(|| format!("seed {seed}: {}", run.trail.join(", ")));
    }
    // Successes, failed snapshots (rolled back to what already served) and aborts were all
    // reached: the simulation covers the step.
    for end in [
        "Succeeded None",
        "RolledBack Some(\"SnapshotFailed\")",
        "RolledBack Some(\"Aborted\")",
    ] {
        assert!(ends.contains_key(end), "{end} never reached: {ends:?}");
    }
}

/// Whether the decision's one action is to create the migration Job.
fn only_migrates(d: &Decision) -> bool {
    matches!(
        &d.actions[..],
        [Action::CreateJob {
            purpose: JobPurpose::Migrate,
            ..
        }]
    )
}

#[test]
fn a_stopped_snapshot_is_no_restore_point_and_its_job_goes() {
    let backed_up = with_backups(spec("1.1.0"));
    let launched = Case::new("launch", backed_up.clone(), settled())
        .serving("1.0.0")
        .run()
        .status;
    let job = launched.snapshot.clone().expect("a snapshot").job;
    // Aborted while it runs.
    let d = Case::new("abort", backed_up.clone(), launched.clone())
        .serving("1.0.0")
        .snapshot(JobState::Running)
        .aborted(2)
        .run();
    assert_eq!(d.status.snapshot, None);
    assert!(d.actions.contains(&Action::DeleteJob { name: job.clone() }));
    // spec.backups removed before the Job shows in the cache: deleted all the same, and the
    // migration goes on without a snapshot.
    let d = Case::new("no more backups", spec("1.1.0"), launched.clone())
        .serving("1.0.0")
        .run();
    assert_eq!(d.status.snapshot, None);
    assert!(d.actions.contains(&Action::DeleteJob { name: job.clone() }));
    assert!(
        d.actions.iter().any(|a| matches!(
            a,
            Action::CreateJob {
                purpose: JobPurpose::Migrate,
                ..
            }
        )),
        "{:?}",
        d.actions
    );
    // Failed: the attempt ends before the schema moves, and no record stays.
    let d = Case::new("failed", backed_up, launched)
        .serving("1.0.0")
        .snapshot(JobState::Failed("BackoffLimitExceeded".into()))
        .run();
    assert_eq!(d.status.snapshot, None);
    assert_eq!(cond(&d, condition::DEGRADED).1, "SnapshotFailed");
    assert_eq!(d.status.schema_version, Some(3));
}

#[test]
fn a_migration_refused_as_irreversible_keeps_the_schema_and_rolls_out() {
    // The database is at revision 4 (a kept schema); the version asks for revision 3 below
    // an irreversible step, and the tool refuses.
    let mut status = migrating("1.1.0");
    status.schema_version = Some(4);
    let d = Case::new("refused", spec("1.1.0"), status)
        .serving("1.0.0")
        .job(JobState::Failed(
            "BackoffLimitExceeded: error: IrreversibleMigration: revision 4 cannot be reverted: \
             it loses things. Nothing was changed"
                .into(),
        ))
        .run();
    assert_eq!(d.status.phase, Some(Phase::RollingOut));
    assert_eq!(d.status.schema_version, Some(4));
    let (kept, reason, message) = cond(&d, condition::MIGRATIONS_APPLIED);
    assert!(kept && reason == "IrreversibleSchemaKept", "{reason}");
    assert!(
        message.contains("revision 4 cannot be reverted: it loses things;")
            && message.contains("the schema stays at revision 4"),
        "{message}"
    );
    assert_eq!(d.workload.map(|w| w.version), Some("1.1.0".to_owned()));
}

#[test]
fn a_release_with_backups_snapshots_first_and_migrates_once_it_is_complete() {
    let backed_up = with_backups(spec("1.1.0"));
    // Launch: the snapshot Job, no migration yet.
    let d = Case::new("launch", backed_up.clone(), settled())
        .serving("1.0.0")
        .run();
    assert_eq!(d.status.phase, Some(Phase::Migrating));
    let snapshot = d.status.snapshot.clone().expect("a snapshot");
    assert_eq!(snapshot.schema_version, Some(3));
    assert_eq!(
        snapshot.annotation,
        format!("listacompra-snapshot={}", snapshot.job)
    );
    assert!(
        matches!(&d.actions[..], [Action::TakeSnapshot { name, .. }] if *name == snapshot.job),
        "{:?}",
        d.actions
    );
    assert_eq!(d.status.migration_job, None);
    assert_eq!(
        cond(&d, condition::MIGRATIONS_APPLIED).1,
        "TakingSnapshot".to_owned()
    );
    // Complete: recorded, then the migration.
    let d = Case::new("taken", backed_up, d.status)
        .serving("1.0.0")
        .snapshot(JobState::Succeeded)
        .at(t(200))
        .run();
    assert_eq!(
        d.status
            .snapshot
            .as_ref()
            .and_then(|s| s.completion_time.clone()),
        Some(Time(t(200)))
    );
    assert!(only_migrates(&d), "{:?}", d.actions);
    assert!(d.notes.iter().any(|n| n.reason == "SnapshotTaken"));
    // Without backups, the migration at once.
    let d = Case::new("no backups", spec("1.1.0"), settled())
        .serving("1.0.0")
        .run();
    assert_eq!(d.status.snapshot, None);
    assert!(only_migrates(&d), "{:?}", d.actions);
}
