//! Secret rotation: the pods of the serving version rolled with changed Secrets, verified by
//! the health gate alone.

use super::*;

/// 1.0.0 succeeded with its pods stamped with the Secrets' fingerprint "a".
fn settled() -> ListaCompraReleaseStatus {
    let mut s = status(Phase::Succeeded, "1.0.0");
    s.attempt = Some(1);
    s.current_image = Some("reg/api:1.0.0".into());
    s.secrets_version = Some("a".into());
    s
}

/// What serves: 1.0.0 with the pods stamped `secrets`.
fn stamped(secrets: &str) -> WorkloadState {
    let mut w = workload("1.0.0", SpecSource::Current);
    w.secrets = Some(secrets.into());
    WorkloadState {
        hash: Some(deployment_hash(RELEASE, &spec("1.0.0"), &w)),
        available: true,
        stalled: None,
    }
}

fn look(status: &ListaCompraReleaseStatus, live: &str, now: i64) -> Case {
    let mut case = Case::new("rotation", spec("1.0.0"), status.clone()).at(t(now));
    case.workload = stamped(live);
    case.secrets_version = Some("b".into());
    case
}

fn rolled_secrets(d: &Decision) -> Option<String> {
    d.workload.as_ref().and_then(|w| w.secrets.clone())
}

#[test]
fn a_changed_secret_rolls_the_serving_pods_and_the_health_gate_alone_verifies_them() {
    // The Secret changed: the pods are rolled with it; no Job, no new attempt.
    let started = look(&settled(), "a", 100).run();
    assert_eq!(phase(&started), Phase::Succeeded);
    assert!(started.actions.is_empty(), "{:?}", started.actions);
    assert_eq!(rolled_secrets(&started).as_deref(), Some("b"));
    assert_eq!(started.status.attempt, Some(1));
    assert!(has_note(&started, "SecretsRotated"), "{:?}", started.notes);
    assert_eq!(
        kstatus(&started),
        (true, false),
        "Reconciling while it rolls"
    );
    assert_eq!(cond(&started, condition::RECONCILING).1, "RotatingSecrets");
    assert!(cond(&started, condition::READY).0, "1.0.0 still serves");
    let rotation = started.status.rotation.clone().expect("a rotation");
    assert_eq!(rotation.secrets_version, "b");
    assert!(rotation.health.is_none());

    // The rolled pods are available: the health checks begin.
    let checking = look(&started.status, "b", 110).run();
    assert!(
        checking
            .status
            .rotation
            .as_ref()
            .is_some_and(|r| r.health.is_some())
    );
    assert_eq!(
        gate_due(&spec("1.0.0"), &checking.status, None, t(110)),
        GateDue::HEALTH
    );
    assert_eq!(kstatus(&checking), (true, false));

    // Two checks pass (successThreshold 2): verified, settled again.
    let one = look(&checking.status, "b", 110).check(Ok(())).run();
    assert!(
        one.status
            .rotation
            .as_ref()
            .is_some_and(|r| r.completion_time.is_none())
    );
    assert_eq!(
        gate_due(&spec("1.0.0"), &one.status, None, t(112)),
        GateDue::NOTHING,
        "not before the interval"
    );
    let two = look(&one.status, "b", 115).check(Ok(())).run();
    let done = two.status.rotation.clone().expect("the rotation");
    assert!(done.completion_time.is_some() && done.failure.is_none());
    assert!(has_note(&two, "SecretRotationVerified"), "{:?}", two.notes);
    assert_eq!(kstatus(&two), (false, false), "settled");
    assert!(cond(&two, condition::READY).0);
    assert!(two.actions.is_empty());
    assert_eq!(
        gate_due(&spec("1.0.0"), &two.status, None, t(200)),
        GateDue::NOTHING
    );

    // The next look: nothing to do.
    let after = look(&two.status, "b", 300).run();
    assert!(after.notes.is_empty(), "{:?}", after.notes);
    assert_eq!(after.status.rotation, two.status.rotation);
}

#[test]
fn a_rotation_that_fails_its_health_gate_is_degraded_and_stalled_never_rolled_back() {
    let started = look(&settled(), "a", 100).run();
    let checking = look(&started.status, "b", 110).run();
    let one = look(&checking.status, "b", 110)
        .check(Err("503".into()))
        .run();
    let failed = look(&one.status, "b", 115).check(Err("503".into())).run();
    assert_eq!(phase(&failed), Phase::Succeeded);
    assert!(
        failed.actions.is_empty(),
        "nothing to revert: {:?}",
        failed.actions
    );
    assert_eq!(
        rolled_secrets(&failed).as_deref(),
        Some("b"),
        "the rolled pods stay"
    );
    let (degraded, reason, message) = cond(&failed, condition::DEGRADED);
    assert!(degraded);
    assert_eq!(reason, "SecretRotationFailed");
    assert!(message.contains("fix the Secret"), "{message}");
    assert_eq!(kstatus(&failed), (false, true), "Stalled");
    assert!(!cond(&failed, condition::READY).0);
    assert!(has_note(&failed, "SecretRotationFailed"));
    assert!(failed.status.failed_version.is_none());

    // Still failed at the next look, told once.
    let still = look(&failed.status, "b", 400).run();
    assert_eq!(kstatus(&still), (false, true));
    assert!(
        !has_note(&still, "SecretRotationFailed"),
        "{:?}",
        still.notes
    );

    // The Secret is fixed (changes again): another rotation, which passes and clears Degraded.
    let mut fixed = look(&still.status, "b", 500);
    fixed.secrets_version = Some("c".into());
    let again = fixed.run();
    assert_eq!(rolled_secrets(&again).as_deref(), Some("c"));
    assert_eq!(kstatus(&again), (true, false));
    assert!(
        !cond(&again, condition::READY).0,
        "not Ready until a rotation passes again"
    );
    let next = |status: &ListaCompraReleaseStatus, now: i64, check: Option<Result<(), String>>| {
        let mut c = look(status, "c", now);
        c.secrets_version = Some("c".into());
        if let Some(outcome) = check {
            c = c.check(outcome);
        }
        c.run()
    };
    let checking = next(&again.status, 510, None);
    let one = next(&checking.status, 510, Some(Ok(())));
    let passed = next(&one.status, 515, Some(Ok(())));
    assert!(
        !cond(&passed, condition::DEGRADED).0,
        "{:?}",
        cond(&passed, condition::DEGRADED)
    );
    assert!(cond(&passed, condition::READY).0);
    assert_eq!(kstatus(&passed), (false, false));
}

#[test]
fn a_secret_written_again_mid_rotation_restarts_the_roll_not_the_clock() {
    let started = look(&settled(), "a", 100).run();
    let mut again = look(&started.status, "a", 400);
    again.secrets_version = Some("c".into());
    let again = again.run();
    let rotation = again.status.rotation.clone().expect("a rotation");
    assert_eq!(rotation.secrets_version, "c");
    assert_eq!(
        rotation.start_time.0,
        t(100),
        "the deadline counts from the first change"
    );
    let mut late = look(&again.status, "a", 100 + 600);
    late.secrets_version = Some("c".into());
    assert_eq!(
        cond(&late.run(), condition::DEGRADED).1,
        "SecretRotationFailed",
        "a Secret rewritten every few minutes cannot keep a rotation going forever"
    );
}

#[test]
fn a_rotation_that_never_becomes_available_fails_at_the_deadline() {
    let started = look(&settled(), "a", 100).run();
    let waiting = look(&started.status, "a", 300).run();
    assert_eq!(kstatus(&waiting), (true, false));
    let late = look(&waiting.status, "a", 100 + 600).run();
    assert_eq!(cond(&late, condition::DEGRADED).1, "SecretRotationFailed");
    assert!(cond(&late, condition::DEGRADED).2.contains("within 600s"));
    let mut stalled = look(&started.status, "a", 200);
    stalled.workload.stalled = Some("ProgressDeadlineExceeded".into());
    let stalled = stalled.run();
    assert_eq!(
        cond(&stalled, condition::DEGRADED).1,
        "SecretRotationFailed"
    );
}

#[test]
fn a_pause_mid_rotation_holds_it_and_stops_its_clock() {
    let started = look(&settled(), "a", 100).run();
    let checking = look(&started.status, "b", 110).run();
    let mut paused = look(&checking.status, "b", 200);
    paused.spec.paused = true;
    let held = paused.run();
    assert_eq!(cond(&held, condition::PROGRESSING).1, "Paused");
    assert_eq!(rolled_secrets(&held).as_deref(), Some("b"));
    let mut spec_paused = spec("1.0.0");
    spec_paused.paused = true;
    assert_eq!(
        gate_due(&spec_paused, &held.status, None, t(200)),
        GateDue::NOTHING
    );
    // Paused for 1,000 s, far past the 600 s deadline: unpaused, the rotation goes on.
    let mut still = look(&held.status, "b", 1200);
    still.spec.paused = true;
    let still = still.run();
    assert!(
        !cond(&still, condition::DEGRADED).0,
        "no deadline while paused"
    );
    let resumed = look(&still.status, "b", 1210).run();
    assert!(
        !cond(&resumed, condition::DEGRADED).0,
        "{:?}",
        cond(&resumed, condition::DEGRADED)
    );
    let rotation = resumed.status.rotation.clone().expect("the rotation");
    assert!(rotation.completion_time.is_none());
    assert_eq!(
        rotation.start_time.0,
        t(100 + 1010),
        "moved by the 1,010 s paused"
    );
    assert_eq!(kstatus(&resumed), (true, false));
}

#[test]
fn rotations_wait_for_what_is_in_flight_and_pauses() {
    // Paused: no rotation starts.
    let mut paused = look(&settled(), "a", 100);
    paused.spec.paused = true;
    let paused = paused.run();
    assert!(paused.status.rotation.is_none());
    assert_eq!(rolled_secrets(&paused).as_deref(), Some("a"));

    // Without a fingerprint (Secrets not watched): nothing.
    let mut unwatched = look(&settled(), "a", 100);
    unwatched.secrets_version = None;
    assert!(unwatched.run().status.rotation.is_none());

    // An attempt in flight rolls out with the Secrets of its rollout moment; nothing else.
    let mut migrating = Case::new("in flight", spec("1.1.0"), migrating("1.1.0"))
        .job(JobState::Succeeded)
        .serving("1.0.0");
    migrating.status.secrets_version = Some("a".into());
    migrating.secrets_version = Some("b".into());
    let rolling = migrating.run();
    assert_eq!(phase(&rolling), Phase::RollingOut);
    assert_eq!(rolled_secrets(&rolling).as_deref(), Some("b"));
    assert!(rolling.status.rotation.is_none());
    assert!(!has_note(&rolling, "SecretsRotated"));

    // A new version during a rotation supersedes it: the new attempt rolls everything anew.
    let started = look(&settled(), "a", 100).run();
    let mut superseded = Case::new("new version", spec("1.1.0"), started.status.clone()).at(t(120));
    superseded.workload = stamped("b");
    superseded.secrets_version = Some("b".into());
    let d = superseded.run();
    assert_eq!(phase(&d), Phase::Migrating);
    assert!(d.status.rotation.is_none());
}

#[test]
fn a_rolled_back_release_rolls_its_stable_pods_at_once() {
    let mut s = status(Phase::RolledBack, "1.1.0");
    s.attempt = Some(2);
    s.current_image = Some("reg/api:1.1.0".into());
    s.secrets_version = Some("a".into());
    let mut case = Case::new("rolled back", spec("1.1.0"), s).serving("1.0.0");
    case.secrets_version = Some("b".into());
    let d = case.run();
    assert_eq!(phase(&d), Phase::RolledBack);
    assert_eq!(serves(&d), Some("1.0.0"));
    assert_eq!(rolled_secrets(&d).as_deref(), Some("b"));
    assert!(has_note(&d, "SecretsRotated"));
    assert!(d.actions.is_empty());
}

#[test]
fn the_stable_pods_get_a_rotated_secret_while_a_new_attempt_waits_for_approvals() {
    use listacompra_crds::approval::ApprovalPolicy;
    let mut v2 = spec("1.1.0");
    v2.approvals = Some(ApprovalPolicy {
        required_roles: vec!["qa".into()],
    });
    let mut s = status(Phase::AwaitingApproval, "1.1.0");
    s.attempt = Some(2);
    s.current_image = Some("reg/api:1.1.0".into());
    s.secrets_version = Some("a".into());
    let mut case = Case::new("awaiting approval", v2, s);
    case.workload = stamped("a");
    case.stable_spec = Some(spec("1.0.0"));
    case.secrets_version = Some("b".into());
    let d = case.run();
    assert_eq!(phase(&d), Phase::AwaitingApproval);
    assert_eq!(serves(&d), Some("1.0.0"));
    assert_eq!(
        rolled_secrets(&d).as_deref(),
        Some("b"),
        "rolled now, not after the approval"
    );
    assert!(has_note(&d, "SecretsRotated"), "{:?}", d.notes);
    assert!(d.actions.is_empty());
}
