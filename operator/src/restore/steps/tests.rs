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
    /// Passes a pod of an earlier (or deleted) restore Job still runs.
    lingering_restore_pod: u32,
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
/// - pgBackRest runs only on a stopped database, with no API or worker pod and no other
///   restore's pod left;
/// - the operator starts PostgreSQL again only after pgBackRest has finished, or, when the
///   restore ends before pgBackRest ran, to put it back as it was;
/// - the migration runs only on a started database, after the restore;
/// - steps are entered once each, in order;
/// - an ended restore does nothing more.
///
/// A pass that ends the restore acts before it records (its actions undo), every other
/// records first; a crash may come before either or between them.
fn simulate(seed: u64) -> Outcome {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let restore_passes = below(6) != 0;
    let migration_passes = below(6) != 0;
    let smoke_passes = below(6) != 0;
    let mut world = World {
        traffic_pods: 1 + below(3) as usize,
        db_replicas: if below(10) == 0 { 0 } else { 1 },
        db_pods: 0,
        lingering_restore_pod: if below(4) == 0 { below(8) as u32 } else { 0 },
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
    let mut restore_created = false;
    let mut restore_done = false;
    for pass in 0..400 {
        let now = t(pass as i64 * 2);
        // The release holds its traffic until the restore reaches StartingTraffic.
        let held = status.step.is_none_or(|s| s < RestoreStep::StartingTraffic);
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
        world.lingering_restore_pod = world.lingering_restore_pod.saturating_sub(1);
        // Someone scales PostgreSQL by hand, now and then.
        if below(20) == 0 {
            world.db_replicas = below(3) as i32;
            // Its pods may come at once (a fast node).
            if below(2) == 0 {
                world.db_pods = world.db_replicas as usize;
            }
            trail.push(format!("p{pass} hand-scaled to {}", world.db_replicas));
        }
        let ready_pods = if world.db_pods == world.db_replicas as usize {
            world.db_pods as i32
        } else {
            0
        };
        let own_pod = world.restore.as_ref().is_some_and(|j| j.looks_left > 0);
        let restore_pods = usize::from(world.lingering_restore_pod > 0) + usize::from(own_pod);
        let (seen_db_pods, seen_traffic) = (world.db_pods, world.traffic_pods);
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
            restore_pods,
            restore_job: SimJob::look(world.restore.as_mut()),
            migration_job: SimJob::look(world.migration.as_mut()),
            smoke_job: SimJob::look(world.smoke.as_mut()),
            step_deadline_seconds: 1800,
            approvals: &[],
            now,
        };
        let decision = decide(&observed);
        if status.completion_time.is_some() {
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
        let ending = decision.status.completion_time.is_some();
        let crash = below(10);
        if crash == 0 {
            trail.push(format!("p{pass} crash before anything"));
            continue;
        }
        if !ending {
            status = decision.status.clone();
            if status.step > Some(RestoreStep::Restoring) {
                restore_done = true;
            }
            if crash == 1 {
                trail.push(format!("p{pass} crash after the status write"));
                continue;
            }
        }
        for action in &decision.actions {
            trail.push(format!("p{pass} {action:?} at {:?}", decision.status.step));
            match *action {
                Action::ScaleDatabase(n) => {
                    assert!(
                        n == 0 || restore_done || !restore_created,
                        "seed {seed}: PostgreSQL started before pgBackRest finished\n{trail:#?}"
                    );
                    world.db_replicas = n;
                }
                Action::CreateRestoreJob => {
                    assert!(
                        seen_db_pods == 0 && seen_traffic == 0 && restore_pods == 0,
                        "seed {seed}: pgBackRest started on a live database: {world:?}\n{trail:#?}"
                    );
                    restore_created = true;
                    if world.restore.is_none() {
                        world.restore = Some(SimJob {
                            passes: restore_passes,
                            looks_left: below(4) as u32,
                        });
                    }
                }
                Action::DeleteRestoreJob => {
                    if world.restore.take().is_some() {
                        world.lingering_restore_pod = below(3) as u32;
                    }
                }
                Action::CreateMigrationJob(revision) => {
                    assert_eq!(Some(revision), migrations);
                    assert!(
                        restore_done && world.db_pods > 0,
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
        if ending {
            if crash == 1 {
                trail.push(format!(
                    "p{pass} crash after acting, before the status write"
                ));
                continue;
            }
            status = decision.status.clone();
            // An end before pgBackRest ran puts PostgreSQL back; one while it ran stops it.
            if status.step == Some(RestoreStep::StoppingDatabase) {
                assert_eq!(
                    world.db_replicas, 1,
                    "seed {seed}: PostgreSQL left stopped\n{trail:#?}"
                );
            }
            if status.step == Some(RestoreStep::Restoring) {
                assert!(
                    world.restore.as_ref().is_none_or(|j| j.looks_left == 0),
                    "seed {seed}: a restore Job left running\n{trail:#?}"
                );
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
                // Besides a failing Job: a hand scale of PostgreSQL (two replicas, or started
                // under pgBackRest).
                let hand_made = ["someone else", "replicas", "deleted"];
                assert!(
                    !all_pass
                        || status
                            .message
                            .as_deref()
                            .is_some_and(|m| hand_made.iter().any(|h| m.contains(h))),
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
        restore_pods: 0,
        restore_job: JobState::Absent,
        migration_job: JobState::Absent,
        smoke_job: JobState::Absent,
        step_deadline_seconds: 60,
        approvals: &[],
        now: t(0),
    };
    let d = decide(&observed);
    assert_eq!(d.status.phase, Some(RestorePhase::Failed));
    assert_eq!(d.status.step, Some(RestoreStep::StoppingTraffic));
    assert!(d.actions.is_empty());
    assert!(
        d.status.message.as_deref().is_some_and(
            |m| m.contains("StatefulSet postgres (the release's spec.backups.database")
        ),
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
