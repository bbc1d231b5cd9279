//! The smoke-test gate: situations, and seeded simulations of whole attempts in which the
//! smoke Jobs pass or fail, take their time, and lag behind in the cache.

use std::collections::BTreeMap;

use listacompra_crds::smoke::SmokeTestSpec;
use listacompra_crds::status::SmokeTestProgress;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::*;

fn with_smoke(mut s: ListaCompraReleaseSpec) -> ListaCompraReleaseSpec {
    s.smoke_test = Some(SmokeTestSpec::default());
    s
}

fn smoke_name(purpose: JobPurpose, version: &str) -> String {
    naming::job_name(RELEASE, purpose, version, 0, 2)
}

/// The smoke test of `version` for `purpose` in attempt 2, started at `t(started)`, not ended.
fn progress(purpose: JobPurpose, version: &str, started: i64) -> SmokeTestProgress {
    SmokeTestProgress {
        job: smoke_name(purpose, version),
        version: version.into(),
        start_time: Time(t(started)),
        completion_time: None,
        passed: false,
        message: None,
    }
}

/// 1.1.0 verifying, health passed, its smoke Job created at t(60) and not ended.
fn smoke_running() -> ListaCompraReleaseStatus {
    let mut s = health_passed(verifying("1.1.0"));
    s.smoke_test = Some(progress(JobPurpose::Smoke, "1.1.0", 60));
    s
}

/// 1.1.0 rolling back after its smoke test failed; the schema is back at 3.
fn rolled_back_schema() -> ListaCompraReleaseStatus {
    let mut s = rolling_back("1.1.0", 90);
    s.schema_version = Some(3);
    s.revert_job = Some("reverted".into());
    s
}

fn smoke_cases() -> Vec<Case> {
    let v2 = with_smoke(with_analysis(spec("1.1.0")));
    vec![
        Case::new(
            "health passed: the smoke Job of the new image starts, the analysis waits",
            v2.clone(),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            let (name, image, _) = creates(d, JobPurpose::Smoke).expect("a smoke Job");
            assert_eq!(name, smoke_name(JobPurpose::Smoke, "1.1.0"));
            assert_eq!(image, "reg/api:1.1.0");
            let progress = d.status.smoke_test.as_ref().expect("recorded");
            assert_eq!(
                (progress.job.as_str(), progress.passed),
                (name.as_str(), false)
            );
            assert!(has_note(d, "SmokeTestStarted"));
            let spec = with_smoke(with_analysis(spec("1.1.0")));
            assert!(!gate_due(&spec, &d.status, None, t(10_000)).measurement);
        }),
        Case::new(
            "the health watch fails during the smoke test: its Job stops, the release rolls back",
            v2.clone(),
            {
                let mut s = smoke_running();
                if let Some(h) = s.health.as_mut() {
                    h.consecutive_failures = 2;
                }
                s
            },
        )
        .serving("1.1.0")
        .smoke(JobState::Running)
        .check(Err("GET /ready answered 503 Service Unavailable".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "HealthCheckFailed");
            assert!(
                d.actions.contains(&Action::DeleteJob {
                    name: smoke_name(JobPurpose::Smoke, "1.1.0")
                }),
                "{:?}",
                d.actions
            );
        }),
        Case::new("the smoke Job runs: wait", v2.clone(), smoke_running())
            .serving("1.1.0")
            .smoke(JobState::Running)
            .expect(|d| {
                assert_eq!(phase(d), Phase::Verifying);
                assert!(d.actions.is_empty(), "{:?}", d.actions);
                assert!(d.notes.is_empty());
            }),
        Case::new(
            "the smoke Job passed: the analysis counts from now",
            v2.clone(),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            let progress = d.status.smoke_test.as_ref().expect("recorded");
            assert!(progress.passed);
            assert_eq!(progress.completion_time, Some(Time(t(100))));
            assert!(has_note(d, "SmokeTestPassed"));
            let spec = with_smoke(with_analysis(spec("1.1.0")));
            // initialDelaySeconds 10 from the smoke test's end, not from t(50).
            assert!(!gate_due(&spec, &d.status, None, t(109)).measurement);
            assert!(gate_due(&spec, &d.status, None, t(110)).measurement);
        }),
        Case::new(
            "the smoke Job failed: roll back, naming the Job",
            v2.clone(),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Failed(
            "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
        ))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "SmokeTestFailed");
            assert!(
                message.contains(&smoke_name(JobPurpose::Smoke, "1.1.0")),
                "{message}"
            );
            assert!(message.contains("BackoffLimitExceeded"), "{message}");
            let progress = d.status.smoke_test.as_ref().expect("recorded");
            assert!(!progress.passed && progress.completion_time.is_some());
        }),
        Case::new(
            "a smoke Job that timed out (image never pulled) fails closed",
            v2.clone(),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Failed(
            "DeadlineExceeded: Job was active longer than specified deadline".into(),
        ))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "SmokeTestFailed");
        }),
        Case::new(
            "the smoke Job was deleted by hand: created again under its name",
            v2.clone(),
            smoke_running(),
        )
        .serving("1.1.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            let (name, _, _) = creates(d, JobPurpose::Smoke).expect("created again");
            assert_eq!(name, smoke_name(JobPurpose::Smoke, "1.1.0"));
            assert!(!has_note(d, "SmokeTestStarted"), "not a second start");
        }),
        Case::new(
            "a new version supersedes a running smoke test: its Job is stopped",
            with_smoke(spec("1.2.0")),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Running)
        .expect(|d| {
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::Smoke, "1.1.0")
            }));
            assert_eq!(d.status.smoke_test, None);
        }),
        Case::new(
            "the release deadline passes during the smoke test: Job stopped, rollback",
            v2.clone(),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Running)
        .at(t(700))
        .expect(|d| {
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::Smoke, "1.1.0")
            }));
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "ProgressDeadlineExceeded");
        }),
        Case::new(
            "rolled back and reverted: the stable version is smoke-tested again",
            v2.clone(),
            rolled_back_schema(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (name, image, _) =
                creates(d, JobPurpose::SmokeStable).expect("the stable version's smoke Job");
            assert_eq!(name, smoke_name(JobPurpose::SmokeStable, "1.0.0"));
            assert_eq!(image, "reg/api:1.0.0");
            assert_eq!(serves(d), Some("1.0.0"));
        }),
        Case::new(
            "the stable version passes its smoke test: RolledBack",
            v2.clone(),
            {
                let mut s = rolled_back_schema();
                s.smoke_test = Some(progress(JobPurpose::SmokeStable, "1.0.0", 95));
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert!(has_note(d, "SmokeTestPassed"));
            assert!(has_note(d, "RolledBack"));
        }),
        Case::new(
            "the stable version fails its smoke test too: Failed, still serving it",
            v2.clone(),
            {
                let mut s = rolled_back_schema();
                s.smoke_test = Some(progress(JobPurpose::SmokeStable, "1.0.0", 95));
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Failed("BackoffLimitExceeded".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "SmokeTestFailedAfterRollback");
            assert!(message.contains("1.0.0 serves again"), "{message}");
            assert_eq!(serves(d), Some("1.0.0"));
        }),
        Case::new(
            "afterRollback false: RolledBack without a second smoke test",
            {
                let mut s = v2.clone();
                if let Some(smoke) = s.smoke_test.as_mut() {
                    smoke.after_rollback = false;
                }
                s
            },
            rolled_back_schema(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert_eq!(creates(d, JobPurpose::SmokeStable), None);
        }),
    ]
}

/// The review's sequences: late reconciles, lagging caches, edits during the gate.
fn edge_cases() -> Vec<Case> {
    let v2 = with_smoke(with_analysis(spec("1.1.0")));
    let stable_smoke_running = || {
        let mut s = rolled_back_schema();
        s.smoke_test = Some(progress(JobPurpose::SmokeStable, "1.0.0", 95));
        s
    };
    vec![
        Case::new(
            "a late reconcile after the rollback deadline finds the stable smoke test passed",
            v2.clone(),
            stable_smoke_running(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Succeeded)
        .at(t(5_000))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert!(has_note(d, "SmokeTestPassed"));
        }),
        Case::new(
            "a late reconcile after the rollback deadline finds it failed: the smoke test is the reason",
            v2.clone(),
            stable_smoke_running(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Failed("BackoffLimitExceeded".into()))
        .at(t(5_000))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            assert_eq!(cond(d, condition::DEGRADED).1, "SmokeTestFailedAfterRollback");
        }),
        Case::new(
            "the rollback deadline passes while the stable smoke test runs: stopped, said so",
            v2.clone(),
            stable_smoke_running(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Running)
        .at(t(5_000))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "RollbackTimedOut");
            assert!(message.contains("smoke test of 1.0.0"), "{message}");
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::SmokeStable, "1.0.0")
            }));
            let progress = d.status.smoke_test.as_ref().expect("recorded");
            assert!(progress.completion_time.is_some() && !progress.passed);
        }),
        Case::new(
            "superseded while the cache does not show the smoke Job yet: deleted all the same",
            with_smoke(spec("1.2.0")),
            smoke_running(),
        )
        .serving("1.1.0")
        .expect(|d| {
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::Smoke, "1.1.0")
            }));
        }),
        Case::new(
            "a new image under the same version during the smoke test: a new attempt",
            {
                let mut s = v2.clone();
                s.image.tag = Some("1.1.0-hotfix".into());
                s
            },
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Running)
        .expect(|d| {
            assert_eq!(d.status.attempt, Some(3), "a new attempt");
            assert_eq!(
                d.status.current_image.as_deref(),
                Some("reg/api:1.1.0-hotfix")
            );
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::Smoke, "1.1.0")
            }));
        }),
        Case::new(
            "smokeTest removed while its Job runs: Job stopped, status ended, the KPIs go on",
            with_analysis(spec("1.1.0")),
            smoke_running(),
        )
        .serving("1.1.0")
        .smoke(JobState::Running)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert!(d.actions.contains(&Action::DeleteJob {
                name: smoke_name(JobPurpose::Smoke, "1.1.0")
            }));
            let progress = d.status.smoke_test.as_ref().expect("recorded");
            assert_eq!(
                (progress.passed, progress.message.as_deref()),
                (false, Some("stopped: spec.smokeTest was removed"))
            );
            let spec = with_analysis(spec("1.1.0"));
            assert!(gate_due(&spec, &d.status, None, t(60)).measurement);
        }),
        Case::new(
            "the stable version fails its smoke test: the schema is back and it still serves",
            v2.clone(),
            stable_smoke_running(),
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .smoke(JobState::Failed("BackoffLimitExceeded".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            let (applied, _, message) = cond(d, condition::MIGRATIONS_APPLIED);
            assert!(applied && message.contains("revision 3"), "{message}");
            let (available, reason, _) = cond(d, condition::AVAILABLE);
            assert!(available, "1.0.0 serves: {reason}");
        }),
    ]
}

#[test]
fn the_smoke_gate_survives_late_reconciles_lagging_caches_and_edits() {
    check_cases(&edge_cases());
}

#[test]
fn the_stable_versions_smoke_job_is_built_from_the_stable_spec() {
    let mut current = with_smoke(spec("1.1.0"));
    current.service.port = 9090;
    current.smoke_test = Some(SmokeTestSpec {
        command: vec![
            "listacompra-api".into(),
            "smoke".into(),
            "--new-flag".into(),
        ],
        ..SmokeTestSpec::default()
    });
    let mut stable = with_smoke(spec("1.0.0"));
    stable.service.port = 8080;
    let case = Case::new("stable", current.clone(), rolled_back_schema()).stable_from(stable);
    let o = case.observed();
    let stable_workload = workload("1.0.0", SpecSource::Stable);
    let built = job_spec(&o, JobPurpose::SmokeStable, &stable_workload);
    assert_eq!(
        built.service.port, 8080,
        "the Service the stable version serves on"
    );
    assert_eq!(
        built.smoke_test.as_ref().map(|s| s.command.clone()),
        Some(SmokeTestSpec::default().command),
        "the stable image's own smoke command"
    );
    // A stable spec recorded before smokeTest existed takes the current settings.
    let mut older = spec("1.0.0");
    older.smoke_test = None;
    let case = Case::new("older", current.clone(), rolled_back_schema()).stable_from(older);
    let o = case.observed();
    let built = job_spec(&o, JobPurpose::SmokeStable, &stable_workload);
    assert_eq!(built.smoke_test, current.smoke_test);
    // Every other Job: the current spec.
    let target = workload("1.1.0", SpecSource::Current);
    assert_eq!(job_spec(&o, JobPurpose::Smoke, &target).service.port, 9090);
}

#[test]
fn the_smoke_gate_decides_each_situation() {
    check_cases(&smoke_cases());
}

/// One attempt of 1.1.0 from a passed health gate to its end, with the smoke Jobs' outcomes,
/// durations and cache lag drawn from `seed`. Returns the final phase, the Degraded reason
/// (when Degraded is True) and what happened.
fn simulate(seed: u64) -> (Phase, Option<String>, String) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let spec = with_smoke(with_analysis(spec("1.1.0")));
    let forward_passes = below(2) == 0;
    let stable_passes = below(2) == 0;
    let kpis_pass = below(3) != 0;
    let mut status = health_passed(verifying("1.1.0"));
    let mut jobs: BTreeMap<String, SimJob> = BTreeMap::new();
    let mut serving = "1.1.0".to_owned();
    let mut revert = JobState::Absent;
    let mut now = 100;
    let mut trail = Vec::new();
    for _ in 0..200 {
        // The smoke Job the status names, as the (possibly lagging) cache shows it.
        let smoke_job = SimJob::look(
            status
                .smoke_test
                .as_ref()
                .and_then(|p| jobs.get_mut(&p.job)),
            || below(4) == 0,
        );
        let due = gate_due(&spec, &status, None, t(now));
        if due.measurement {
            let progress = status.smoke_test.as_ref();
            assert!(
                progress.is_some_and(|p| p.passed && p.version == "1.1.0"),
                "seed {seed}: a KPI measurement is due before the smoke test passed: {progress:?}"
            );
        }
        let case = Case::new("sim", spec.clone(), status.clone())
            .serving(&serving)
            .revert(revert.clone())
            .smoke(smoke_job)
            .at(t(now));
        let case = if due.measurement {
            case.measured(all_kpis(if kpis_pass {
                Verdict::Pass
            } else {
                Verdict::Fail
            }))
        } else {
            case
        };
        let case = if due.health { case.check(Ok(())) } else { case };
        let d = case.run();
        for action in &d.actions {
            match action {
                Action::CreateJob { name, purpose, .. } => {
                    if matches!(purpose, JobPurpose::Smoke | JobPurpose::SmokeStable) {
                        let ended = d
                            .status
                            .smoke_test
                            .as_ref()
                            .is_some_and(|p| &p.job == name && p.completion_time.is_some());
                        assert!(!ended, "seed {seed}: re-creates the ended smoke Job {name}");
                        let passes = if *purpose == JobPurpose::Smoke {
                            forward_passes
                        } else {
                            stable_passes
                        };
                        jobs.entry(name.clone()).or_insert(SimJob {
                            passes,
                            looks_left: below(4),
                        });
                    } else if *purpose == JobPurpose::Revert {
                        revert = JobState::Succeeded;
                    }
                    trail.push(format!("t{now} create {name}"));
                }
                Action::DeleteJob { name } => {
                    jobs.remove(name);
                    trail.push(format!("t{now} delete {name}"));
                }
                Action::RecordStable { .. } | Action::TakeSnapshot { .. } => {}
            }
        }
        if let Some(w) = &d.workload {
            serving.clone_from(&w.version);
        }
        status = d.status;
        now += 5;
        let p = phase_of(&status);
        if matches!(p, Phase::Succeeded | Phase::RolledBack | Phase::Failed) {
            let degraded = conditions::get(&status.conditions, condition::DEGRADED)
                .filter(|c| c.status == "True")
                .map(|c| c.reason.clone());
            let summary = format!(
                "forward smoke {forward_passes}, KPIs {kpis_pass}, stable smoke {stable_passes}: {p:?} {degraded:?} ({})",
                trail.join(", ")
            );
            return (p, degraded, summary);
        }
    }
    panic!("seed {seed}: no end after 200 looks ({})", trail.join(", "));
}

fn phase_of(status: &ListaCompraReleaseStatus) -> Phase {
    status.phase.expect("a phase")
}

#[test]
fn simulated_attempts_end_as_their_smoke_tests_and_kpis_say() {
    let seeds = seeds("LC_SMOKE_SEEDS");
    let mut ends = BTreeMap::new();
    for seed in 0..seeds {
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut below = |n: u64| rng.next_u64() % n;
        let (forward, stable, kpis) = (below(2) == 0, below(2) == 0, below(3) != 0);
        let (end, reason, summary) = simulate(seed);
        // The end and its reason follow from the outcomes alone, whatever the timing and the
        // cache did (never a deadline: every Job ends well within it).
        let first_failure = if forward {
            "KpiBreached"
        } else {
            "SmokeTestFailed"
        };
        let expected = match (forward && kpis, stable) {
            (true, _) => (Phase::Succeeded, None),
            (false, true) => (Phase::RolledBack, Some(first_failure)),
            (false, false) => (Phase::Failed, Some("SmokeTestFailedAfterRollback")),
        };
        assert_eq!(
            (end, reason.as_deref()),
            expected,
            "seed {seed} (seeds 0..LC_SMOKE_SEEDS run, default 300): {summary}"
        );
        *ends.entry(format!("{end:?}")).or_insert(0) += 1;
    }
    // Every end was reached by some seed: the simulation covers the whole gate.
    assert_eq!(ends.len(), 3, "{ends:?}");
}
