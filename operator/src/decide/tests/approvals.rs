//! Approvals: situations, and seeded sequences of approvals given, withdrawn and given for
//! the wrong thing, against a model of what may launch.

use k8s_openapi::jiff::SignedDuration;
use listacompra_crds::approval::ApprovalPolicy;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

const ROLES: [&str; 2] = ["qa", "product-owner"];

pub(super) fn needing_approvals(version: &str) -> ListaCompraReleaseSpec {
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

/// The same attempt, already waiting for its approvals.
fn awaiting() -> ListaCompraReleaseStatus {
    let mut s = started();
    s.phase = Some(Phase::AwaitingApproval);
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
        restore: None,
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
            awaiting(),
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
            // A restore's approval (it loses writes) never launches an attempt.
            Approval {
                restore: Some(("corrupt-lists".into(), "uid-1".into())),
                ..approval("a-restore", "product-owner", "1.1.0", 2, 5)
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
            awaiting(),
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
            let mut s = awaiting();
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
                let mut s = awaiting();
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
        Case::new(
            "approvals given before the attempt began do not count (a retry, a re-created release)",
            v2.clone(),
            {
                let mut s = awaiting();
                s.attempt_start_time = Some(Time(t(100) + SignedDuration::from_millis(700)));
                s
            },
        )
        .serving("1.0.0")
        .at(t(200))
        .approvals(vec![
            approval("early-qa", "qa", "1.1.0", 2, 99),
            // Created in the attempt's first second (creation times have no fraction).
            approval("po", "product-owner", "1.1.0", 2, 100),
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert_eq!(approved_roles(d), vec![("product-owner", "po")]);
        }),
        Case::new(
            "one person cannot approve as both roles",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .approvals(vec![
            Approval {
                approver: "alice".into(),
                ..approval("a-qa", "qa", "1.1.0", 2, 50)
            },
            Approval {
                approver: "alice".into(),
                ..approval("a-po", "product-owner", "1.1.0", 2, 51)
            },
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert_eq!(d.status.approvals.len(), 1, "{:?}", d.status.approvals);
        }),
        Case::new(
            "two people: the choice that covers every role wins over the earliest",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .approvals(vec![
            Approval {
                approver: "alice".into(),
                ..approval("alice-qa", "qa", "1.1.0", 2, 50)
            },
            Approval {
                approver: "alice".into(),
                ..approval("alice-po", "product-owner", "1.1.0", 2, 51)
            },
            Approval {
                approver: "bob".into(),
                ..approval("bob-qa", "qa", "1.1.0", 2, 52)
            },
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(
                approved_roles(d),
                vec![("qa", "bob-qa"), ("product-owner", "alice-po")]
            );
        }),
        Case::new(
            "paused while waiting for approvals: still AwaitingApproval",
            {
                let mut s = v2.clone();
                s.paused = true;
                s
            },
            awaiting(),
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert!(!has_note(d, "Pending"), "{:?}", d.notes);
        }),
        Case::new(
            "approved after a long wait: the deadline counts from the approval",
            v2.clone(),
            awaiting(),
        )
        .serving("1.0.0")
        .at(t(86_400))
        .approvals(vec![
            approval("qa", "qa", "1.1.0", 2, 50),
            approval("po", "product-owner", "1.1.0", 2, 86_000),
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(
                d.status.release_start_time.as_ref().map(|t| t.0),
                Some(t(86_400))
            );
        }),
        Case::new(
            "the spec changes before the launch: a new attempt, approvals asked again",
            v2.clone(),
            {
                let mut s = awaiting();
                s.observed_generation = Some(6);
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
        .approvals(vec![
            approval("a1", "qa", "1.1.0", 2, 50),
            approval("po", "product-owner", "1.1.0", 2, 60),
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::AwaitingApproval);
            assert_eq!(d.status.attempt, Some(3));
            assert!(d.status.approvals.is_empty());
            assert_eq!(d.status.history[0].reason.as_deref(), Some("SpecChanged"));
            assert!(has_note(d, "SpecChanged"));
        }),
        Case::new(
            "the policy is removed before the launch: a new attempt, which launches and says so",
            spec("1.1.0"),
            {
                let mut s = awaiting();
                s.observed_generation = Some(6);
                s
            },
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(d.status.attempt, Some(3));
            let note = d
                .notes
                .iter()
                .find(|n| n.reason == "SpecChanged")
                .expect("said");
            assert!(
                note.message.contains("no longer requires approvals"),
                "{}",
                note.message
            );
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
    /// Someone approves: (person, role, version, attempt offset from the current one).
    Approve(usize, usize, usize, i64),
    /// An approval is deleted.
    Withdraw(usize),
    /// `spec.version` changes.
    Version(usize),
    /// `spec.retryToken` changes.
    Retry,
    /// Another field of the spec changes (a new generation).
    Edit,
    /// The operator looks again with nothing new.
    Look,
}

const VERSIONS: [&str; 2] = ["1.1.0", "1.2.0"];
const PEOPLE: [&str; 3] = ["alice", "pat", "rita"];

/// One seeded sequence against a model. After every step: an attempt launches only when
/// every required role has an approval naming this release, the attempt's version and
/// number, given since the attempt began, by different people; the approvals counted are
/// such approvals; an edit of the spec before the launch starts a new attempt.
fn simulate(seed: u64) -> (usize, usize) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut spec = needing_approvals("1.1.0");
    let mut status = status(Phase::Succeeded, "1.0.0");
    status.attempt = Some(1);
    status.current_image = Some("reg/api:1.0.0".into());
    status.observed_generation = Some(7);
    let mut generation = 7;
    let mut approvals: Vec<Approval> = Vec::new();
    let mut steps = Vec::new();
    let mut launched_attempt = None;
    let (mut launches, mut waits) = (0, 0);
    for i in 0..40_i64 {
        let now = i * 10;
        // Mostly approvals of the attempt at hand, some of the wrong thing.
        let step = match rng.next_u32() % 16 {
            0..=8 => Step::Approve(
                (rng.next_u32() % 3) as usize,
                (rng.next_u32() % 3) as usize,
                (rng.next_u32() % 2) as usize,
                [0, 0, 0, -1, 1][(rng.next_u32() % 5) as usize],
            ),
            9 => Step::Withdraw(rng.next_u32() as usize),
            10 => Step::Version((rng.next_u32() % 2) as usize),
            11 => Step::Retry,
            12 => Step::Edit,
            _ => Step::Look,
        };
        match &step {
            Step::Approve(person, role, version, offset) => {
                let role = ["qa", "product-owner", "dev"][*role];
                // (role index 2 is a role nobody requires)
                let attempt = status.attempt.unwrap_or(0) + offset;
                approvals.push(Approval {
                    approver: PEOPLE[*person].into(),
                    ..approval(&format!("a{i}"), role, VERSIONS[*version], attempt, now)
                });
            }
            Step::Withdraw(n) if !approvals.is_empty() => {
                approvals.remove(n % approvals.len());
            }
            Step::Withdraw(_) | Step::Look => {}
            Step::Version(v) => {
                spec.version = VERSIONS[*v].into();
                generation += 1;
            }
            Step::Retry => {
                spec.retry_token = Some(format!("r{i}"));
                generation += 1;
            }
            Step::Edit => {
                spec.replicas += 1;
                generation += 1;
            }
        }
        steps.push(format!("{step:?}"));
        let job = if status.phase == Some(Phase::Migrating) {
            JobState::Running
        } else {
            JobState::Absent
        };
        let before = status.clone();
        let mut case = Case::new("simulated", spec.clone(), status.clone())
            .serving("1.0.0")
            .job(job)
            .at(t(now))
            .approvals(approvals.clone());
        case.generation = generation;
        case.stable_spec = Some(needing_approvals("1.0.0"));
        let d = case.run();
        let attempt = d.status.attempt.unwrap_or(0);
        let version = d.status.current_version.clone().unwrap_or_default();
        let trace = || format!("seed {seed} (LC_APPROVAL_SEEDS), steps {steps:?}");
        let since = d
            .status
            .attempt_start_time
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let valid = |a: &&Approval| {
            a.version == version && a.attempt == attempt && a.created.as_second() >= since
        };
        // The model: some choice of one valid approval per role by different people.
        let all_approved = approvals.iter().filter(valid).any(|qa| {
            qa.role == "qa"
                && approvals
                    .iter()
                    .filter(valid)
                    .any(|po| po.role == "product-owner" && po.approver != qa.approver)
        });
        let launched = creates(&d, JobPurpose::Migrate).is_some();
        let edited_unlaunched =
            matches!(before.phase, Some(Phase::Pending | Phase::AwaitingApproval))
                && before.observed_generation != Some(generation);
        if edited_unlaunched {
            assert!(
                d.status.attempt > before.attempt,
                "an edit before the launch starts a new attempt: {}",
                trace()
            );
        }
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
        let counting = launched || phase(&d) == Phase::AwaitingApproval;
        if !counting {
            assert_eq!(d.status.approvals, before.approvals, "{}", trace());
        }
        for record in d.status.approvals.iter().filter(|_| counting) {
            let found = approvals.iter().find(|a| a.name == record.approval);
            assert!(
                found.is_some_and(|a| valid(&a) && a.role == record.role),
                "counted {record:?} which does not approve {version} attempt {attempt}: {}",
                trace()
            );
        }
        let people: std::collections::BTreeSet<_> =
            d.status.approvals.iter().map(|r| &r.approver).collect();
        assert_eq!(people.len(), d.status.approvals.len(), "{}", trace());
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
