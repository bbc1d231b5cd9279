//! Approvals: situations, and seeded sequences of approvals given, withdrawn and given for
//! the wrong thing, against a model of what may launch.

use listacompra_crds::approval::ApprovalPolicy;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

const ROLES: [&str; 2] = ["qa", "product-owner"];

fn needing_approvals(version: &str) -> ListaCompraReleaseSpec {
    let mut s = spec(version);
    s.approvals = Some(ApprovalPolicy {
        required_roles: ROLES.iter().map(ToString::to_string).collect(),
    });
    s
}

/// 1.1.0's attempt 2 just started (1.0.0 stable and serving).
fn started() -> ListaCompraReleaseStatus {
    let mut s = status(Phase::Pending, "1.1.0");
    s.attempt = Some(2);
    s.current_image = Some("reg/api:1.1.0".into());
    s
}

fn approval(name: &str, role: &str, version: &str, attempt: i64, at: i64) -> Approval {
    Approval {
        name: name.into(),
        release: RELEASE.into(),
        version: version.into(),
        attempt,
        role: role.into(),
        approver: format!("{role}-person"),
        created: t(at),
    }
}

fn approved_roles(d: &Decision) -> Vec<(&str, &str)> {
    d.status
        .approvals
        .iter()
        .map(|r| (r.role.as_str(), r.approval.as_str()))
        .collect()
}

fn approval_cases() -> Vec<Case> {
    let v2 = needing_approvals("1.1.0");
    vec![
        Case::new(
            "no approval yet: wait, launch nothing",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert!(d.actions.is_empty(), "{:?}", d.actions);
            let (reconciling, reason, message) = cond(d, condition::RECONCILING);
            assert!(reconciling, "waiting for people is progress, not a stall");
            assert_eq!(reason, "AwaitingApproval");
            assert!(
                message.contains("1.1.0 attempt 2 by qa, product-owner"),
                "{message}"
            );
            assert!(!cond(d, condition::STALLED).0);
            assert!(!cond(d, condition::READY).0);
            assert!(cond(d, condition::AVAILABLE).0, "1.0.0 serves");
            assert_eq!(serves(d), Some("1.0.0"), "the stable version is held");
            assert!(has_note(d, "AwaitingApproval"), "{:?}", d.notes);
            assert!(d.status.approvals.is_empty());
        }),
        Case::new(
            "qa approved: still waiting for the product owner",
            v2.clone(),
            {
                let mut s = started();
                s.phase = Some(Phase::AwaitingApproval);
                s
            },
        )
        .serving("1.0.0")
        .approvals(vec![approval("a1", "qa", "1.1.0", 2, 50)])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert!(d.actions.is_empty());
            assert_eq!(approved_roles(d), vec![("qa", "a1")]);
            let message = cond(d, condition::RECONCILING).2;
            assert!(
                message.contains("by product-owner (approved: qa by qa-person)"),
                "{message}"
            );
            let approved: Vec<_> = d.notes.iter().filter(|n| n.reason == "Approved").collect();
            assert_eq!(approved.len(), 1, "{:?}", d.notes);
            assert!(
                approved[0]
                    .message
                    .contains("qa-person approved 1.1.0 (attempt 2) as qa"),
                "{}",
                approved[0].message
            );
        }),
        Case::new(
            "approvals of another version, attempt, release or role do not count",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .approvals(vec![
            approval("other-version", "qa", "1.2.0", 2, 1),
            approval("other-attempt", "qa", "1.1.0", 1, 2),
            approval("other-role", "dev", "1.1.0", 2, 3),
            Approval {
                release: "other".into(),
                ..approval("other-release", "product-owner", "1.1.0", 2, 4)
            },
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert!(d.status.approvals.is_empty(), "{:?}", d.status.approvals);
            assert!(d.actions.is_empty());
            assert!(!has_note(d, "Approved"));
        }),
        Case::new(
            "both roles approved: the migration starts and the deadline counts from now",
            v2.clone(),
            {
                let mut s = started();
                s.phase = Some(Phase::AwaitingApproval);
                s
            },
        )
        .serving("1.0.0")
        .at(t(5_000))
        .approvals(vec![
            approval("po", "product-owner", "1.1.0", 2, 60),
            approval("qa-late", "qa", "1.1.0", 2, 90),
            approval("qa-first", "qa", "1.1.0", 2, 50),
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert!(creates(d, JobPurpose::Migrate).is_some());
            assert_eq!(
                approved_roles(d),
                vec![("qa", "qa-first"), ("product-owner", "po")],
                "one per role, the first given, in the order the spec lists them"
            );
            assert_eq!(
                d.status.release_start_time.as_ref().map(|t| t.0),
                Some(t(5_000))
            );
        }),
        Case::new("an approval is withdrawn while waiting", v2.clone(), {
            let mut s = started();
            s.phase = Some(Phase::AwaitingApproval);
            s.approvals = vec![listacompra_crds::approval::ApprovalRecord {
                role: "qa".into(),
                approver: "qa-person".into(),
                approval: "a1".into(),
                approved_at: Time(t(50)),
            }];
            s
        })
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert!(d.status.approvals.is_empty());
            assert!(has_note(d, "ApprovalWithdrawn"), "{:?}", d.notes);
        }),
        Case::new(
            "paused while waiting: the pause is what it says",
            {
                let mut s = v2.clone();
                s.paused = true;
                s
            },
            started(),
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(cond(d, condition::PROGRESSING).1, "Paused");
            assert!(d.actions.is_empty());
        }),
        Case::new(
            "a new version while waiting: the wait is superseded, its approvals kept in history",
            needing_approvals("1.2.0"),
            {
                let mut s = started();
                s.phase = Some(Phase::AwaitingApproval);
                s.approvals = vec![listacompra_crds::approval::ApprovalRecord {
                    role: "qa".into(),
                    approver: "qa-person".into(),
                    approval: "a1".into(),
                    approved_at: Time(t(50)),
                }];
                s
            },
        )
        .serving("1.0.0")
        .approvals(vec![approval("a1", "qa", "1.1.0", 2, 50)])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert_eq!(d.status.attempt, Some(3));
            assert!(
                d.status.approvals.is_empty(),
                "1.1.0's approval is not 1.2.0's"
            );
            let entry = &d.status.history[0];
            assert_eq!(
                (entry.version.as_str(), entry.outcome),
                ("1.1.0", Outcome::Superseded)
            );
            assert_eq!(entry.approvals.len(), 1);
            assert!(!has_note(d, "ApprovalWithdrawn"), "{:?}", d.notes);
        }),
        Case::new(
            "waiting after an attempt superseded mid-rollout: its Deployment is left alone",
            v2.clone(),
            started(),
        )
        .serving("1.0.5")
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert_eq!(serves(d), None);
        }),
        Case::new("without a policy nothing waits", spec("1.1.0"), started()).expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
        }),
    ]
}

#[test]
fn approvals_decide_each_situation() {
    check_cases(&approval_cases());
}

#[test]
fn the_controller_reads_approvals_only_while_an_attempt_may_launch() {
    let v2 = needing_approvals("1.1.0");
    assert!(awaits_approval(&v2, &started()));
    let mut waiting = started();
    waiting.phase = Some(Phase::AwaitingApproval);
    assert!(awaits_approval(&v2, &waiting));
    assert!(!awaits_approval(&spec("1.1.0"), &waiting), "no policy");
    assert!(!awaits_approval(&v2, &verifying("1.1.0")), "launched");
    assert!(
        awaits_approval(&needing_approvals("1.2.0"), &verifying("1.1.0")),
        "a new version starts a new attempt"
    );
}

/// What one step of a simulated sequence does.
#[derive(Debug)]
enum Step {
    /// Someone approves: (role index, version index, attempt offset from the current one).
    Approve(usize, usize, i64),
    /// An approval is deleted.
    Withdraw(usize),
    /// `spec.version` changes.
    Version(usize),
    /// `spec.retryToken` changes.
    Retry,
    /// The operator looks again with nothing new.
    Look,
}

const VERSIONS: [&str; 2] = ["1.1.0", "1.2.0"];

/// One seeded sequence. The invariant after every step: the attempt has launched exactly
/// when, at some look, every required role had an approval naming this release, the
/// attempt's version and its number; the approvals counted are such approvals; nothing is
/// ever launched before.
fn simulate(seed: u64) -> (usize, usize) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut spec = needing_approvals("1.1.0");
    let mut status = status(Phase::Succeeded, "1.0.0");
    status.attempt = Some(1);
    status.current_image = Some("reg/api:1.0.0".into());
    let mut approvals: Vec<Approval> = Vec::new();
    let mut steps = Vec::new();
    let mut launched_attempt = None;
    let (mut launches, mut waits) = (0, 0);
    for i in 0..30_i64 {
        let step = match rng.next_u32() % 10 {
            0..=4 => Step::Approve(
                (rng.next_u32() % 3) as usize,
                (rng.next_u32() % 2) as usize,
                i64::from(rng.next_u32() % 3) - 1,
            ),
            5 => Step::Withdraw(rng.next_u32() as usize),
            6 => Step::Version((rng.next_u32() % 2) as usize),
            7 => Step::Retry,
            _ => Step::Look,
        };
        match &step {
            Step::Approve(role, version, offset) => {
                let role = ["qa", "product-owner", "dev"][*role];
                let attempt = status.attempt.unwrap_or(0) + offset;
                approvals.push(approval(
                    &format!("a{i}"),
                    role,
                    VERSIONS[*version],
                    attempt,
                    i,
                ));
            }
            Step::Withdraw(n) if !approvals.is_empty() => {
                approvals.remove(n % approvals.len());
            }
            Step::Withdraw(_) | Step::Look => {}
            Step::Version(v) => spec.version = VERSIONS[*v].into(),
            Step::Retry => spec.retry_token = Some(format!("r{i}")),
        }
        steps.push(format!("{step:?}"));
        let job = if status.phase == Some(Phase::Migrating) {
            JobState::Running
        } else {
            JobState::Absent
        };
        let mut case = Case::new("simulated", spec.clone(), status.clone())
            .serving("1.0.0")
            .job(job)
            .at(t(i * 10))
            .approvals(approvals.clone());
        case.stable_spec = Some(needing_approvals("1.0.0"));
        let d = case.run();
        let attempt = d.status.attempt.unwrap_or(0);
        let version = d.status.current_version.clone().unwrap_or_default();
        let trace = || format!("seed {seed} (LC_APPROVAL_SEEDS), steps {steps:?}");
        let matching = |role: &str| {
            approvals
                .iter()
                .any(|a| a.role == role && a.version == version && a.attempt == attempt)
        };
        let all_approved = ROLES.iter().all(|r| matching(r));
        let launched = creates(&d, JobPurpose::Migrate).is_some();
        match phase(&d) {
            Phase::Migrating => {
                assert!(launched || launched_attempt == Some(attempt), "{}", trace());
                if launched {
                    assert!(all_approved, "launched without approvals: {}", trace());
                    launched_attempt = Some(attempt);
                    launches += 1;
                }
            }
            Phase::AwaitingApproval => {
                assert!(!launched && !all_approved, "{}", trace());
                assert!(
                    d.actions
                        .iter()
                        .all(|a| matches!(a, Action::DeleteJob { .. })),
                    "{}",
                    trace()
                );
                waits += 1;
            }
            other => panic!("unexpected phase {other:?}: {}", trace()),
        }
        // Counted while waiting and at the launch; a launched attempt keeps what it counted.
        if !(launched || phase(&d) == Phase::AwaitingApproval) {
            assert_eq!(d.status.approvals, status.approvals, "{}", trace());
        }
        for record in d
            .status
            .approvals
            .iter()
            .filter(|_| launched || phase(&d) == Phase::AwaitingApproval)
        {
            let found = approvals.iter().find(|a| a.name == record.approval);
            assert!(
                found.is_some_and(|a| a.version == version
                    && a.attempt == attempt
                    && a.role == record.role),
                "counted {record:?} which does not approve {version} attempt {attempt}: {}",
                trace()
            );
        }
        status = d.status;
    }
    (launches, waits)
}

#[test]
fn simulated_approvals_never_launch_an_attempt_early() {
    let seeds: u64 = std::env::var("LC_APPROVAL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (mut launches, mut waits) = (0, 0);
    for seed in 0..seeds {
        let (l, w) = simulate(seed);
        launches += l;
        waits += w;
    }
    // Both outcomes were reached: the sequences cover the gate.
    assert!(
        launches > seeds as usize / 4 && waits > 0,
        "{launches} launches, {waits} waits"
    );
}
