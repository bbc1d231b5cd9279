//! The state machine over a table of situations.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::analysis::{AnalysisSpec, Enforcement, PrometheusSpec, default_kpis};
use listacompra_crds::status::{
    AnalysisReport, HealthProgress, KpiResult, Outcome, Verdict, condition,
};
use listacompra_crds::{
    InconclusivePolicy, ListaCompraReleaseSpec, ListaCompraReleaseStatus, Phase,
};

use super::*;
use crate::conditions;
use crate::fixtures::spec;
use crate::naming;
use crate::references::Reference;
use crate::workload::{SpecSource, deployment_hash};

const RELEASE: &str = "lc";

/// A revert Job's failure as the migration tool's refusal of an irreversible step reads in
/// the pod's termination message.
const REFUSED: &str = "BackoffLimitExceeded: Error: IrreversibleMigration: revision 4 cannot be \
     reverted: dropping things loses them. Nothing was changed: the schema stays at revision 4";

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + secs)
}

fn with_analysis(mut s: ListaCompraReleaseSpec) -> ListaCompraReleaseSpec {
    s.analysis = Some(AnalysisSpec {
        prometheus: PrometheusSpec {
            address: "http://p:9090".into(),
            auth: None,
            timeout_seconds: 2,
        },
        initial_delay_seconds: 10,
        interval_seconds: 10,
        measurements: 2,
        failure_limit: 0,
        inconclusive_limit: 0,
        kpis: default_kpis(),
    });
    s
}

fn workload(version: &str, spec: SpecSource) -> Workload {
    Workload {
        version: version.into(),
        image: format!("reg/api:{version}"),
        spec,
        secrets: None,
    }
}

/// A status where 1.0.0 (schema 3) is stable, and `version` is in `phase`.
fn status(phase: Phase, version: &str) -> ListaCompraReleaseStatus {
    ListaCompraReleaseStatus {
        phase: Some(phase),
        current_version: Some(version.into()),
        stable_version: Some("1.0.0".into()),
        stable_image: Some("reg/api:1.0.0".into()),
        stable_schema_version: Some(3),
        schema_version: Some(3),
        release_start_time: Some(Time(t(0))),
        ..ListaCompraReleaseStatus::default()
    }
}

fn migrating(version: &str) -> ListaCompraReleaseStatus {
    let mut s = status(Phase::Migrating, version);
    s.attempt = Some(2);
    s.current_image = Some(format!("reg/api:{version}"));
    s.migration_job = Some(naming::job_name(
        RELEASE,
        JobPurpose::Migrate,
        version,
        4,
        2,
    ));
    s
}

fn verifying(version: &str) -> ListaCompraReleaseStatus {
    let mut s = migrating(version);
    s.phase = Some(Phase::Verifying);
    s.schema_version = Some(4);
    s.verification_start_time = Some(Time(t(50)));
    s
}

/// `version` rolling back (schema still at the failed revision 4) since a KPI breach at
/// `t(failed_at)`, when Degraded turned True.
fn rolling_back(version: &str, failed_at: i64) -> ListaCompraReleaseStatus {
    let mut s = migrating(version);
    s.phase = Some(Phase::RollingBack);
    s.schema_version = Some(4);
    conditions::set(
        &mut s.conditions,
        condition::DEGRADED,
        true,
        "KpiBreached",
        "KPI p95-latency-ms (412 > max 350)",
        7,
        &Time(t(failed_at)),
    );
    s
}

/// 1.1.0 verified, its health gate passed, `measurement` measurements taken (the last at
/// `t(measured_at)`), and its watch's failure streak open since a failed check at t(69).
fn watch_failing_after(measurement: i32, measured_at: i64) -> ListaCompraReleaseStatus {
    let mut s = health_passed(verifying("1.1.0"));
    s.last_analysis = Some(AnalysisReport {
        measured_at: Time(t(measured_at)),
        measurement,
        failures: 0,
        inconclusives: 0,
        kpis: vec![],
    });
    if let Some(h) = s.health.as_mut() {
        h.consecutive_failures = 1;
        h.last_check_time = Some(Time(t(69)));
    }
    s
}

fn health_passed(mut s: ListaCompraReleaseStatus) -> ListaCompraReleaseStatus {
    s.health = Some(HealthProgress {
        consecutive_successes: 2,
        passed: true,
        ..HealthProgress::default()
    });
    s
}

/// The Deployment runs `version` (1.0.0, the stable version, built from its recorded spec,
/// which these tests keep equal to the current one).
fn serving(spec: &ListaCompraReleaseSpec, version: &str) -> WorkloadState {
    let source = if version == "1.0.0" {
        SpecSource::Stable
    } else {
        SpecSource::Current
    };
    WorkloadState {
        hash: Some(deployment_hash(RELEASE, spec, &workload(version, source))),
        available: true,
        stalled: None,
    }
}

fn kpi(name: &str, verdict: Verdict) -> KpiResult {
    KpiResult {
        name: name.into(),
        value: Some(1.0),
        verdict,
        message: Some(format!("{name} {verdict:?}")),
    }
}

fn all_kpis(verdict: Verdict) -> Vec<KpiResult> {
    default_kpis()
        .iter()
        .map(|k| kpi(&k.name, verdict))
        .collect()
}

/// One situation: inputs, and what the decision must say.
struct Case {
    name: &'static str,
    spec: ListaCompraReleaseSpec,
    status: ListaCompraReleaseStatus,
    migration_job: JobState,
    revert_job: JobState,
    smoke_job: JobState,
    snapshot_job: JobState,
    workload: WorkloadState,
    health_check: Option<Result<(), String>>,
    measurement: Option<Vec<KpiResult>>,
    last_health_watch: Option<Timestamp>,
    approvals: Vec<Approval>,
    generation: i64,
    missing: Vec<Reference>,
    firing_alerts: Option<Result<Vec<FiringAlert>, String>>,
    secrets_version: Option<String>,
    foreign: Option<String>,
    abort: Option<i64>,
    restores: Vec<RestoreSeen>,
    now: Timestamp,
    /// The spec recorded for the stable version (defaults to the current spec).
    stable_spec: Option<ListaCompraReleaseSpec>,
    /// Whether the stable spec's ControllerRevision exists.
    stable_recorded: bool,
    expect: Box<dyn Fn(&Decision)>,
}

impl Case {
    fn new(
        name: &'static str,
        spec: ListaCompraReleaseSpec,
        status: ListaCompraReleaseStatus,
    ) -> Self {
        Self {
            name,
            spec,
            status,
            migration_job: JobState::Absent,
            revert_job: JobState::Absent,
            smoke_job: JobState::Absent,
            snapshot_job: JobState::Absent,
            workload: WorkloadState::default(),
            health_check: None,
            measurement: None,
            last_health_watch: None,
            approvals: Vec::new(),
            generation: 7,
            missing: Vec::new(),
            firing_alerts: None,
            secrets_version: None,
            foreign: None,
            abort: None,
            restores: Vec::new(),
            now: t(100),
            stable_spec: None,
            stable_recorded: true,
            expect: Box::new(|_| {}),
        }
    }
    fn job(mut self, state: JobState) -> Self {
        self.migration_job = state;
        self
    }
    fn revert(mut self, state: JobState) -> Self {
        self.revert_job = state;
        self
    }
    fn approvals(mut self, approvals: Vec<Approval>) -> Self {
        self.approvals = approvals;
        self
    }
    fn snapshot(mut self, state: JobState) -> Self {
        self.snapshot_job = state;
        self
    }
    fn smoke(mut self, state: JobState) -> Self {
        self.smoke_job = state;
        self
    }
    fn serving(mut self, version: &str) -> Self {
        self.workload = serving(&self.spec, version);
        self
    }
    fn stalled(mut self, message: &str) -> Self {
        self.workload.stalled = Some(message.into());
        self
    }
    fn check(mut self, outcome: Result<(), String>) -> Self {
        self.health_check = Some(outcome);
        self
    }
    fn measured(mut self, results: Vec<KpiResult>) -> Self {
        self.measurement = Some(results);
        self
    }
    /// The release carries the abort annotation naming `attempt`.
    fn aborted(mut self, attempt: i64) -> Self {
        self.abort = Some(attempt);
        self
    }
    fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }
    /// The stable version was released with `stable` and its Deployment runs it.
    fn stable_from(mut self, stable: ListaCompraReleaseSpec) -> Self {
        self.workload = serving(&stable, "1.0.0");
        self.stable_spec = Some(stable);
        self
    }
    /// The stable spec's record is missing (its write was lost, or it was deleted).
    fn unrecorded(mut self) -> Self {
        self.stable_recorded = false;
        self
    }
    fn expect(mut self, f: impl Fn(&Decision) + 'static) -> Self {
        self.expect = Box::new(f);
        self
    }
    fn run(&self) -> Decision {
        decide(&self.observed())
    }
    fn observed(&self) -> Observed<'_> {
        Observed {
            release: RELEASE,
            generation: self.generation,
            spec: &self.spec,
            stable_spec: self
                .stable_recorded
                .then(|| self.stable_spec.as_ref().unwrap_or(&self.spec)),
            status: &self.status,
            migration_job: self.migration_job.clone(),
            revert_job: self.revert_job.clone(),
            smoke_job: self.smoke_job.clone(),
            snapshot_job: self.snapshot_job.clone(),
            workload: self.workload.clone(),
            health_check: self.health_check.clone(),
            measurement: self.measurement.clone(),
            last_health_watch: self.last_health_watch,
            approvals: self.approvals.clone(),
            missing: self.missing.clone(),
            firing_alerts: self.firing_alerts.clone(),
            secrets_version: self.secrets_version.clone(),
            foreign: self.foreign.clone(),
            abort: self.abort,
            restores: self.restores.clone(),
            now: self.now,
        }
    }
}

/// A Job in a simulated cluster: how it will end, and after how many looks.
struct SimJob {
    passes: bool,
    looks_left: u64,
}

impl SimJob {
    /// What the operator sees of `job` (none: it does not exist) on one look: absent when it
    /// is `not_cached()` yet (asked only of a Job that exists, so a seed draws the same
    /// numbers), running until its looks are used up, then its end.
    fn look(job: Option<&mut SimJob>, not_cached: impl FnOnce() -> bool) -> JobState {
        match job {
            None => JobState::Absent,
            Some(_) if not_cached() => JobState::Absent,
            Some(job) if job.looks_left > 0 => {
                job.looks_left -= 1;
                JobState::Running
            }
            Some(job) if job.passes => JobState::Succeeded,
            Some(_) => JobState::Failed("BackoffLimitExceeded".into()),
        }
    }
}

/// How many seeds a simulation runs: the number in the environment variable `var`, else 300.
fn seeds(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn phase(d: &Decision) -> Phase {
    d.status.phase.expect("a phase")
}

fn cond(d: &Decision, type_: &str) -> (bool, String, String) {
    let c = conditions::get(&d.status.conditions, type_)
        .unwrap_or_else(|| panic!("condition {type_} missing"));
    (c.status == "True", c.reason.clone(), c.message.clone())
}

/// (Reconciling, Stalled): what kstatus reads first.
fn kstatus(d: &Decision) -> (bool, bool) {
    (
        cond(d, condition::RECONCILING).0,
        cond(d, condition::STALLED).0,
    )
}

fn creates(d: &Decision, purpose: JobPurpose) -> Option<(String, String, i64)> {
    d.actions.iter().find_map(|a| match a {
        Action::CreateJob {
            name,
            purpose: p,
            workload,
            revision,
            ..
        } if *p == purpose => Some((name.clone(), workload.image.clone(), *revision)),
        _ => None,
    })
}

fn serves(d: &Decision) -> Option<&str> {
    d.workload.as_ref().map(|w| w.version.as_str())
}

fn has_note(d: &Decision, reason: &str) -> bool {
    d.notes.iter().any(|n| n.reason == reason)
}

fn cases() -> Vec<Case> {
    let v2 = spec("1.1.0");
    vec![
        Case::new(
            "first release creates the migration Job",
            spec("1.0.0"),
            ListaCompraReleaseStatus::default(),
        )
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            let (name, image, revision) = creates(d, JobPurpose::Migrate).expect("a migration Job");
            assert_eq!(
                (
                    name.starts_with("lc-migrate-1-0-0-"),
                    image.as_str(),
                    revision
                ),
                (true, "reg/api:1.0.0", 4)
            );
            assert_eq!(cond(d, condition::READY).1, "Releasing");
            assert!(!cond(d, condition::READY).0);
            assert_eq!(cond(d, condition::AVAILABLE).1, "NotYetServing");
            assert_eq!(
                cond(d, condition::PROGRESSING),
                (true, "Migrating".into(), "releasing 1.0.0".into())
            );
            assert_eq!(kstatus(d), (true, false), "Reconciling, not Stalled");
            assert!(has_note(d, "ReleaseStarted"));
            assert_eq!(d.status.observed_generation, Some(7));
        }),
        Case::new(
            "migrations disabled go straight to rollout",
            {
                let mut s = spec("1.0.0");
                s.migrations.enabled = false;
                s
            },
            ListaCompraReleaseStatus::default(),
        )
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingOut);
            assert!(d.actions.is_empty());
            assert_eq!(serves(d), Some("1.0.0"));
            assert_eq!(
                cond(d, condition::MIGRATIONS_APPLIED).1,
                "MigrationsDisabled"
            );
        }),
        Case::new(
            "a new version starts from a settled release",
            v2.clone(),
            status(Phase::Succeeded, "1.0.0"),
        )
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(d.status.current_version.as_deref(), Some("1.1.0"));
            assert_eq!(
                cond(d, condition::READY),
                (
                    false,
                    "Releasing".into(),
                    "1.1.0 is not released yet".into()
                )
            );
            assert_eq!(
                cond(d, condition::AVAILABLE),
                (true, "StableServing".into(), "1.0.0 serves".into())
            );
            assert_eq!(kstatus(d), (true, false), "Reconciling, not Stalled");
        }),
        Case::new(
            "a running migration is waited for",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Running)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert!(d.actions.is_empty(), "no second Job: {:?}", d.actions);
            assert_eq!(d.requeue_after, WAIT, "the Job's watch wakes it; no deadline is near");
        }),
        Case::new(
            "a running migration wakes when the release deadline passes, not at the next poll",
            {
                let mut s = v2.clone();
                s.progress_deadline_seconds = 120;
                s
            },
            migrating("1.1.0"),
        )
        .job(JobState::Running)
        .at(t(100))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(
                d.requeue_after,
                std::time::Duration::from_secs(20),
                "started at t(0), deadline 120 s"
            );
        }),
        Case::new(
            "a migration Job deleted by hand is created again under the same name",
            v2.clone(),
            migrating("1.1.0"),
        )
        .expect(|d| {
            let (name, ..) = creates(d, JobPurpose::Migrate).expect("recreated");
            assert_eq!(Some(name), d.status.migration_job.clone());
        }),
        Case::new(
            "a finished migration rolls out the new version",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingOut);
            assert_eq!(serves(d), Some("1.1.0"));
            assert_eq!(d.status.schema_version, Some(4));
            assert!(cond(d, condition::MIGRATIONS_APPLIED).0);
            assert!(has_note(d, "MigrationSucceeded"));
        }),
        Case::new(
            "a failed first migration fails the release without rollout",
            spec("1.0.0"),
            {
                let mut s = migrating("1.0.0");
                s.stable_version = None;
                s.stable_image = None;
                s.stable_schema_version = None;
                s
            },
        )
        .job(JobState::Failed("BackoffLimitExceeded".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            assert_eq!(serves(d), None);
            let (degraded, reason, message) = cond(d, condition::DEGRADED);
            assert!(
                degraded
                    && reason == "MigrationFailed"
                    && message.contains("BackoffLimitExceeded")
                    && message.contains("lc-migrate-1-0-0")
            );
            assert_eq!(d.status.history[0].outcome, Outcome::Failed);
        }),
        Case::new(
            "a failed migration keeps the stable version and reverts the schema",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Failed("BackoffLimitExceeded".into()))
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(serves(d), Some("1.0.0"));
            let (_, image, revision) = creates(d, JobPurpose::Revert).expect("revert Job");
            assert_eq!(
                (image.as_str(), revision),
                ("reg/api:1.1.0", 3),
                "the failing image knows the down migrations"
            );
            assert_eq!(d.status.failed_version.as_deref(), Some("1.1.0"));
        }),
        Case::new(
            "the deadline stops a running migration and rolls back",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Running)
        .at(t(601))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert!(
                d.actions
                    .iter()
                    .any(|a| matches!(a, Action::DeleteJob { .. }))
            );
            assert_eq!(cond(d, condition::DEGRADED).1, "ProgressDeadlineExceeded");
        }),
        Case::new(
            "a rollout in progress is waited for",
            v2.clone(),
            status(Phase::RollingOut, "1.1.0"),
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingOut);
            assert_eq!(serves(d), Some("1.1.0"));
        }),
        Case::new(
            "an available rollout starts the gates",
            v2.clone(),
            status(Phase::RollingOut, "1.1.0"),
        )
        .serving("1.1.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert_eq!(d.status.verification_start_time, Some(Time(t(100))));
            assert!(has_note(d, "RolloutAvailable"));
        }),
        Case::new(
            "a stalled rollout rolls back",
            v2.clone(),
            status(Phase::RollingOut, "1.1.0"),
        )
        .stalled("ReplicaSet \"lc-api-7d9\" has timed out progressing")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "RolloutFailed");
            assert_eq!(serves(d), Some("1.0.0"));
        }),
        Case::new(
            "one passing health check is not enough",
            v2.clone(),
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .check(Ok(()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert_eq!(
                d.status.health.as_ref().map(|h| h.consecutive_successes),
                Some(1)
            );
        }),
        Case::new(
            "the health gate passing with no analysis succeeds",
            v2.clone(),
            {
                let mut s = verifying("1.1.0");
                s.health = Some(HealthProgress {
                    consecutive_successes: 1,
                    ..HealthProgress::default()
                });
                s
            },
        )
        .serving("1.1.0")
        .check(Ok(()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Succeeded);
            assert_eq!(d.status.stable_version.as_deref(), Some("1.1.0"));
            assert_eq!(d.status.stable_schema_version, Some(4));
            assert!(
                d.actions.contains(&Action::RecordStable {
                    version: "1.1.0".into()
                }),
                "the stable spec is recorded"
            );
            assert_eq!(d.status.history[0].outcome, Outcome::Succeeded);
            assert_eq!(
                cond(d, condition::READY),
                (true, "Serving".into(), "1.1.0 serves".into())
            );
            assert!(cond(d, condition::AVAILABLE).0);
            assert_eq!(kstatus(d), (false, false), "Current: neither condition");
            assert!(!cond(d, condition::DEGRADED).0);
        }),
        Case::new("failing health checks roll back", v2.clone(), {
            let mut s = verifying("1.1.0");
            s.health = Some(HealthProgress {
                consecutive_failures: 1,
                ..HealthProgress::default()
            });
            s
        })
        .serving("1.1.0")
        .check(Err("GET /ready answered 503 Service Unavailable".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "HealthCheckFailed");
            assert!(message.contains("/ready answered 503"), "{message}");
        }),
        Case::new(
            "health failing in a row during the analysis rolls back",
            with_analysis(v2.clone()),
            {
                let mut s = health_passed(verifying("1.1.0"));
                s.last_analysis = Some(AnalysisReport {
                    measured_at: Time(t(60)),
                    measurement: 1,
                    failures: 0,
                    inconclusives: 0,
                    kpis: vec![],
                });
                if let Some(h) = s.health.as_mut() {
                    h.consecutive_successes = 0;
                    h.consecutive_failures = 2;
                }
                s
            },
        )
        .serving("1.1.0")
        .check(Err("GET /ready answered 503 Service Unavailable".into()))
        .at(t(65))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "HealthCheckFailed");
            assert!(
                message.contains("after it had passed") && message.contains("503"),
                "{message}"
            );
        }),
        Case::new(
            "a passing check after the gate passed is no new transition",
            with_analysis(v2.clone()),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .check(Ok(()))
        .at(t(51))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert!(!has_note(d, "HealthGatePassed"), "{:?}", d.notes);
            assert_eq!(
                d.status.health,
                health_passed(verifying("1.1.0")).health,
                "a passing watch check writes nothing"
            );
            assert_eq!(
                d.requeue_after,
                std::time::Duration::from_secs(5),
                "the next watch check, before the first measurement at t(60)"
            );
        }),
        Case::new(
            "a watch failure below the threshold stays verified and is written",
            with_analysis(v2.clone()),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .check(Err("GET /ready timed out after 1s".into()))
        .at(t(51))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            let h = d.status.health.clone().unwrap_or_default();
            assert_eq!((h.passed, h.consecutive_failures), (true, 1));
            assert_eq!(h.last_check_time, Some(Time(t(51))));
        }),
        Case::new(
            "a watch failure streak holds the verdict after the last measurement",
            with_analysis(v2.clone()),
            watch_failing_after(1, 60),
        )
        .serving("1.1.0")
        .measured(all_kpis(Verdict::Pass))
        .at(t(70))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying, "no verdict during a failure streak");
            assert_eq!(d.status.last_analysis.as_ref().map(|a| a.measurement), Some(2));
            assert_eq!(d.requeue_after, std::time::Duration::from_secs(4));
        }),
        Case::new(
            "the streak ended: the verdict comes with the next passing check",
            with_analysis(v2.clone()),
            watch_failing_after(2, 70),
        )
        .serving("1.1.0")
        .check(Ok(()))
        .at(t(74))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Succeeded);
            assert_eq!(
                d.status.health.as_ref().map(|h| h.consecutive_failures),
                Some(0)
            );
        }),
        Case::new(
            "a passing measurement that is not the last one waits for the next",
            with_analysis(v2.clone()),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .measured(all_kpis(Verdict::Pass))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert_eq!(
                d.status.last_analysis.as_ref().map(|a| a.measurement),
                Some(1)
            );
            assert!(has_note(d, "KpiMeasured"));
        }),
        Case::new(
            "the last passing measurement succeeds",
            with_analysis(v2.clone()),
            {
                let mut s = health_passed(verifying("1.1.0"));
                s.last_analysis = Some(AnalysisReport {
                    measured_at: Time(t(60)),
                    measurement: 1,
                    failures: 0,
                    inconclusives: 0,
                    kpis: vec![],
                });
                s
            },
        )
        .serving("1.1.0")
        .measured(all_kpis(Verdict::Pass))
        .expect(|d| assert_eq!(phase(d), Phase::Succeeded)),
        Case::new(
            "a KPI breach past the failure limit rolls back naming the KPI",
            with_analysis(v2.clone()),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .measured(vec![
            kpi("p95-latency-ms", Verdict::Fail),
            kpi("ai-worker-success-percent", Verdict::Pass),
        ])
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "KpiBreached");
            assert!(message.contains("p95-latency-ms"), "{message}");
            assert!(has_note(d, "KpiBreached"));
        }),
        Case::new(
            "inconclusive analysis pauses by default",
            with_analysis(v2.clone()),
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .measured(all_kpis(Verdict::Inconclusive))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert!(!cond(d, condition::PROGRESSING).0);
            assert_eq!(cond(d, condition::PROGRESSING).1, "AnalysisInconclusive");
            assert!(!cond(d, condition::DEGRADED).0, "inconclusive is no breach");
        }),
        Case::new(
            "inconclusive analysis rolls back when the policy says so",
            {
                let mut s = with_analysis(v2.clone());
                s.rollback.on_inconclusive = InconclusivePolicy::Rollback;
                s
            },
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .measured(all_kpis(Verdict::Inconclusive))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "AnalysisInconclusive");
        }),
        Case::new(
            "a KPI enforced with Pause holds the release",
            {
                let mut s = with_analysis(v2.clone());
                if let Some(a) = s.analysis.as_mut() {
                    a.kpis[0].enforcement = Enforcement::Pause;
                }
                s
            },
            health_passed(verifying("1.1.0")),
        )
        .serving("1.1.0")
        .measured(vec![kpi("p95-latency-ms", Verdict::Fail)])
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert_eq!(cond(d, condition::PROGRESSING).1, "AnalysisPaused");
            assert_eq!(kstatus(d), (false, true), "held for a person: Stalled");
        }),
        Case::new(
            "a held release stays held and takes no measurement",
            with_analysis(v2.clone()),
            {
                let mut s = health_passed(verifying("1.1.0"));
                conditions::set(
                    &mut s.conditions,
                    condition::PROGRESSING,
                    false,
                    "AnalysisPaused",
                    "held",
                    7,
                    &Time(t(60)),
                );
                s
            },
        )
        .serving("1.1.0")
        .at(t(10_000))
        .expect(|d| {
            assert_eq!(
                phase(d),
                Phase::Verifying,
                "the deadline does not run while held"
            );
            assert_eq!(cond(d, condition::PROGRESSING).1, "AnalysisPaused");
        }),
        Case::new(
            "spec.paused stops before the migration",
            {
                let mut s = spec("1.0.0");
                s.paused = true;
                s
            },
            ListaCompraReleaseStatus::default(),
        )
        .expect(|d| {
            assert_eq!(phase(d), Phase::Pending);
            assert!(d.actions.is_empty());
            assert_eq!(
                cond(d, condition::PROGRESSING),
                (
                    false,
                    "Paused".into(),
                    "spec.paused is true; the release waits at this step".into()
                )
            );
            assert_eq!(
                kstatus(d),
                (false, false),
                "paused: neither moving nor stalled"
            );
            assert!(!cond(d, condition::READY).0, "paused is not Ready");
        }),
        Case::new(
            "a pause longer than the deadline does not fail the release on unpause",
            v2.clone(),
            {
                // Started at t(0), paused from t(10) to now (t(700)); the deadline is 600 s.
                let mut s = migrating("1.1.0");
                s.paused_since = Some(Time(t(10)));
                s
            },
        )
        .job(JobState::Running)
        .at(t(700))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating, "the running migration is waited for");
            assert!(
                !d.actions.iter().any(|a| matches!(a, Action::DeleteJob { .. })),
                "the migration Job it just started is not killed"
            );
            assert_eq!(d.status.paused_since, None);
            assert_eq!(
                d.status.release_start_time,
                Some(Time(t(690))),
                "the 690 s paused are added to the start"
            );
        }),
        Case::new(
            "a pause is recorded when it begins",
            {
                let mut s = v2.clone();
                s.paused = true;
                s
            },
            migrating("1.1.0"),
        )
        .job(JobState::Running)
        .at(t(50))
        .expect(|d| assert_eq!(d.status.paused_since, Some(Time(t(50))))),
        Case::new(
            "a new version during Verifying supersedes the old one",
            spec("1.2.0"),
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(d.status.current_version.as_deref(), Some("1.2.0"));
            assert_eq!(d.status.history[0].outcome, Outcome::Superseded);
            assert_eq!(d.status.history[0].version, "1.1.0");
            assert!(has_note(d, "Superseded"));
            assert!(d.status.health.is_none() && d.status.verification_start_time.is_none());
        }),
        Case::new(
            "rolling back waits for the stable version to be available",
            v2.clone(),
            {
                let mut s = migrating("1.1.0");
                s.phase = Some(Phase::RollingBack);
                s.schema_version = Some(4);
                s
            },
        )
        .serving("1.1.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(serves(d), Some("1.0.0"));
            assert!(
                creates(d, JobPurpose::Revert).is_none(),
                "workload first unless the failing version runs on the old schema"
            );
            assert_eq!(
                d.workload.as_ref().map(|w| w.spec),
                Some(SpecSource::Stable),
                "the stable pod template comes back"
            );
        }),
        Case::new(
            "with the stable version back, the schema is reverted",
            v2.clone(),
            {
                let mut s = migrating("1.1.0");
                s.phase = Some(Phase::RollingBack);
                s.schema_version = Some(4);
                s
            },
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            let (name, _, revision) = creates(d, JobPurpose::Revert).expect("revert Job");
            assert_eq!(revision, 3);
            assert_eq!(d.status.revert_job, Some(name));
        }),
        Case::new(
            "a GitOps revert of the version during the rollback still reverts with the failed image",
            spec("1.0.0"),
            {
                let mut s = migrating("1.1.0");
                s.phase = Some(Phase::RollingBack);
                s.schema_version = Some(4);
                s
            },
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack, "the rollback is finished first");
            let (name, image, revision) = creates(d, JobPurpose::Revert).expect("revert Job");
            assert_eq!(
                (image.as_str(), revision),
                ("reg/api:1.1.0", 3),
                "1.1.0's image holds the down migrations"
            );
            assert!(name.starts_with("lc-revert-1-1-0-"), "{name}");
        }),
        Case::new(
            "a version that ran before starts a new attempt with a new migration Job",
            v2.clone(),
            {
                // 1.1.0 failed in attempt 2, then 1.0.0 was released again (attempt 3).
                let mut s = status(Phase::Succeeded, "1.0.0");
                s.attempt = Some(3);
                s.current_image = Some("reg/api:1.0.0".into());
                s
            },
        )
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            assert_eq!(d.status.attempt, Some(4));
            assert_eq!(d.status.current_image.as_deref(), Some("reg/api:1.1.0"));
            let (name, _, _) = creates(d, JobPurpose::Migrate).expect("a migration Job");
            assert_ne!(
                name,
                naming::job_name(RELEASE, JobPurpose::Migrate, "1.1.0", 4, 2),
                "attempt 2's finished Job must not be taken for this attempt's"
            );
            assert!(d.actions.iter().any(|a| matches!(a, Action::CreateJob { attempt: 4, .. })));
        }),
        Case::new(
            "a rollback that cannot finish fails at its own deadline, saying what it waited for",
            v2.clone(),
            rolling_back("1.1.0", 100),
        )
        .serving("1.1.0")
        .at(t(100 + 600))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "RollbackTimedOut");
            assert!(message.contains("1.0.0 did not become available"), "{message}");
            assert_eq!(kstatus(d), (false, true), "Stalled");
        }),
        Case::new(
            "a rollback found complete after its deadline (a late reconcile) still completes",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 100);
                s.revert_job = Some("lc-revert-x".into());
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .at(t(100 + 3600))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert_eq!(d.status.schema_version, Some(3));
        }),
        Case::new(
            "a version applied during the rollback keeps kstatus waiting when the rollback ends",
            spec("1.2.0"),
            {
                let mut s = rolling_back("1.1.0", 80);
                s.failed_version = Some("1.1.0".into());
                s.revert_job = Some("lc-revert-x".into());
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack, "the rollback itself ends");
            assert_eq!(
                kstatus(d),
                (true, false),
                "Reconciling, not Stalled: 1.2.0 starts next, 1.1.0's failure is not its verdict"
            );
        }),
        Case::new("a finished revert completes the rollback", v2.clone(), {
            let mut s = rolling_back("1.1.0", 80);
            s.failed_version = Some("1.1.0".into());
            s.revert_job = Some("lc-revert-x".into());
            s
        })
        .serving("1.0.0")
        .revert(JobState::Succeeded)
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert_eq!(d.status.schema_version, Some(3));
            assert_eq!(
                cond(d, condition::READY),
                (
                    false,
                    "RolledBack".into(),
                    "1.1.0 failed and was rolled back; 1.0.0 serves".into()
                )
            );
            assert_eq!(
                cond(d, condition::AVAILABLE),
                (true, "StableServing".into(), "1.0.0 serves".into())
            );
            assert_eq!(kstatus(d), (false, true), "Stalled after a rollback");
            assert_eq!(cond(d, condition::STALLED).1, "KpiBreached");
            assert!(cond(d, condition::ROLLED_BACK).0);
            assert_eq!(cond(d, condition::DEGRADED).1, "KpiBreached");
            assert_eq!(d.status.history[0].outcome, Outcome::RolledBack);
            assert_eq!(d.status.history[0].reason.as_deref(), Some("KpiBreached"));
            assert!(has_note(d, "RolledBack"));
        }),
        Case::new("a failed revert fails the release", v2.clone(), {
            let mut s = migrating("1.1.0");
            s.phase = Some(Phase::RollingBack);
            s.schema_version = Some(4);
            s.revert_job = Some("lc-revert-x".into());
            s
        })
        .serving("1.0.0")
        .revert(JobState::Failed("DeadlineExceeded".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            assert_eq!(cond(d, condition::DEGRADED).1, "SchemaRevertFailed");
            assert!(!cond(d, condition::MIGRATIONS_APPLIED).0);
        }),
        Case::new(
            "a revert refused as irreversible keeps the schema and ends the rollback",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 50);
                s.revert_job = Some("lc-revert-x".into());
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Failed(REFUSED.into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert_eq!(d.status.schema_version, Some(4), "the schema stays");
            let (kept, reason, message) = cond(d, condition::MIGRATIONS_APPLIED);
            assert!(kept && reason == "IrreversibleSchemaKept", "{reason}: {message}");
            assert!(
                message.contains("IrreversibleMigration: revision 4 cannot be reverted")
                    && message.contains("no snapshot was taken"),
                "{message}"
            );
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "KpiBreached", "the failure that started it");
            assert!(message.contains("the schema stays at revision 4"), "{message}");
            assert!(has_note(d, "IrreversibleMigration"));
            assert!(d.actions.is_empty(), "{:?}", d.actions);
        }),
        Case::new(
            "a refused revert names the snapshot to restore",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 50);
                s.revert_job = Some("lc-revert-x".into());
                s.snapshot = Some(listacompra_crds::status::Snapshot {
                    job: "lc-snapshot-1-1-0-x".into(),
                    attempt: 2,
                    schema_version: Some(3),
                    annotation: "listacompra-snapshot=lc-snapshot-1-1-0-x".into(),
                    start_time: Time(t(1)),
                    completion_time: Some(Time(t(2))),
                });
                s
            },
        )
        .serving("1.0.0")
        .revert(JobState::Failed(REFUSED.into()))
        .expect(|d| {
            let message = cond(d, condition::MIGRATIONS_APPLIED).2;
            assert!(
                message.contains("restore the snapshot lc-snapshot-1-1-0-x")
                    && message.contains("annotation listacompra-snapshot=lc-snapshot-1-1-0-x")
                    && message.contains("new backup label"),
                "{message}"
            );
        }),
        Case::new(
            "a refused revert while the failing version serves rolls the workload back",
            {
                let mut s = v2.clone();
                s.migrations.min_schema_version = Some(3);
                s
            },
            {
                let mut s = rolling_back("1.1.0", 50);
                s.revert_job = Some("lc-revert-x".into());
                s
            },
        )
        .serving("1.1.0")
        .revert(JobState::Failed(REFUSED.into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(d.workload.as_ref().map(|w| w.version.as_str()), Some("1.0.0"));
            assert_eq!(
                cond(d, condition::MIGRATIONS_APPLIED).1,
                "IrreversibleSchemaKept"
            );
        }),
        Case::new(
            "the schema goes first when the failing version runs on the stable schema",
            {
                let mut s = v2.clone();
                s.migrations.min_schema_version = Some(3);
                s
            },
            {
                let mut s = migrating("1.1.0");
                s.phase = Some(Phase::RollingBack);
                s.schema_version = Some(4);
                s
            },
        )
        .serving("1.1.0")
        .expect(|d| {
            assert!(creates(d, JobPurpose::Revert).is_some());
            assert_eq!(
                serves(d),
                None,
                "the failing version keeps serving while the schema reverts"
            );
        }),
        Case::new(
            "a rollback restores the stable pod template, not the failed release's settings",
            {
                let mut s = v2.clone();
                s.replicas = 7;
                s.progress_deadline_seconds = 90;
                s
            },
            status(Phase::RollingBack, "1.1.0"),
        )
        .stable_from(spec("1.0.0"))
        .expect(|d| {
            assert_eq!(
                phase(d),
                Phase::RolledBack,
                "the stable template is recognised as serving"
            );
            assert_eq!(
                d.workload.as_ref().map(|w| w.spec),
                Some(SpecSource::Stable)
            );
        }),
        Case::new("a rolled-back version is not retried", v2.clone(), {
            let mut s = status(Phase::RolledBack, "1.1.0");
            s.failed_version = Some("1.1.0".into());
            s
        })
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RolledBack);
            assert!(d.actions.is_empty());
            assert_eq!(serves(d), Some("1.0.0"));
        }),
        Case::new(
            "a new retry token retries the failed version",
            {
                let mut s = v2.clone();
                s.retry_token = Some("again".into());
                s
            },
            {
                let mut s = status(Phase::RolledBack, "1.1.0");
                s.failed_version = Some("1.1.0".into());
                s
            },
        )
        .expect(|d| {
            assert_eq!(phase(d), Phase::Migrating);
            let (name, ..) = creates(d, JobPurpose::Migrate).expect("a new Job");
            assert_ne!(
                name,
                naming::job_name(RELEASE, JobPurpose::Migrate, "1.1.0", 4, 2)
            );
            assert_eq!(d.status.observed_retry_token.as_deref(), Some("again"));
        }),
        Case::new(
            "without automatic rollback a failure stops in Failed",
            {
                let mut s = v2.clone();
                s.rollback.automatic = false;
                s
            },
            {
                let mut s = verifying("1.1.0");
                s.health = Some(HealthProgress {
                    consecutive_failures: 1,
                    ..HealthProgress::default()
                });
                s
            },
        )
        .serving("1.1.0")
        .check(Err("GET /health timed out".into()))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            assert!(
                cond(d, condition::DEGRADED)
                    .2
                    .contains("automatic rollback is off")
            );
            assert_eq!(serves(d), None);
        }),
        Case::new(
            "the deadline during verification rolls back",
            v2.clone(),
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .at(t(601))
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(cond(d, condition::DEGRADED).1, "ProgressDeadlineExceeded");
        }),
        Case::new(
            "a settled version whose stable record is missing records it again",
            spec("1.0.0"),
            {
                let mut s = status(Phase::Succeeded, "1.0.0");
                s.observed_generation = Some(7);
                s
            },
        )
        .serving("1.0.0")
        .unrecorded()
        .expect(|d| {
            assert_eq!(phase(d), Phase::Succeeded);
            assert_eq!(
                d.actions,
                vec![Action::RecordStable {
                    version: "1.0.0".into()
                }]
            );
        }),
        Case::new(
            "a changed image of a settled version is released again",
            {
                let mut s = spec("1.0.0");
                s.image.digest = Some(format!("sha256:{}", "a".repeat(64)));
                s
            },
            status(Phase::Succeeded, "1.0.0"),
        )
        .expect(|d| assert_eq!(phase(d), Phase::Migrating)),
    ]
}

/// Decides each case and checks its expectation; a failure names the situation and prints
/// the whole decision.
fn check_cases(cases: &[Case]) {
    for case in cases {
        let decision = case.run();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.expect)(&decision)));
        if let Err(panic) = outcome {
            eprintln!("situation failed: {}\n{decision:#?}", case.name);
            std::panic::resume_unwind(panic);
        }
    }
}

/// `kubectl listacompra abort`: the annotation naming the current attempt rolls it back from
/// wherever it stands, like a failed gate; one naming another attempt changes nothing.
#[test]
fn an_abort_rolls_the_attempt_it_names_back_from_any_step() {
    let v2 = spec("1.1.0");
    let aborted = |d: &Decision| {
        assert_eq!(phase(d), Phase::RollingBack);
        let (degraded, reason, message) = cond(d, condition::DEGRADED);
        assert!(degraded);
        assert_eq!(reason, "Aborted");
        assert!(message.contains("attempt 2 of 1.1.0"), "{message}");
        assert!(has_note(d, "Aborted"));
        assert_eq!(d.status.failed_version.as_deref(), Some("1.1.0"));
    };
    check_cases(&[
        Case::new("abort while migrating", v2.clone(), migrating("1.1.0"))
            .job(JobState::Running)
            .serving("1.0.0")
            .aborted(2)
            .expect(move |d| {
                aborted(d);
                assert_eq!(
                    d.actions
                        .iter()
                        .filter(|a| matches!(a, Action::DeleteJob { .. }))
                        .count(),
                    1,
                    "the running migration is stopped, once"
                );
                assert_eq!(
                    creates(d, JobPurpose::Revert),
                    None,
                    "no revert while the migration may still run"
                );
                assert_eq!(d.status.schema_version, None);
                assert_eq!(serves(d), Some("1.0.0"));
            }),
        Case::new(
            "the revert waits until the stopped migration Job is gone",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 90);
                s.schema_version = None;
                s
            },
        )
        .job(JobState::Running)
        .serving("1.0.0")
        .expect(|d| {
            assert_eq!(phase(d), Phase::RollingBack);
            assert_eq!(creates(d, JobPurpose::Revert), None);
            assert!(
                d.actions
                    .iter()
                    .any(|a| matches!(a, Action::DeleteJob { .. }))
            );
        }),
        Case::new(
            "once the stopped migration Job is gone the schema is reverted",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 90);
                s.schema_version = None;
                s
            },
        )
        .job(JobState::Absent)
        .serving("1.0.0")
        .expect(|d| {
            let (_, _, revision) = creates(d, JobPurpose::Revert).expect("a revert Job");
            assert_eq!(revision, 3);
        }),
        Case::new(
            "abort before the cache shows the new migration Job deletes it and reverts later",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Absent)
        .serving("1.0.0")
        .aborted(2)
        .expect(move |d| {
            aborted(d);
            assert!(
                d.actions
                    .iter()
                    .any(|a| matches!(a, Action::DeleteJob { .. }))
            );
            assert_eq!(
                creates(d, JobPurpose::Revert),
                None,
                "not in the reconcile that deletes"
            );
            assert_eq!(d.status.schema_version, None);
        }),
        Case::new(
            "a rollback that waits for the stopped migration past its deadline says so",
            v2.clone(),
            {
                let mut s = rolling_back("1.1.0", 90);
                s.schema_version = None;
                s
            },
        )
        .job(JobState::Running)
        .serving("1.0.0")
        .at(t(90 + 3600))
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            let (_, reason, message) = cond(d, condition::DEGRADED);
            assert_eq!(reason, "RollbackTimedOut");
            assert!(message.contains("were still being deleted"), "{message}");
        }),
        Case::new(
            "abort after the migration Job finished unrecorded still reverts the schema",
            v2.clone(),
            migrating("1.1.0"),
        )
        .job(JobState::Succeeded)
        .serving("1.0.0")
        .aborted(2)
        .expect(move |d| {
            aborted(d);
            assert_eq!(
                d.status.schema_version,
                Some(4),
                "the Job moved it to the target"
            );
            let (_, _, revision) = creates(d, JobPurpose::Revert).expect("a revert Job");
            assert_eq!(revision, 3);
        }),
        Case::new(
            "abort rolls back even with automatic rollback off",
            {
                let mut s = v2.clone();
                s.rollback.automatic = false;
                s
            },
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .aborted(2)
        .expect(aborted),
        Case::new("abort while rolling out", v2.clone(), {
            let mut s = migrating("1.1.0");
            s.phase = Some(Phase::RollingOut);
            s.schema_version = Some(4);
            s
        })
        .serving("1.0.0")
        .aborted(2)
        .expect(move |d| {
            aborted(d);
            assert_eq!(serves(d), Some("1.0.0"));
            let (_, _, revision) = creates(d, JobPurpose::Revert).expect("a revert Job");
            assert_eq!(revision, 3, "the schema goes back to the stable revision");
        }),
        Case::new(
            "abort while an analysis holds the release",
            with_analysis(v2.clone()),
            {
                let mut s = health_passed(verifying("1.1.0"));
                conditions::set(
                    &mut s.conditions,
                    condition::PROGRESSING,
                    false,
                    "AnalysisPaused",
                    "KPI breached with enforcement Pause",
                    7,
                    &Time(t(60)),
                );
                s
            },
        )
        .serving("1.1.0")
        .aborted(2)
        .expect(aborted),
        Case::new(
            "abort while paused",
            {
                let mut s = v2.clone();
                s.paused = true;
                s
            },
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .aborted(2)
        .expect(aborted),
        Case::new(
            "an abort naming an earlier attempt changes nothing",
            v2.clone(),
            verifying("1.1.0"),
        )
        .serving("1.1.0")
        .aborted(1)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Verifying);
            assert!(!has_note(d, "Aborted"));
        }),
        Case::new(
            "an abort of a settled release changes nothing",
            spec("1.0.0"),
            {
                let mut s = status(Phase::Succeeded, "1.0.0");
                s.attempt = Some(2);
                s
            },
        )
        .serving("1.0.0")
        .aborted(2)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Succeeded);
            assert!(!has_note(d, "Aborted"));
        }),
        Case::new(
            "an abort of the first release, with nothing to roll back to, fails it",
            spec("1.0.0"),
            {
                let mut s = migrating("1.0.0");
                s.stable_version = None;
                s.stable_image = None;
                s.stable_schema_version = None;
                s
            },
        )
        .job(JobState::Running)
        .aborted(2)
        .expect(|d| {
            assert_eq!(phase(d), Phase::Failed);
            assert_eq!(cond(d, condition::DEGRADED).1, "Aborted");
        }),
    ]);
}

#[test]
fn the_worker_scales_with_the_current_spec_whichever_version_serves() {
    let stable = spec("1.0.0");
    let mut current = spec("1.1.0");
    current.replicas = 7;
    current.worker.replicas = 4;
    let mut rolled_back = status(Phase::RolledBack, "1.1.0");
    rolled_back.failed_version = Some("1.1.0".into());
    let case = Case::new("rolled back", current, rolled_back).stable_from(stable.clone());
    let o = case.observed();
    let d = decide(&o);
    let serving = d.workload.clone().expect("the stable version serves");
    assert_eq!(serving.spec, SpecSource::Stable);
    let built = deployments_spec(&o, &serving);
    assert_eq!(
        built.worker.replicas, 4,
        "the current spec's worker replicas"
    );
    assert_eq!(
        built.replicas, stable.replicas,
        "the stable template otherwise"
    );
    assert_eq!(
        Some(desired_hash(&o, &serving)),
        o.workload.hash,
        "still the stable workload: the worker is scaled by the apply, nothing else moves"
    );
    assert_eq!(phase(&d), Phase::RolledBack);
}

#[test]
fn a_wait_before_the_launch_holds_the_stable_workload_at_the_current_worker_replicas() {
    // 1.1.0 waits for its approvals (for days, perhaps); meanwhile someone scales the
    // worker for the queue. The stable version is still recognised, held, and scaled.
    let stable = spec("1.0.0");
    let mut current = approvals::needing_approvals("1.1.0");
    current.worker.replicas = 3;
    let mut waiting = status(Phase::AwaitingApproval, "1.1.0");
    waiting.attempt = Some(2);
    waiting.current_image = Some("reg/api:1.1.0".into());
    let case = Case::new("awaiting approval", current, waiting).stable_from(stable);
    let o = case.observed();
    let d = decide(&o);
    let held = d
        .workload
        .clone()
        .expect("the stable workload is held while waiting");
    assert_eq!(held.version, "1.0.0");
    assert_eq!(deployments_spec(&o, &held).worker.replicas, 3);
}

#[test]
fn the_state_machine_decides_each_situation() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} situations", cases.len());
    check_cases(&cases);
}

#[test]
fn a_settled_release_decides_nothing_new() {
    // Decide twice over a settled release: the second decision must equal its input, so the
    // controller writes nothing in a steady state.
    let spec = spec("1.0.0");
    let mut first = Case::new("first", spec.clone(), ListaCompraReleaseStatus::default());
    first.migration_job = JobState::Absent;
    let mut status = first.run().status;
    status.phase = Some(Phase::Succeeded);
    status.stable_version = Some("1.0.0".into());
    status.stable_image = Some("reg/api:1.0.0".into());
    let settle = Case::new("settle", spec.clone(), status)
        .serving("1.0.0")
        .run()
        .status;
    let again = Case::new("again", spec, settle.clone())
        .serving("1.0.0")
        .at(t(5_000))
        .run();
    assert_eq!(again.status, settle);
    assert!(again.actions.is_empty() && again.notes.is_empty());
}

#[test]
fn gates_are_due_at_their_intervals() {
    let s = with_analysis(spec("1.1.0"));
    let mut st = verifying("1.1.0");
    assert_eq!(
        gate_due(&s, &st, None, t(100)),
        GateDue::HEALTH,
        "first check at once"
    );
    st.health = Some(HealthProgress {
        last_check_time: Some(Time(t(100))),
        ..HealthProgress::default()
    });
    assert_eq!(gate_due(&s, &st, None, t(104)), GateDue::NOTHING);
    assert_eq!(gate_due(&s, &st, None, t(105)), GateDue::HEALTH);
    st = health_passed(st);
    if let Some(h) = st.health.as_mut() {
        h.last_check_time = Some(Time(t(56)));
    }
    assert_eq!(
        gate_due(&s, &st, None, t(59)),
        GateDue::NOTHING,
        "initial delay of 10s from t=50"
    );
    assert_eq!(gate_due(&s, &st, None, t(60)), GateDue::MEASUREMENT);
    assert_eq!(
        gate_due(&s, &st, None, t(61)),
        GateDue {
            health: true,
            measurement: true
        },
        "the passed health gate keeps watching at its interval while the KPIs are measured"
    );
    st.last_analysis = Some(AnalysisReport {
        measured_at: Time(t(60)),
        measurement: 1,
        failures: 0,
        inconclusives: 0,
        kpis: vec![],
    });
    if let Some(h) = st.health.as_mut() {
        h.last_check_time = Some(Time(t(68)));
    }
    assert_eq!(gate_due(&s, &st, None, t(69)), GateDue::NOTHING);
    assert_eq!(gate_due(&s, &st, None, t(70)), GateDue::MEASUREMENT);
    assert_eq!(
        gate_due(&s, &st, None, t(73)),
        GateDue {
            health: true,
            measurement: true
        }
    );
    let mut paused = s.clone();
    paused.paused = true;
    assert_eq!(
        gate_due(&s, &st, Some(t(72)), t(73)),
        GateDue::MEASUREMENT,
        "a passing watch check at t(72), kept by the controller, is the last one"
    );
    assert_eq!(gate_due(&paused, &st, None, t(73)), GateDue::NOTHING);
    let mut done = st.clone();
    done.phase = Some(Phase::Succeeded);
    assert_eq!(
        gate_due(&s, &done, None, t(73)),
        GateDue::NOTHING,
        "the watch ends with the verdict"
    );
}

fn db_secret() -> Reference {
    Reference {
        kind: crate::references::Kind::Secret,
        name: "db".into(),
        field: "spec.env.databaseUrl".into(),
    }
}

#[test]
fn a_release_launches_nothing_while_what_it_names_is_missing() {
    let mut case = Case::new(
        "first release, its database Secret missing",
        spec("1.0.0"),
        ListaCompraReleaseStatus::default(),
    );
    case.missing = vec![db_secret()];
    let waiting = case.run();
    assert_eq!(phase(&waiting), Phase::Pending);
    assert!(waiting.actions.is_empty(), "{:?}", waiting.actions);
    assert_eq!(serves(&waiting), None);
    let (reconciling, reason, message) = cond(&waiting, condition::RECONCILING);
    assert!(reconciling);
    assert_eq!(reason, "WaitingForReferences");
    assert!(
        message.contains("Secret db (spec.env.databaseUrl)"),
        "{message}"
    );
    assert!(!cond(&waiting, condition::STALLED).0);
    assert!(has_note(&waiting, "ReferencesMissing"));
    assert!(waiting.requeue_after <= std::time::Duration::from_secs(10));

    // The next look, still missing: the same condition and no second Event.
    let mut again = Case::new("still missing", spec("1.0.0"), waiting.status.clone()).at(t(130));
    again.missing = vec![db_secret()];
    let still = again.run();
    assert_eq!(phase(&still), Phase::Pending);
    assert!(!has_note(&still, "ReferencesMissing"), "{:?}", still.notes);

    // Past the deadline (600 s): Stalled, and it still goes on by itself.
    let mut late = Case::new(
        "missing past the deadline",
        spec("1.0.0"),
        still.status.clone(),
    )
    .at(t(100 + 601));
    late.missing = vec![db_secret()];
    let stalled = late.run();
    assert_eq!(phase(&stalled), Phase::Pending);
    let (is_stalled, reason, message) = cond(&stalled, condition::STALLED);
    assert!(is_stalled);
    assert_eq!(reason, "ReferencesMissing");
    assert!(!message.contains("retryToken"), "{message}");
    assert!(has_note(&stalled, "ReferencesMissing"));
    let mut later =
        Case::new("still missing", spec("1.0.0"), stalled.status.clone()).at(t(100 + 611));
    later.missing = vec![db_secret()];
    let still_stalled = later.run();
    assert!(cond(&still_stalled, condition::STALLED).0);
    assert!(
        !has_note(&still_stalled, "ReferencesMissing"),
        "told once: {:?}",
        still_stalled.notes
    );

    // The Secret appears: the migration launches, and the deadline counts from now.
    let arrived = Case::new("it appeared", spec("1.0.0"), stalled.status.clone())
        .at(t(100 + 900))
        .run();
    assert_eq!(phase(&arrived), Phase::Migrating);
    assert!(creates(&arrived, JobPurpose::Migrate).is_some());
    assert_eq!(
        arrived.status.release_start_time.as_ref().map(|t| t.0),
        Some(t(100 + 900))
    );
    assert_eq!(kstatus(&arrived), (true, false), "Reconciling, not Stalled");
}

#[test]
fn an_object_of_someone_else_is_never_taken_over() {
    let mut case = Case::new(
        "a foreign Service where the release's would be",
        spec("1.0.0"),
        status(Phase::Succeeded, "1.0.0"),
    )
    .serving("1.0.0");
    case.foreign = Some("Service lc-api".into());
    let refused = case.run();
    let (stalled, reason, message) = cond(&refused, condition::STALLED);
    assert!(stalled);
    assert_eq!(reason, "ObjectNotOwned");
    assert!(message.contains("Service lc-api"), "{message}");
    assert!(!message.contains("retryToken"), "{message}");
    assert!(has_note(&refused, "ObjectNotOwned"));
    assert!(refused.requeue_after <= std::time::Duration::from_secs(10));

    // Looked at again, still there: no second Event.
    let mut again =
        Case::new("still there", spec("1.0.0"), refused.status.clone()).serving("1.0.0");
    again.foreign = Some("Service lc-api".into());
    assert!(!has_note(&again.run(), "ObjectNotOwned"));

    // Gone: not Stalled any more.
    let cleared = Case::new("gone", spec("1.0.0"), refused.status.clone())
        .serving("1.0.0")
        .run();
    assert_eq!(kstatus(&cleared), (false, false));
}

mod approvals;
mod preflight;
mod restore;
mod rotation;
mod smoke;
mod snapshot;
