//! The restore's steps over seeded simulations of a cluster: pods that take their time to
//! go and come, Jobs that pass or fail, status writes and actions lost to a crash, and a
//! StatefulSet scaled by hand in the middle. Replay a failure with `RESTORE_SEED=<seed>`.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + secs)
}

/// A Job of the simulation: how it ends, after how many looks.
#[derive(Debug, Clone)]
struct SimJob {
    passes: bool,
    looks_left: u32,
}

impl SimJob {
    fn look(job: Option<&mut SimJob>) -> JobState {
        match job {
            None => JobState::Absent,
            Some(job) if job.looks_left > 0 => {
                job.looks_left -= 1;
                JobState::Running
            }
            Some(job) if job.passes => JobState::Succeeded,
            Some(_) => JobState::Failed("BackoffLimitExceeded".into()),
        }
    }
}

/// The cluster a restore runs in.
#[derive(Debug)]
struct World {
    traffic_pods: usize,
    db_replicas: i32,
    db_pods: usize,
    restore: Option<SimJob>,
    migration: Option<SimJob>,
    smoke: Option<SimJob>,
    /// Passes since the API and the worker were let back.
    traffic_back_for: u32,
}

#[derive(Debug)]
struct Outcome {
    status: ListaCompraRestoreStatus,
    trail: Vec<String>,
    /// The restore Job passes, and so on: what the seed drew.
    restore_passes: bool,
    migration_passes: bool,
    smoke_passes: bool,
}

fn seeds() -> Vec<u64> {
    match std::env::var("RESTORE_SEED") {
        Ok(seed) => vec![seed.parse().expect("RESTORE_SEED is a number")],
        Err(_) => (0..1000).collect(),
    }
}

/// Runs one restore to its end, checking at every pass what must always hold:
/// - pgBackRest runs only on a stopped database with no API or worker pod left;
/// - PostgreSQL is started again only after pgBackRest has finished;
/// - the migration runs only on a started database, after the restore;
/// - steps are entered once each, in order;
/// - an ended restore does nothing more.
fn simulate(seed: u64) -> Outcome {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let restore_passes = below(6) != 0;
    let migration_passes = below(6) != 0;
    let smoke_passes = below(6) != 0;
    let mut world = World {
        traffic_pods: 1 + below(3) as usize,
        db_replicas: 1 + below(2) as i32,
        db_pods: 0,
        restore: None,
        migration: None,
        smoke: None,
        traffic_back_for: 0,
    };
    world.db_pods = world.db_replicas as usize;
    let smoke_test = below(2) == 0;
    let migrations = (below(3) != 0).then_some(9);
    let mut status = ListaCompraRestoreStatus::default();
    let mut trail = Vec::new();
    let mut restore_done_at: Option<usize> = None;
    for pass in 0..400 {
        let now = t(pass as i64 * 2);
        let step = status.step;
        // The release holds its traffic until the restore reaches StartingTraffic.
        let held = step.is_none_or(|s| s < RestoreStep::StartingTraffic);
        if held {
            if world.traffic_pods > 0 && below(3) == 0 {
                world.traffic_pods -= 1;
            }
            world.traffic_back_for = 0;
        } else {
            world.traffic_back_for += 1;
        }
        // The StatefulSet's pods follow its replicas, one at a time.
        let wanted = world.db_replicas as usize;
        if world.db_pods != wanted && below(3) == 0 {
            world.db_pods = if world.db_pods < wanted {
                world.db_pods + 1
            } else {
                world.db_pods - 1
            };
        }
        // Someone scales PostgreSQL by hand, now and then.
        if below(20) == 0 {
            world.db_replicas = below(3) as i32;
            // Its pods may come at once (a fast node).
            if below(2) == 0 {
                world.db_pods = world.db_replicas as usize;
            }
            trail.push(format!("p{pass} hand-scaled to {}", world.db_replicas));
        }
        let ready_pods = if world.db_pods == wanted {
            world.db_pods as i32
        } else {
            0
        };
        let observed = Observed {
            stateful_set: "postgres",
            generation: 1,
            status: &status,
            schema_version: migrations,
            smoke_test,
            traffic_pods: world.traffic_pods,
            traffic_serving: world.traffic_back_for > 2,
            database: Some(Database {
                replicas: world.db_replicas,
                pods: world.db_pods,
                ready: ready_pods,
            }),
            restore_job: SimJob::look(world.restore.as_mut()),
            migration_job: SimJob::look(world.migration.as_mut()),
            smoke_job: SimJob::look(world.smoke.as_mut()),
            step_deadline_seconds: 1800,
            now,
        };
        let decision = decide(&observed);
        let ended_before = status.completion_time.is_some();
        if ended_before {
            assert!(
                decision.actions.is_empty() && decision.status == status,
                "seed {seed}: an ended restore acted: {decision:?}"
            );
            break;
        }
        // Steps entered once each, in order.
        let order: Vec<RestoreStep> = decision.status.steps.iter().map(|s| s.step).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: steps out of order: {order:?}\n{trail:#?}"
        );
        // A crash loses the status write (and the actions), or only the actions.
        let crash = below(10);
        if crash == 0 {
            trail.push(format!("p{pass} crash before the status write"));
            continue;
        }
        status = decision.status.clone();
        if status.step > Some(RestoreStep::Restoring) && restore_done_at.is_none() {
            restore_done_at = Some(pass);
        }
        if crash == 1 {
            trail.push(format!("p{pass} crash after the status write"));
            continue;
        }
        for action in &decision.actions {
            trail.push(format!("p{pass} {action:?} at {:?}", status.step));
            match *action {
                Action::ScaleDatabase(n) => {
                    assert!(
                        n == 0 || restore_done_at.is_some(),
                        "seed {seed}: PostgreSQL started before pgBackRest finished\n{trail:#?}"
                    );
                    world.db_replicas = n;
                }
                Action::CreateRestoreJob => {
                    assert!(
                        world.db_pods == 0 && world.db_replicas == 0 && world.traffic_pods == 0,
                        "seed {seed}: pgBackRest started on a live database: {world:?}\n{trail:#?}"
                    );
                    if world.restore.is_none() {
                        world.restore = Some(SimJob {
                            passes: restore_passes,
                            looks_left: below(4) as u32,
                        });
                    }
                }
                Action::CreateMigrationJob(revision) => {
                    assert_eq!(Some(revision), migrations);
                    assert!(
                        restore_done_at.is_some() && world.db_pods > 0,
                        "seed {seed}: migrated a database not restored or not started\n{trail:#?}"
                    );
                    if world.migration.is_none() {
                        world.migration = Some(SimJob {
                            passes: migration_passes,
                            looks_left: below(4) as u32,
                        });
                    }
                }
                Action::CreateSmokeJob => {
                    assert!(
                        smoke_test,
                        "seed {seed}: a smoke test the release has none of"
                    );
                    if world.smoke.is_none() {
                        world.smoke = Some(SimJob {
                            passes: smoke_passes,
                            looks_left: below(4) as u32,
                        });
                    }
                }
            }
        }
    }
    Outcome {
        status,
        trail,
        restore_passes,
        migration_passes: migration_passes || migrations.is_none(),
        smoke_passes: smoke_passes || !smoke_test,
    }
}

#[test]
fn a_restore_runs_its_steps_in_order_whatever_the_cluster_and_the_crashes_do() {
    let mut ended = [0; 2];
    for seed in seeds() {
        let run = simulate(seed);
        let status = &run.status;
        let all_pass = run.restore_passes && run.migration_passes && run.smoke_passes;
        match status.phase {
            Some(RestorePhase::Succeeded) => {
                assert!(
                    all_pass,
                    "seed {seed}: succeeded with a failing Job\n{:#?}",
                    run.trail
                );
                assert!(
                    status.steps.iter().all(|s| s.completion_time.is_some()),
                    "seed {seed}: a step without its end: {:?}",
                    status.steps
                );
                assert!(
                    crate::conditions::get(&status.conditions, "Ready")
                        .is_some_and(|c| c.status == "True")
                );
                ended[0] += 1;
            }
            Some(RestorePhase::Failed) => {
                assert!(
                    !all_pass
                        || status
                            .message
                            .as_deref()
                            .is_some_and(|m| m.contains("deleted")),
                    "seed {seed}: failed with every Job passing: {status:?}\n{:#?}",
                    run.trail
                );
                assert!(
                    crate::conditions::get(&status.conditions, "Stalled")
                        .is_some_and(|c| c.status == "True")
                );
                ended[1] += 1;
            }
            other => panic!(
                "seed {seed}: not ended after 400 passes: {other:?} {status:?}\n{:#?}",
                run.trail
            ),
        }
    }
    if seeds().len() > 1 {
        assert!(
            ended.iter().all(|n| *n > 20),
            "both endings drawn often: {ended:?}"
        );
    }
}

#[test]
fn a_missing_stateful_set_fails_before_anything_is_stopped_and_a_slow_step_fails_at_its_deadline() {
    let status = ListaCompraRestoreStatus::default();
    let observed = Observed {
        stateful_set: "postgres",
        generation: 1,
        status: &status,
        schema_version: Some(9),
        smoke_test: true,
        traffic_pods: 2,
        traffic_serving: true,
        database: None,
        restore_job: JobState::Absent,
        migration_job: JobState::Absent,
        smoke_job: JobState::Absent,
        step_deadline_seconds: 60,
        now: t(0),
    };
    let d = decide(&observed);
    assert_eq!(d.status.phase, Some(RestorePhase::Failed));
    assert_eq!(d.status.step, Some(RestoreStep::StoppingTraffic));
    assert!(d.actions.is_empty());
    assert!(
        d.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("StatefulSet postgres (spec.database.statefulSet)")),
        "{:?}",
        d.status.message
    );

    // PostgreSQL does not stop: the step fails at the deadline, saying which step.
    let mut observed = observed;
    observed.database = Some(Database {
        replicas: 1,
        pods: 1,
        ready: 1,
    });
    observed.traffic_pods = 0;
    let d = decide(&observed);
    assert_eq!(d.status.step, Some(RestoreStep::StoppingDatabase));
    assert_eq!(d.actions, [Action::ScaleDatabase(0)]);
    let waiting = d.status;
    observed.status = &waiting;
    observed.now = t(59);
    assert_eq!(
        decide(&observed).status.phase,
        Some(RestorePhase::Restoring)
    );
    observed.now = t(60);
    let d = decide(&observed);
    assert_eq!(d.status.phase, Some(RestorePhase::Failed));
    assert!(
        d.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("StoppingDatabase did not end within 60s")),
        "{:?}",
        d.status.message
    );
}

#[test]
fn a_refused_restore_says_why_and_is_stalled() {
    let status = refused(
        &ListaCompraRestoreStatus::default(),
        1,
        "attempt 3 is in flight",
        t(0),
    );
    assert_eq!(status.phase, Some(RestorePhase::Refused));
    assert!(status.steps.is_empty());
    let stalled = crate::conditions::get(&status.conditions, "Stalled").expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.message.as_str()),
        ("True", "attempt 3 is in flight")
    );
}
