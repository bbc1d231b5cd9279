//! The pre-flight alert check: situations, and seeded sequences of Prometheus answers
//! (alerts firing, none, no answer) over time against a model of when the attempt launches.

use std::collections::BTreeMap;

use listacompra_crds::preflight::{FiringAlertsCheck, PreflightSpec};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn checking_alerts(version: &str) -> ListaCompraReleaseSpec {
    let mut s = with_analysis(spec(version));
    s.preflight = Some(PreflightSpec {
        firing_alerts: FiringAlertsCheck {
            prometheus: None,
            match_labels: BTreeMap::from([("severity".into(), "critical".into())]),
        },
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

fn alert(name: &str) -> FiringAlert {
    FiringAlert {
        name: name.into(),
        labels: BTreeMap::from([
            ("severity".into(), "critical".into()),
            ("service".into(), "api".into()),
        ]),
    }
}

impl Case {
    fn alerts(mut self, seen: Result<Vec<FiringAlert>, String>) -> Self {
        self.firing_alerts = Some(seen);
        self
    }
}

fn preflight_cases() -> Vec<Case> {
    let v2 = checking_alerts("1.1.0");
    vec![
        Case::new("no matching alert firing: launch", v2.clone(), started())
            .serving("1.0.0")
            .alerts(Ok(vec![]))
            .expect(|d| {
                assert_eq!(phase(d), Phase::Migrating);
                assert!(creates(d, JobPurpose::Migrate).is_some());
            }),
        Case::new("an alert fires: wait, naming it", v2.clone(), started())
            .serving("1.0.0")
            .alerts(Ok(vec![alert("ListaCompraHighLatency")]))
            .expect(|d| {
                assert_eq!(phase(d), Phase::Pending);
                assert!(d.actions.is_empty(), "{:?}", d.actions);
                let (reconciling, reason, message) = cond(d, condition::RECONCILING);
                assert!(reconciling);
                assert_eq!(reason, "AlertsFiring");
                assert!(
                    message.contains(
                        "1 alert(s) matching severity=critical firing: ListaCompraHighLatency (service=api, severity=critical)"
                    ),
                    "{message}"
                );
                assert!(!cond(d, condition::STALLED).0);
                assert!(cond(d, condition::AVAILABLE).0, "1.0.0 serves");
                assert_eq!(serves(d), Some("1.0.0"), "the stable version is held");
                assert!(has_note(d, "AlertsFiring"), "{:?}", d.notes);
                assert!(d.requeue_after <= std::time::Duration::from_secs(10));
            }),
        Case::new(
            "Prometheus cannot be asked: wait (fail closed)",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .alerts(Err("Prometheus at http://p:9090 is unreachable".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Pending);
            assert!(d.actions.is_empty());
            let (_, reason, message) = cond(d, condition::RECONCILING);
            assert_eq!(reason, "AlertsUnknown");
            assert!(message.contains("is unreachable"), "{message}");
        }),
        Case::new("not asked: wait", v2.clone(), started())
            .serving("1.0.0")
            .expect(|d| {
                assert_eq!(phase(d), Phase::Pending);
                assert!(d.actions.is_empty());
                assert_eq!(cond(d, condition::RECONCILING).1, "AlertsUnknown");
            }),
        Case::new(
            "many alerts: five named, the rest counted",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .alerts(Ok((0..8).map(|i| alert(&format!("A{i}"))).collect()))
        .expect(|d| {
            let message = cond(d, condition::RECONCILING).2;
            assert!(message.contains("8 alert(s)"), "{message}");
            assert!(message.contains("A4 (") && !message.contains("A5 ("), "{message}");
            assert!(message.contains("and 3 more"), "{message}");
        }),
        Case::new(
            "alerts fire past the deadline: Stalled, going on by itself",
            v2.clone(),
            started(),
        )
        .serving("1.0.0")
        .at(t(601))
        .alerts(Ok(vec![alert("ListaCompraHighLatency")]))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Pending);
            let (stalled, reason, message) = cond(d, condition::STALLED);
            assert!(stalled);
            assert_eq!(reason, "AlertsFiring");
            assert!(!message.contains("retryToken"), "{message}");
            assert!(message.contains("goes on by itself"), "{message}");
        }),
        Case::new(
            "a paused release waits as paused, not for alerts",
            {
                let mut s = v2.clone();
                s.paused = true;
                s
            },
            started(),
        )
        .serving("1.0.0")
        .alerts(Ok(vec![alert("ListaCompraHighLatency")]))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Pending);
            assert_ne!(cond(d, condition::RECONCILING).1, "AlertsFiring");
        }),
        Case::new(
            "a release without a pre-flight check ignores alerts",
            spec("1.1.0"),
            started(),
        )
        .serving("1.0.0")
        .alerts(Ok(vec![alert("ListaCompraHighLatency")]))
        .expect(|d| assert_eq!(phase(d), Phase::Migrating)),
    ]
}

#[test]
fn preflight_situations() {
    for case in preflight_cases() {
        let decision = case.run();
        let check = std::panic::AssertUnwindSafe(|| (case.expect)(&decision));
        if std::panic::catch_unwind(check).is_err() {
            panic!("case {:?} failed: {decision:#?}", case.name);
        }
    }
}

/// What Prometheus answers at one look.
#[derive(Debug, Clone)]
enum Answer {
    Firing(Vec<&'static str>),
    Clear,
    Silent,
}

impl Answer {
    fn seen(&self) -> Result<Vec<FiringAlert>, String> {
        match self {
            Self::Firing(names) => Ok(names.iter().map(|n| alert(n)).collect()),
            Self::Clear => Ok(vec![]),
            Self::Silent => Err("Prometheus did not answer within 2s".into()),
        }
    }
}

/// Seeded sequences of looks, each with a Prometheus answer and some time passed. The
/// model: the attempt launches at the first look that saw no matching alert, never before;
/// until then it waits in Pending naming why (Stalled only past the deadline), and every
/// change of what it says is told by one Event, a repeat by none.
#[test]
fn an_attempt_launches_at_the_first_look_without_alerts() {
    const NAMES: [&str; 3] = ["HighLatency", "AiWorkerFailing", "OutboxRetries"];
    let seeds: Vec<u64> = match std::env::var("LC_PREFLIGHT_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("LC_PREFLIGHT_SEED is a number")],
        Err(_) => (0..300).collect(),
    };
    let v2 = checking_alerts("1.1.0");
    for seed in seeds {
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut below = |n: u64| rng.next_u64() % n;
        let mut status = started();
        let mut now = 0i64;
        let mut previous: Option<(String, String)> = None;
        let mut log = Vec::new();
        for step in 0..12 {
            now += i64::try_from(below(200)).unwrap_or(0);
            let answer = match below(5) {
                0 => Answer::Clear,
                1 => Answer::Silent,
                _ => Answer::Firing(
                    NAMES
                        .iter()
                        .copied()
                        .filter(|_| below(2) == 0)
                        .collect::<Vec<_>>(),
                ),
            };
            let clear = matches!(&answer, Answer::Clear)
                || matches!(&answer, Answer::Firing(n) if n.is_empty());
            log.push(format!("t={now} {answer:?}"));
            let d = Case::new("sequence", v2.clone(), status.clone())
                .serving("1.0.0")
                .at(t(now))
                .alerts(answer.seen())
                .run();
            let context = || format!("seed {seed} (LC_PREFLIGHT_SEED={seed}), looks: {log:?}");
            if clear {
                assert_eq!(phase(&d), Phase::Migrating, "{}", context());
                assert!(creates(&d, JobPurpose::Migrate).is_some(), "{}", context());
                assert_eq!(
                    d.status.release_start_time.as_ref().map(|t| t.0),
                    Some(t(now)),
                    "the deadline counts from the launch: {}",
                    context()
                );
                break;
            }
            assert_eq!(phase(&d), Phase::Pending, "step {step}: {}", context());
            assert!(d.actions.is_empty(), "step {step}: {}", context());
            let past_deadline = now >= 600;
            let (type_, other) = if past_deadline {
                (condition::STALLED, condition::RECONCILING)
            } else {
                (condition::RECONCILING, condition::STALLED)
            };
            let (on, reason, message) = cond(&d, type_);
            assert!(on, "step {step}: {type_} expected: {}", context());
            assert!(!cond(&d, other).0, "step {step}: {}", context());
            let expected = if matches!(answer, Answer::Silent) {
                "AlertsUnknown"
            } else {
                "AlertsFiring"
            };
            assert_eq!(reason, expected, "step {step}: {}", context());
            let told = d.notes.iter().filter(|n| n.reason == expected).count();
            let new = previous.as_ref() != Some(&(reason.clone(), message.clone()));
            assert_eq!(
                told,
                usize::from(new),
                "step {step}: one Event per change of what it says: {}",
                context()
            );
            previous = Some((reason, message));
            status = d.status;
        }
    }
}
