//! The release's side of a restore: taken up only while nothing moves, refused otherwise,
//! holding the release (no attempt starts, traffic stopped until the database is back), and
//! the return to where the release stood. A seeded sequence mixes restores with spec
//! changes, aborts and deletions.

use listacompra_crds::restore::{RestorePhase, RestoreStep};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn with_backups(mut s: ListaCompraReleaseSpec) -> ListaCompraReleaseSpec {
    s.backups = Some(
        serde_json::from_value(serde_json::json!({
            "image": { "repository": "reg/pgbackrest", "tag": "2.45" },
            "envFrom": [{ "configMapName": "pgbackrest" }],
            "database": { "statefulSet": "postgres" }
        }))
        .expect("valid backups"),
    );
    s
}

fn settled() -> ListaCompraReleaseStatus {
    let mut s = status(Phase::Succeeded, "1.0.0");
    s.attempt = Some(1);
    s.current_image = Some("reg/api:1.0.0".into());
    s
}

fn pending(name: &str) -> RestoreSeen {
    RestoreSeen {
        name: name.into(),
        uid: format!("uid-{name}"),
        phase: None,
        step: None,
        message: None,
        schema_version: None,
        backup_set: Some("20261203-101500F".into()),
        created: t(50),
    }
}

fn at(name: &str, phase: RestorePhase, step: RestoreStep) -> RestoreSeen {
    RestoreSeen {
        phase: Some(phase),
        step: Some(step),
        schema_version: Some(3),
        ..pending(name)
    }
}

impl Case {
    fn restores(mut self, restores: Vec<RestoreSeen>) -> Self {
        self.restores = restores;
        self
    }
}

/// The status once restore `name` was taken up from `status`.
fn restoring(name: &str, mut status: ListaCompraReleaseStatus) -> ListaCompraReleaseStatus {
    let version = status.current_version.clone().unwrap_or_default();
    let spec = with_backups(spec(&version));
    status = Case::new("take up", spec, status)
        .serving("1.0.0")
        .restores(vec![pending(name)])
        .run()
        .status;
    assert_eq!(status.phase, Some(Phase::Restoring));
    status
}

#[test]
fn a_settled_release_takes_a_restore_up_and_stops_its_traffic() {
    let d = Case::new("settled", with_backups(spec("1.0.0")), settled())
        .serving("1.0.0")
        .restores(vec![pending("r1"), pending("r2")])
        .run();
    assert_eq!(phase(&d), Phase::Restoring);
    let active = d.status.restore.clone().expect("taken up");
    assert_eq!(
        (active.name.as_str(), active.return_phase),
        ("r1", Phase::Succeeded)
    );
    assert!(d.hold_traffic, "the API and the worker stop");
    assert_eq!(serves(&d), Some("1.0.0"));
    assert_eq!(kstatus(&d), (true, false));
    assert!(!cond(&d, condition::READY).0);
    assert!(!cond(&d, condition::AVAILABLE).0);
    assert!(has_note(&d, "RestoreStarted"));
    // The second one is refused: one restore at a time.
    assert_eq!(d.refusals.len(), 1);
    assert_eq!(d.refusals[0].name, "r2");
    assert!(
        d.refusals[0]
            .message
            .contains("restore r1 of this release runs")
    );
}

#[test]
fn a_restore_is_refused_while_an_attempt_is_in_flight_or_without_backups() {
    let in_flight = [
        migrating("1.1.0"),
        verifying("1.1.0"),
        rolling_back("1.1.0", 10),
        status(Phase::AwaitingApproval, "1.1.0"),
    ];
    for s in in_flight {
        let was = s.phase;
        let d = Case::new("in flight", with_backups(spec("1.1.0")), s)
            .serving("1.0.0")
            .restores(vec![pending("r1")])
            .run();
        assert_ne!(
            d.status.phase,
            Some(Phase::Restoring),
            "{was:?}: the attempt goes on"
        );
        assert_eq!(d.status.restore, None);
        assert_eq!(d.refusals.len(), 1, "{was:?}");
        assert!(
            d.refusals[0].message.contains("in flight"),
            "{:?}",
            d.refusals
        );
    }
    // Settled, but a new version was just applied: the attempt starts, the restore waits
    // for no one.
    let d = Case::new("new target", with_backups(spec("1.1.0")), settled())
        .serving("1.0.0")
        .restores(vec![pending("r1")])
        .run();
    assert_eq!(d.status.attempt, Some(2), "the attempt starts");
    assert!(d.refusals[0].message.contains("in flight"));
    // Without spec.backups there is nothing to restore with.
    let d = Case::new("no backups", spec("1.0.0"), settled())
        .serving("1.0.0")
        .restores(vec![pending("r1")])
        .run();
    assert_eq!(phase(&d), Phase::Succeeded);
    assert!(d.refusals[0].message.contains("spec.backups.database"));
}

#[test]
fn no_attempt_starts_while_a_restore_runs_and_traffic_returns_with_the_database() {
    let held = restoring("r1", settled());
    // A new version applied meanwhile waits for the restore.
    let d = Case::new("new version", with_backups(spec("1.1.0")), held.clone())
        .serving("1.0.0")
        .restores(vec![at(
            "r1",
            RestorePhase::Restoring,
            RestoreStep::Restoring,
        )])
        .run();
    assert_eq!(phase(&d), Phase::Restoring);
    assert_eq!(d.status.attempt, held.attempt);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.hold_traffic);
    assert_eq!(
        serves(&d),
        Some("1.0.0"),
        "the stable version, not the new one"
    );
    // An abort names attempts, not restores.
    let d = Case::new("abort", with_backups(spec("1.0.0")), held.clone())
        .aborted(1)
        .restores(vec![at(
            "r1",
            RestorePhase::Restoring,
            RestoreStep::Migrating,
        )])
        .run();
    assert_eq!(phase(&d), Phase::Restoring);
    // From StartingTraffic on, the API and the worker run again.
    let d = Case::new("traffic back", with_backups(spec("1.0.0")), held.clone())
        .restores(vec![at(
            "r1",
            RestorePhase::Restoring,
            RestoreStep::StartingTraffic,
        )])
        .run();
    assert!(!d.hold_traffic);
    assert_eq!(phase(&d), Phase::Restoring);
}

#[test]
fn a_restore_ends_where_the_release_stood_or_failed_for_a_person() {
    // Across an irreversible revision: the schema was kept at 4, the restore brings 3 back.
    let mut kept = status(Phase::RolledBack, "1.1.0");
    kept.attempt = Some(2);
    kept.schema_version = Some(4);
    let held = restoring("r1", kept);
    let d = Case::new("restored", with_backups(spec("1.1.0")), held.clone())
        .serving("1.0.0")
        .restores(vec![at(
            "r1",
            RestorePhase::Succeeded,
            RestoreStep::SmokeTesting,
        )])
        .run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert_eq!(d.status.restore, None);
    assert_eq!(d.status.schema_version, Some(3));
    let (applied, reason, message) = cond(&d, condition::MIGRATIONS_APPLIED);
    assert!(
        applied && reason == "Restored" && message.contains("20261203-101500F"),
        "{message}"
    );
    assert!(!d.hold_traffic);

    // Failed once pgBackRest may have written: held in Restoring for a person, traffic
    // stopped, Stalled says why (once as an Event).
    let failed = vec![RestoreSeen {
        message: Some("pgbackrest restore failed: exit 56".into()),
        ..at("r1", RestorePhase::Failed, RestoreStep::Restoring)
    }];
    let d = Case::new("failed", with_backups(spec("1.1.0")), held.clone())
        .restores(failed.clone())
        .run();
    assert_eq!(phase(&d), Phase::Restoring);
    assert!(d.hold_traffic);
    assert_eq!(kstatus(&d), (false, true));
    let (stalled, reason, message) = cond(&d, condition::STALLED);
    assert!(
        stalled && reason == "RestoreFailed" && message.contains("exit 56"),
        "{message}"
    );
    assert!(has_note(&d, "RestoreFailed"));
    assert!(
        d.actions.is_empty(),
        "a failed restore Job stays, for its log"
    );
    let again = Case::new("again", with_backups(spec("1.1.0")), d.status.clone())
        .restores(failed.clone())
        .run();
    assert_eq!(phase(&again), Phase::Restoring);
    assert!(again.hold_traffic);
    assert!(!has_note(&again, "RestoreFailed"), "told once");
    // Another restore is taken up at once, and returns to where the release stood first.
    let mut retry = failed.clone();
    retry.push(pending("r2"));
    let d2 = Case::new("retry", with_backups(spec("1.1.0")), d.status.clone())
        .restores(retry)
        .run();
    let active = d2.status.restore.clone().expect("r2 taken up");
    assert_eq!(
        (active.name.as_str(), active.return_phase),
        ("r2", Phase::RolledBack)
    );
    assert!(d2.refusals.is_empty());
    // Or a new version starts an attempt on the database as it is.
    let d3 = Case::new("new version", with_backups(spec("1.2.0")), d.status.clone())
        .restores(failed)
        .run();
    assert_eq!(d3.status.attempt, Some(3));
    assert_eq!(d3.status.restore, None);
    assert_ne!(phase(&d3), Phase::Restoring);
    assert!(
        d3.actions.contains(&Action::DeleteJob {
            name: naming::restore_job_name("r1", "uid-r1", "restore")
        }),
        "the broken restore's pgBackRest is stopped: {:?}",
        d3.actions
    );

    // Failed before it stopped anything: back to where it stood, traffic back.
    let d = Case::new("failed early", with_backups(spec("1.1.0")), held.clone())
        .restores(vec![at(
            "r1",
            RestorePhase::Failed,
            RestoreStep::StoppingTraffic,
        )])
        .run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert!(!d.hold_traffic);
    assert!(has_note(&d, "RestoreFailed"));

    // Deleted before PostgreSQL was stopped (as last seen): nothing was touched.
    let mut seen_early = held.clone();
    if let Some(r) = seen_early.restore.as_mut() {
        r.step = Some(RestoreStep::StoppingTraffic);
    }
    let d = Case::new("deleted early", with_backups(spec("1.1.0")), seen_early).run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert!(!d.hold_traffic);

    // Deleted midway: nobody knows the database's state, and its pgBackRest may still run.
    let mut seen_restoring = held.clone();
    if let Some(r) = seen_restoring.restore.as_mut() {
        r.step = Some(RestoreStep::Restoring);
    }
    let d = Case::new("deleted", with_backups(spec("1.1.0")), seen_restoring).run();
    assert_eq!(phase(&d), Phase::Restoring);
    assert!(d.hold_traffic);
    assert_eq!(cond(&d, condition::STALLED).1, "RestoreAbandoned");
    assert_eq!(
        d.actions,
        [Action::DeleteJob {
            name: naming::restore_job_name("r1", "uid-r1", "restore")
        }]
    );

    // Taken up, and its status not written yet (or refused by someone): never refused by
    // the release that runs it.
    let d = Case::new("no status yet", with_backups(spec("1.1.0")), held.clone())
        .restores(vec![pending("r1")])
        .run();
    assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    assert_eq!(phase(&d), Phase::Restoring);
    let d = Case::new("refused", with_backups(spec("1.1.0")), held)
        .restores(vec![RestoreSeen {
            phase: Some(RestorePhase::Refused),
            ..pending("r1")
        }])
        .run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert!(!d.hold_traffic);
}

#[test]
fn a_restore_the_operator_cannot_begin_lets_the_release_go_at_its_deadline() {
    let held = restoring("r1", settled());
    let case = |now| {
        Case::new("never began", with_backups(spec("1.0.0")), held.clone())
            .restores(vec![pending("r1")])
            .at(now)
            .run()
    };
    let waiting = case(t(100 + 599));
    assert_eq!(phase(&waiting), Phase::Restoring);
    assert!(waiting.hold_traffic);
    let gone = case(t(100 + 600));
    assert_eq!(phase(&gone), Phase::Succeeded);
    assert!(!gone.hold_traffic);
    assert_eq!(gone.status.restore, None);
    assert!(has_note(&gone, "RestoreFailed"));
    // Written off, so that it is not taken up again (and traffic stopped again).
    let refused: Vec<&str> = gone.refusals.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["r1"]);
}

#[test]
fn a_restore_from_failed_ends_rolled_back_on_the_stable_version() {
    let mut failed = status(Phase::Failed, "1.1.0");
    failed.attempt = Some(2);
    let held = restoring("r1", failed);
    let d = Case::new("restored", with_backups(spec("1.1.0")), held)
        .restores(vec![at(
            "r1",
            RestorePhase::Succeeded,
            RestoreStep::SmokeTesting,
        )])
        .run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert_eq!(serves(&d), Some("1.0.0"));
    assert!(cond(&d, condition::AVAILABLE).0);
}

/// Seeded sequences of restores, spec changes, aborts and deletions over a release whose
/// attempts and restores move at random: at every step, an attempt never starts while a
/// restore runs, at most one restore is taken up at a time, a restore is taken up only from
/// a settled phase, and traffic is stopped whenever a taken-up restore has not brought the
/// database back. Replay with `RESTORE_SEQUENCE_SEEDS`.
#[test]
fn restores_and_attempts_never_overlap_in_any_sequence() {
    for seed in 0..seeds("RESTORE_SEQUENCE_SEEDS") {
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut below = |n: u64| rng.next_u64() % n;
        let mut spec_now = with_backups(spec("1.0.0"));
        let mut status = settled();
        let mut restores: Vec<RestoreSeen> = Vec::new();
        let mut next = 0;
        let mut trail = Vec::new();
        let mut serving_hash = None;
        let mut restored = 0;
        for step in 0..200 {
            match below(12) {
                0 => {
                    next += 1;
                    restores.push(pending(&format!("r{next}")));
                    trail.push(format!("{step}: restore r{next}"));
                }
                1 => {
                    let v = format!("1.{}.0", 1 + below(3));
                    trail.push(format!("{step}: version {v}"));
                    spec_now = with_backups(spec(&v));
                }
                2 if !restores.is_empty() => {
                    let i = below(restores.len() as u64) as usize;
                    trail.push(format!("{step}: delete {}", restores[i].name));
                    restores.remove(i);
                }
                _ => {}
            }
            // The taken-up restore moves on, and may end.
            if let Some(active) = status.restore.clone()
                && let Some(r) = restores.iter_mut().find(|r| r.uid == active.uid)
                && r.phase.is_none_or(|p| p == RestorePhase::Restoring)
            {
                r.phase = Some(RestorePhase::Restoring);
                let s = r.step.map_or(0, |s| s as u64 + 1).min(6);
                r.step = Some(RestoreStep::ORDER[s as usize]);
                match below(8) {
                    0 => r.phase = Some(RestorePhase::Failed),
                    1 | 2 if s == 6 => r.phase = Some(RestorePhase::Succeeded),
                    _ => {}
                }
            }
            let mut case = Case::new("sequence", spec_now.clone(), status.clone())
                .restores(
                    restores
                        .iter()
                        .filter(|r| {
                            r.pending() || status.restore.as_ref().is_some_and(|a| a.uid == r.uid)
                        })
                        .cloned()
                        .collect(),
                )
                .at(t(100 + step));
            // Jobs pass at once and the rollout is done: attempts move fast.
            case.migration_job = JobState::Succeeded;
            case.smoke_job = JobState::Succeeded;
            case.health_check = Some(Ok(()));
            case.workload.available = true;
            case.workload.hash = serving_hash.clone();
            let d = case.run();
            let was = status.phase;
            let started_attempt = d.status.attempt != status.attempt;
            // Only a restore that broke (failed once pgBackRest may have written, or went)
            // gives way to an attempt.
            let broken = status.restore.as_ref().is_some_and(|a| {
                restores.iter().find(|r| r.uid == a.uid).is_none_or(|r| {
                    r.phase == Some(RestorePhase::Failed) && r.step >= Some(RestoreStep::Restoring)
                })
            });
            assert!(
                !(was == Some(Phase::Restoring) && started_attempt && !broken),
                "seed {seed}: an attempt started during a restore\n{trail:#?}"
            );
            if d.status.restore.is_none()
                && status.restore.is_some()
                && d.status.phase != Some(Phase::Failed)
            {
                restored += 1;
            }
            if d.status.restore.is_some() && status.restore.is_none() {
                assert!(
                    matches!(
                        was,
                        Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)
                    ),
                    "seed {seed}: a restore taken up in {was:?}\n{trail:#?}"
                );
                assert!(!started_attempt, "seed {seed}: taken up with a new attempt");
            }
            if d.status.phase == Some(Phase::Restoring) {
                let active = d
                    .status
                    .restore
                    .clone()
                    .expect("Restoring names its restore");
                // Stopped until the restore brought the database back (as last seen, when it
                // is gone).
                let seen = restores.iter().find(|r| r.uid == active.uid);
                let held = match seen {
                    Some(_) => holds_traffic(seen),
                    None => active.step.is_none_or(|s| s < RestoreStep::StartingTraffic),
                };
                assert_eq!(
                    d.hold_traffic, held,
                    "seed {seed}: traffic while restoring\n{trail:#?}"
                );
            }
            for refusal in &d.refusals {
                let r = restores
                    .iter_mut()
                    .find(|r| r.uid == refusal.uid)
                    .expect("refused a known restore");
                assert!(r.pending(), "seed {seed}: refused a restore not pending");
                r.phase = Some(RestorePhase::Refused);
            }
            trail.push(format!(
                "{step}: {:?} → {:?} (restore {:?})",
                was,
                d.status.phase,
                d.status.restore.as_ref().map(|r| &r.name)
            ));
            status = d.status;
            let _ = restored;
            // The rollout of whatever serves is done by the next look.
            serving_hash = d
                .workload
                .as_ref()
                .map(|w| deployment_hash(RELEASE, &spec_now, w));
        }
    }
}

fn restore_approval(
    name: &str,
    role: &str,
    restore: Option<&str>,
    attempt: i64,
    at: i64,
) -> Approval {
    Approval {
        name: name.into(),
        release: RELEASE.into(),
        version: "1.0.0".into(),
        attempt,
        role: role.into(),
        approver: format!("{role}-person"),
        created: t(at),
        restore: restore.map(|r| (r.to_owned(), format!("uid-{r}"))),
    }
}

#[test]
fn a_restore_of_a_release_with_approvals_waits_for_one_per_role_given_for_it() {
    let mut with_approvals = with_backups(spec("1.0.0"));
    with_approvals.approvals = Some(listacompra_crds::approval::ApprovalPolicy {
        required_roles: vec!["qa".into(), "product-owner".into()],
    });
    let case = |approvals: Vec<Approval>| {
        Case::new("approvals", with_approvals.clone(), settled())
            .serving("1.0.0")
            .restores(vec![pending("r1"), pending("r2")])
            .approvals(approvals)
            .run()
    };
    // None yet: it waits (not refused), saying what to create; the second waits behind it.
    let d = case(vec![]);
    assert_eq!(phase(&d), Phase::Succeeded);
    assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    let waits: Vec<&str> = d.restore_waits.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(waits, ["r1", "r2"], "each says what it waits for");
    let message = &d.restore_waits[0].message;
    assert!(
        message.contains("qa, product-owner")
            && message.contains("restore r1")
            && message.contains("attempt 1"),
        "{message}"
    );
    assert!(!d.hold_traffic);
    // What does not count: an attempt's approval, another restore's, an older attempt's,
    // one given before the restore was created.
    let d = case(vec![
        restore_approval("attempt", "qa", None, 1, 60),
        restore_approval("other", "qa", Some("r2"), 1, 60),
        restore_approval("old", "qa", Some("r1"), 0, 60),
        restore_approval("early", "qa", Some("r1"), 1, 40),
        // Given for an earlier restore of the same name (deleted, created again).
        Approval {
            restore: Some(("r1".into(), "uid-of-an-earlier-r1".into())),
            ..restore_approval("predecessor", "qa", Some("r1"), 1, 60)
        },
        restore_approval("po", "product-owner", Some("r1"), 1, 61),
    ]);
    assert_eq!(phase(&d), Phase::Succeeded);
    assert!(
        d.restore_waits[0].message.contains(
            "waiting for approval by qa (approved: product-owner by product-owner-person)"
        ),
        "{}",
        d.restore_waits[0].message
    );
    // Both roles, by two people: taken up, with the approvals recorded.
    let d = case(vec![
        restore_approval("qa", "qa", Some("r1"), 1, 60),
        restore_approval("po", "product-owner", Some("r1"), 1, 61),
    ]);
    assert_eq!(phase(&d), Phase::Restoring);
    let active = d.status.restore.clone().expect("taken up");
    let roles: Vec<&str> = active.approvals.iter().map(|a| a.role.as_str()).collect();
    assert_eq!(roles, ["qa", "product-owner"]);
    assert!(d.restore_waits.is_empty());
    assert_eq!(
        d.refusals.len(),
        1,
        "r2 is refused once r1 runs: {:?}",
        d.refusals
    );
    // One nobody approves never holds up a later one that is approved.
    let d = case(vec![
        restore_approval("qa2", "qa", Some("r2"), 1, 60),
        restore_approval("po2", "product-owner", Some("r2"), 1, 61),
    ]);
    assert_eq!(d.status.restore.map(|r| r.name), Some("r2".to_owned()));
    let refused: Vec<&str> = d.refusals.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["r1"]);
}
