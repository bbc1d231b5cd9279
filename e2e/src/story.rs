//! The release story that `make demo` tells and the full-stack test checks, step by step:
//!
//! 1. v1.0.0 installs fresh (schema 9); a load generator starts once it serves; then v1.1.0
//!    with a new migration (schema 10, attachments): the schema moves, traffic keeps flowing,
//!    and the release Succeeds on all three KPIs measured from that traffic; a receipt is
//!    attached to a list (uploaded straight to the object store);
//! 2. the JWT key is rotated under load (one change of its Secret): the operator rolls
//!    v1.1.0's pods, verified by the health gate alone (no migration), and the token the
//!    load generator got before keeps working;
//! 3. v1.2.0 (schema 11) is a build with 600 ms of injected latency: the p95 KPI breaches, the
//!    operator rolls back to v1.1.0 and reverts the schema to 10; no acknowledged write is
//!    lost, and the receipt downloads byte for byte;
//! 4. v1.3.0 asks for schema 90, which no build has: the migration Job fails,
//!    nothing rolls out, and v1.1.0 keeps serving;
//! 5. v1.2.1 is a build whose AI suggestion results answer 500: health and traffic look
//!    fine, but its smoke test fails; the operator rolls back, and the smoke test passes
//!    again on v1.1.0;
//! 6. with a backed-up database ([`Story::with_backups`]: every release then takes a
//!    pgBackRest snapshot before its migration), the runbook's corrupt-database procedure:
//!    a backup, a bad script, and a `ListaCompraRestore` that brings every row back (see
//!    [`restore`]).
//!
//! Every release needs the approval of QA and the Product Owner, as the runbook's production
//! releases do: it waits in AwaitingApproval until `alice` (qa) and `pat` (product-owner),
//! real users of the cluster, approve its attempt. Every release runs the smoke test
//! (`listacompra-api smoke`, a Job of the release's image) after its health gate, and again
//! against the stable version after a rollback.
//!
//! Every step checks what it claims and fails with the evidence when it does not hold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use listacompra_crds::ListaCompraReleaseStatus;
use listacompra_crds::analysis::default_kpis;
use listacompra_crds::status::{AnalysisReport, SmokeTestProgress};
use listacompra_crds::{ListaCompraRelease, Phase};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;

use crate::approvals::Approvers;
use crate::attachments::Attachments;
use crate::backups::BackedUpPostgres;
use crate::load::{LoadGenerator, LoadStats};
use crate::stack::{IMAGE, POLL, RELEASE, Stack};
use crate::timeline::{KpiPoint, Timeline};
use crate::{Error, Result};

mod restore;
pub use restore::{RESTORE, RESTORED_TABLES};

/// Latency injected into the "bad" build, in milliseconds.
pub const BAD_LATENCY_MS: u64 = 600;
/// The schema revisions of the builds 1.0.0, 1.1.0 and 1.2.0. The API server serves from
/// revision 7 on (`listacompra_api::migrate::MIN_SCHEMA`: logout needs `users.token_version`);
/// 1.0.0 installs at 9, 1.1.0 adds attachments (10) and 1.2.0 an index (11), so the rollback
/// of 1.2.0 reverts the schema to a revision that still has the attachments.
pub const SCHEMAS: [i64; 3] = [9, 10, 11];
/// The schema revision the broken build asks for: beyond every migration the API server
/// has, so its migration Job fails however many migrations are added.
pub const BROKEN_SCHEMA: i64 = 90;
/// Requests per second of the load generator.
pub const LOAD_RATE: u32 = 12;
/// The roles whose approval every release of the story needs (the runbook's production).
pub const APPROVAL_ROLES: [&str; 2] = ["qa", "product-owner"];
/// Longest a single release may take in the story.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(240);

/// The route broken in the v1.2.1 build: reading AI suggestion results (the load generator
/// asks for suggestions but never reads them, so only the smoke test notices).
pub const BROKEN_ROUTE: &str = "/v1/lists/{list_id}/suggestions/{suggestion_id}";

/// How the builds behave, by image tag: v1.2.0 carries the injected latency; v1.2.1 answers
/// 500 on [`BROKEN_ROUTE`].
pub fn builds() -> BTreeMap<String, BTreeMap<String, String>> {
    [
        (
            "1.2.0".to_owned(),
            [("FAULT_LATENCY_MS".to_owned(), BAD_LATENCY_MS.to_string())].into(),
        ),
        (
            "1.2.1".to_owned(),
            [
                ("FAULT_ERROR_RATE".to_owned(), "1".to_owned()),
                ("FAULT_ROUTES".to_owned(), BROKEN_ROUTE.to_owned()),
            ]
            .into(),
        ),
    ]
    .into()
}

/// What the story measured, for the summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// One line per release: version, outcome, duration.
    pub releases: Vec<String>,
    /// Load generator totals.
    pub load: LoadStats,
    /// Acknowledged items missing at the end.
    pub lost_items: usize,
}

/// The story in progress.
#[derive(Debug)]
pub struct Story<'a> {
    stack: &'a Stack,
    started: Instant,
    /// Phases and KPI measurements so far.
    pub timeline: Timeline,
    load: Option<LoadGenerator>,
    print: bool,
    load_rate: u32,
    /// Every progress line, printed or not.
    pub log: Vec<String>,
    summary: Summary,
    /// The receipt attached after v1.1.0: client, list, attachment id and its bytes.
    receipt: Option<(Attachments, String, String, Vec<u8>)>,
    /// QA and the Product Owner, set up before the first release.
    approvers: Option<Approvers>,
    /// The release's database, backed up (see [`Story::with_backups`]).
    database: Option<&'a BackedUpPostgres>,
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Check { message: message() })
    }
}

fn smoke_line(smoke: &SmokeTestProgress) -> String {
    let outcome = match (smoke.completion_time.is_some(), smoke.passed) {
        (false, _) => "running".to_owned(),
        (true, true) => "passed".to_owned(),
        (true, false) => format!("FAILED: {}", smoke.message.clone().unwrap_or_default()),
    };
    format!("Job {} against v{}: {outcome}", smoke.job, smoke.version)
}

/// The release of `version` ended in `phase`.
fn ended(status: &ListaCompraReleaseStatus, version: &str, phase: Phase) -> Result<()> {
    check(status.phase == Some(phase), || {
        format!(
            "v{version} ended {:?}, expected {phase:?}: {status:#?}",
            status.phase
        )
    })
}

/// The reason and message of the Degraded condition (empty when there is none).
fn degraded(status: &ListaCompraReleaseStatus) -> (String, String) {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// The smoke test recorded in `status` tested `version` and passed.
fn smoke_passed(status: &ListaCompraReleaseStatus, version: &str) -> Result<()> {
    check(
        status
            .smoke_test
            .as_ref()
            .is_some_and(|s| s.version == version && s.passed),
        || {
            format!(
                "no passed smoke test of v{version}: {:#?}",
                status.smoke_test
            )
        },
    )
}

fn phase_name(phase: Option<Phase>) -> String {
    phase.map_or_else(|| "-".to_owned(), |p| format!("{p:?}"))
}

impl<'a> Story<'a> {
    /// A story on `stack`; `print` writes progress to stdout as it happens.
    pub fn new(stack: &'a Stack, print: bool) -> Self {
        Self {
            stack,
            started: Instant::now(),
            timeline: Timeline::default(),
            load: None,
            print,
            load_rate: LOAD_RATE,
            log: Vec::new(),
            summary: Summary::default(),
            receipt: None,
            approvers: None,
            database: None,
        }
    }

    /// The story's database is `database`, run by the stack as its StatefulSet (see
    /// [`BackedUpPostgres::stack_options`]): every release backs it up
    /// ([`BackedUpPostgres::release_backups`]: scheduled backups, and a snapshot before every
    /// migration, which the story prints), and [`Story::run_all`] ends with scenario 6, a
    /// restore. Creates the ConfigMap of its pgBackRest options.
    pub async fn with_backups(&mut self, database: &'a BackedUpPostgres) -> Result<()> {
        Api::<ConfigMap>::namespaced(self.stack.client.clone(), &self.stack.namespace)
            .create(&PostParams::default(), &database.options())
            .await
            .map_err(|source| Error::Kube {
                action: "creating the ConfigMap of the pgBackRest options".to_owned(),
                source,
            })?;
        self.database = Some(database);
        Ok(())
    }

    /// Sets the load generator's rate (requests per second) before it starts.
    pub fn set_load_rate(&mut self, rate: u32) {
        self.load_rate = rate;
    }

    fn say(&mut self, line: impl Into<String>) {
        let line = format!(
            "[{:>6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            line.into()
        );
        if self.print {
            println!("{line}");
        }
        self.log.push(line);
    }

    fn runner_events(&mut self) {
        for event in self.stack.runner.take_events() {
            self.say(format!("  runner: {}", event.message));
        }
    }

    /// Applies the release of `version` needing `schema`, follows it to a terminal phase and
    /// returns it.
    pub async fn release(&mut self, version: &str, schema: i64) -> Result<ListaCompraRelease> {
        if self.approvers.is_none() {
            let dir = std::env::temp_dir().join(format!("{}-identities", self.stack.namespace));
            let cluster = crate::cluster::Cluster::start().await?;
            self.approvers = Some(
                Approvers::set_up(&cluster, &self.stack.client, &self.stack.namespace, &dir)
                    .await?,
            );
        }
        self.say(format!(
            "apply ListaCompraRelease {version} (image {IMAGE}:{version}, schema {schema}, approvals by {})",
            APPROVAL_ROLES.join(" and ")
        ));
        let began = Instant::now();
        let mut manifest = self.stack.manifest(version, schema);
        manifest["spec"]["approvals"] = serde_json::json!({ "requiredRoles": APPROVAL_ROLES });
        if let Some(database) = self.database {
            manifest["spec"]["backups"] = database.release_backups();
        }
        self.stack.apply(&manifest).await?;
        let mut approved_attempt = None;
        let mut last_phase = String::new();
        let mut last_measurement = None;
        let mut last_health = None;
        let mut last_smoke = None;
        let mut last_snapshot = None;
        loop {
            self.runner_events();
            let release = self.stack.release().await?;
            let generation = release.metadata.generation;
            let Some(status) = release.status.clone() else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            let current = status.observed_generation == generation
                && status.current_version.as_deref() == Some(version);
            if !current {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let phase = phase_name(status.phase);
            if phase != last_phase {
                let message = status
                    .conditions
                    .iter()
                    .find(|c| {
                        c.type_ == "Progressing" || c.type_ == "Degraded" && c.status == "True"
                    })
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                self.say(format!("v{version} {phase}: {message}"));
                self.timeline.phases.push((
                    self.started.elapsed(),
                    version.to_owned(),
                    phase.clone(),
                ));
                last_phase = phase.clone();
            }
            if status.phase == Some(Phase::AwaitingApproval) && approved_attempt != status.attempt {
                self.approve(&status).await?;
                approved_attempt = status.attempt;
            }
            if let Some(health) = &status.health {
                let line = health.message.clone();
                if line.is_some() && line != last_health {
                    self.say(format!(
                        "  health gate: {}",
                        line.clone().unwrap_or_default()
                    ));
                    last_health = line;
                }
            }
            if let Some(snapshot) = status
                .snapshot
                .as_ref()
                .filter(|s| s.completion_time.is_some() && Some(s.attempt) == status.attempt)
                && last_snapshot.as_ref() != Some(&snapshot.job)
            {
                self.say(format!(
                    "  snapshot before the migration: pgBackRest backup {} (Job {})",
                    snapshot.annotation, snapshot.job
                ));
                last_snapshot = Some(snapshot.job.clone());
            }
            if let Some(smoke) = &status.smoke_test {
                let line = smoke_line(smoke);
                if last_smoke.as_ref() != Some(&line) {
                    self.say(format!("  smoke test: {line}"));
                    last_smoke = Some(line);
                }
            }
            if let Some(report) = &status.last_analysis
                && last_measurement != Some(report.measurement)
            {
                last_measurement = Some(report.measurement);
                self.measured(version, report);
            }
            if self.load.is_none() && matches!(status.phase, Some(Phase::Verifying)) {
                self.start_load().await?;
            }
            if matches!(
                status.phase,
                Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)
            ) {
                self.runner_events();
                let approvals: Vec<(String, String)> = status
                    .history
                    .first()
                    .map(|h| {
                        h.approvals
                            .iter()
                            .map(|a| (a.role.clone(), a.approver.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                check(
                    approvals
                        == [
                            ("qa".to_owned(), "alice".to_owned()),
                            ("product-owner".to_owned(), "pat".to_owned()),
                        ],
                    || format!("v{version}'s history should name its approvers: {approvals:?}"),
                )?;
                self.timeline.end = self.started.elapsed();
                self.summary.releases.push(format!(
                    "v{version}: {phase} in {:.0}s",
                    began.elapsed().as_secs_f64()
                ));
                return Ok(release);
            }
            if began.elapsed() > RELEASE_TIMEOUT {
                return Err(Error::Check {
                    message: format!(
                        "v{version} did not finish within {RELEASE_TIMEOUT:?}; status: {status:#?}"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// QA and the Product Owner approve the attempt the release waits in, each as their own
    /// user (the API server checks who they are).
    async fn approve(&mut self, status: &ListaCompraReleaseStatus) -> Result<()> {
        let (Some(version), Some(attempt)) = (status.current_version.clone(), status.attempt)
        else {
            return Ok(());
        };
        let Some(approvers) = &self.approvers else {
            return Ok(());
        };
        let mut lines = Vec::new();
        for role in APPROVAL_ROLES {
            if status.approvals.iter().any(|a| a.role == role) {
                continue;
            }
            let user = approvers
                .approve(crate::stack::RELEASE, &version, attempt, role)
                .await?;
            lines.push(format!(
                "  approved by {user} as {role} (v{version}, attempt {attempt})"
            ));
        }
        for line in lines {
            self.say(line);
        }
        Ok(())
    }

    /// Records and prints one KPI measurement of `version`.
    fn measured(&mut self, version: &str, report: &AnalysisReport) {
        let bounds: BTreeMap<String, (Option<f64>, Option<f64>)> = default_kpis()
            .into_iter()
            .map(|k| (k.name, (k.min, k.max)))
            .collect();
        let mut parts = Vec::new();
        for kpi in &report.kpis {
            let (min, max) = bounds.get(&kpi.name).copied().unwrap_or_default();
            let verdict = format!("{:?}", kpi.verdict);
            let bound = match (min, max) {
                (Some(min), _) => format!(">= {min}"),
                (_, Some(max)) => format!("<= {max}"),
                _ => String::new(),
            };
            let value = kpi
                .value
                .map_or_else(|| "no data".to_owned(), |v| format!("{v:.1}"));
            parts.push(format!("{} = {value} ({bound}) {verdict}", kpi.name));
            self.timeline.kpis.push(KpiPoint {
                at: self.started.elapsed(),
                version: version.to_owned(),
                name: kpi.name.clone(),
                value: kpi.value,
                min,
                max,
                verdict,
            });
        }
        self.say(format!(
            "  KPI measurement {}: {}",
            report.measurement,
            parts.join("; ")
        ));
    }

    async fn start_load(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match LoadGenerator::start(&self.stack.api_url, self.load_rate).await {
                Ok(load) => {
                    let rate = self.load_rate;
                    self.say(format!(
                        "load generator: {rate} requests/s through the Service (add items, read lists, ask for suggestions)"
                    ));
                    self.load = Some(load);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// What the load generator saw so far (empty before it starts).
    pub fn load_stats(&self) -> LoadStats {
        self.load
            .as_ref()
            .map(LoadGenerator::stats)
            .unwrap_or_default()
    }

    /// Checks that traffic flowed since `before` and that no request failed: rollouts and
    /// rollbacks lose no request by design (new pods join the Service only once they answer
    /// their readiness probe; old pods leave it before their preStop sleep and SIGTERM).
    fn traffic_flowed(&mut self, before: &LoadStats, during: &str) -> Result<()> {
        let now = self.load_stats();
        let (requests, failed) = now.since(before);
        self.say(format!(
            "  traffic during {during}: {requests} requests, {failed} failed"
        ));
        check(requests > 0 && failed == 0, || {
            format!(
                "traffic during {during}: {requests} requests, {failed} failed (none may fail); latest errors: {:?}",
                now.recent_errors
            )
        })
    }

    async fn expect_serving(&mut self, version: &str, schema: i64) -> Result<()> {
        let image = self.stack.deployed_image().await?;
        check(image == format!("{IMAGE}:{version}"), || {
            format!("the Deployment runs {image}, expected {IMAGE}:{version}")
        })?;
        let worker = self.stack.image_of(&format!("{RELEASE}-worker")).await?;
        check(worker == image, || {
            format!("the worker Deployment runs {worker}, the API's {image}")
        })?;
        let revision = self.stack.schema_revision().await?;
        check(revision == schema, || {
            format!("the database is at schema revision {revision}, expected {schema}")
        })?;
        // Old pods drain after a rollout; wait for the runner to stop them. The worker pods
        // run the same version.
        let deadline = Instant::now() + Duration::from_secs(60);
        let apps = loop {
            self.runner_events();
            let versions = self.stack.runner.ready_versions();
            let apps = self.stack.runner.ready_apps();
            let workers = apps.get("listacompra-worker").copied().unwrap_or(0);
            if versions.len() == 1 && versions.contains(version) && workers > 0 {
                break apps;
            }
            check(Instant::now() < deadline, || {
                format!(
                    "pods still serving {versions:?} ({apps:?}), expected only {version} and a worker"
                )
            })?;
            tokio::time::sleep(POLL).await;
        };
        let count = |app: &str| apps.get(app).copied().unwrap_or(0);
        self.say(format!(
            "  serving: v{version} only (image {image}: {} API pods, {} worker), database at schema revision {revision}",
            count("listacompra-api"),
            count("listacompra-worker")
        ));
        Ok(())
    }

    /// Scenario 1: fresh install of v1.0.0, then v1.1.0 with a new migration under load.
    pub async fn install_and_upgrade(&mut self) -> Result<()> {
        self.say("== 1. fresh install of v1.0.0, then v1.1.0 with a new migration, under load");
        let first = self.release("1.0.0", SCHEMAS[0]).await?;
        let status = first.status.clone().unwrap_or_default();
        ended(&status, "1.0.0", Phase::Succeeded)?;
        smoke_passed(&status, "1.0.0")?;
        self.expect_serving("1.0.0", SCHEMAS[0]).await?;

        let before = self.load_stats();
        let second = self.release("1.1.0", SCHEMAS[1]).await?;
        let status = second.status.clone().unwrap_or_default();
        ended(&status, "1.1.0", Phase::Succeeded)?;
        let report = status.last_analysis.clone();
        let kpis = report.as_ref().map(|r| r.kpis.clone()).unwrap_or_default();
        for name in default_kpis().into_iter().map(|k| k.name) {
            let kpi = kpis.iter().find(|k| k.name == name);
            check(
                kpi.is_some_and(|k| k.value.is_some() && format!("{:?}", k.verdict) == "Pass"),
                || format!("KPI {name} was not measured as passing from real traffic: {report:#?}"),
            )?;
        }
        smoke_passed(&status, "1.1.0")?;
        self.traffic_flowed(&before, "the v1.1.0 release")?;
        self.expect_serving("1.1.0", SCHEMAS[1]).await?;
        self.attach_receipt().await
    }

    /// Attaches a receipt to a new list of the load generator's shopper (v1.1.0 brings
    /// attachments): announced to the API, uploaded straight to the object store, confirmed.
    async fn attach_receipt(&mut self) -> Result<()> {
        let token = match &self.load {
            Some(load) => load.token().to_owned(),
            None => {
                return Err(Error::Check {
                    message: "no load generator, so no shopper".to_owned(),
                });
            }
        };
        let client = Attachments::new(&self.stack.api_url, &token)?;
        let (status, list) = client
            .call(
                reqwest::Method::POST,
                "/v1/lists",
                Some(serde_json::json!({ "name": "Recibos" })),
            )
            .await?;
        check(status == reqwest::StatusCode::CREATED, || {
            format!("creating a list: {status} {list}")
        })?;
        let list = list["id"].as_str().unwrap_or_default().to_owned();
        // A 256 KiB "scan" whose bytes differ from run to run.
        let seed = *uuid::Uuid::new_v4().as_bytes();
        let data: Vec<u8> = seed.iter().copied().cycle().take(256 * 1024).collect();
        let id = client
            .upload(&list, "ticket-mercado.pdf", "application/pdf", &data)
            .await?;
        self.say(format!(
            "  attached ticket-mercado.pdf ({} KiB) to list {list}: uploaded straight to the object store, confirmed",
            data.len() / 1024
        ));
        self.receipt = Some((client, list, id, data));
        Ok(())
    }

    /// Downloads the receipt and checks it byte for byte.
    async fn read_receipt(&mut self, when: &str) -> Result<()> {
        let Some((client, list, id, data)) = &self.receipt else {
            return Ok(());
        };
        let (bytes, _) = client.download(list, id).await?;
        let same = bytes == *data;
        check(same, || {
            format!(
                "the receipt read {when} differs: {} bytes, {} expected",
                bytes.len(),
                data.len()
            )
        })?;
        self.say(format!(
            "  receipt downloaded {when}: {} bytes, identical",
            bytes.len()
        ));
        Ok(())
    }

    /// Scenario 2: the JWT key is rotated under load (the runbook's "secret rotation after a
    /// leak"): one change of the Secret; the operator rolls v1.1.0's pods, verified by the
    /// health gate alone (no migration, the same attempt), and the shopper's token, issued
    /// with the old key, keeps working throughout.
    pub async fn rotate_jwt_key(&mut self) -> Result<()> {
        self.say("== 2. the JWT key is rotated under load: one Secret change (new key, old one kept to verify)");
        let before = self.load_stats();
        let token = match &self.load {
            Some(load) => load.token().to_owned(),
            None => {
                return Err(Error::Check {
                    message: "no load generator, so no token issued before the rotation".to_owned(),
                });
            }
        };
        let release = self.stack.release().await?;
        let status = release.status.clone().unwrap_or_default();
        let (attempt, stamp) = (status.attempt, status.secrets_version.clone());
        let migrations = self.stack.jobs("migrate").await?;
        let began = Instant::now();
        self.stack.rotate_jwt_key().await?;
        let rotated = loop {
            self.runner_events();
            let release = self.stack.release().await?;
            let status = release.status.clone().unwrap_or_default();
            if let Some(rotation) = status.rotation.clone().filter(|r| {
                r.completion_time.is_some() && Some(&r.secrets_version) != stamp.as_ref()
            }) {
                break (status, rotation);
            }
            if began.elapsed() > RELEASE_TIMEOUT {
                return Err(Error::Check {
                    message: format!(
                        "the JWT rotation did not end within {RELEASE_TIMEOUT:?}: {status:#?}"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        };
        let (status, rotation) = rotated;
        check(rotation.failure.is_none(), || {
            format!("the rotation failed: {rotation:#?}")
        })?;
        check(
            status.phase == Some(Phase::Succeeded) && status.attempt == attempt,
            || format!("a rotation is no new attempt: {status:#?}"),
        )?;
        let after = self.stack.jobs("migrate").await?;
        check(after == migrations, || {
            format!("a rotation runs no migration: {migrations:?} then {after:?}")
        })?;
        self.say(format!(
            "  SecretsRotated: v1.1.0's pods rolled with the new key, health gate passed in {:.0} s; no migration, attempt {} still",
            began.elapsed().as_secs_f64(),
            attempt.unwrap_or_default()
        ));
        let client = Attachments::new(&self.stack.api_url, &token)?;
        let (code, body) = client.call(reqwest::Method::GET, "/v1/lists", None).await?;
        check(code == reqwest::StatusCode::OK, || {
            format!("the token issued before the rotation was refused: {code} {body}")
        })?;
        self.say(
            "  the token issued with the old key still works (JWT_SECRET_PREVIOUS verifies it)",
        );
        self.traffic_flowed(&before, "the JWT key rotation")?;
        self.expect_serving("1.1.0", SCHEMAS[1]).await
    }

    /// Scenario 3: v1.2.0 with injected latency is rolled back, workload and schema.
    pub async fn latency_rollback(&mut self) -> Result<()> {
        self.say(format!(
            "== 3. v1.2.0 (a build with {BAD_LATENCY_MS} ms of added latency) and schema {}",
            SCHEMAS[2]
        ));
        let before = self.load_stats();
        let release = self.release("1.2.0", SCHEMAS[2]).await?;
        let status = release.status.clone().unwrap_or_default();
        ended(&status, "1.2.0", Phase::RolledBack)?;
        check(
            status.failed_version.as_deref() == Some("1.2.0")
                && status.stable_version.as_deref() == Some("1.1.0"),
            || format!("expected failed 1.2.0 and stable 1.1.0: {status:#?}"),
        )?;
        let breached = self.timeline.kpis.iter().any(|k| {
            k.version == "1.2.0"
                && k.name == "p95-latency-ms"
                && k.verdict == "Fail"
                && k.value.is_some_and(|v| v > 350.0)
        });
        check(breached, || {
            format!(
                "no failing p95 measurement above 350 ms for v1.2.0: {:#?}",
                self.timeline.kpis
            )
        })?;
        // The runbook's "rollback + re-run smoke tests": v1.1.0 was smoke-tested again.
        smoke_passed(&status, "1.1.0")?;
        self.traffic_flowed(&before, "the v1.2.0 release and its rollback")?;
        self.expect_serving("1.1.0", SCHEMAS[1]).await?;
        self.read_receipt("after the rollback").await
    }

    /// Scenario 4: v1.3.0's migration fails; nothing rolls out.
    pub async fn failing_migration(&mut self) -> Result<()> {
        self.say(format!(
            "== 4. v1.3.0 needs schema {BROKEN_SCHEMA}, which no build has"
        ));
        let before = self.load_stats();
        let release = self.release("1.3.0", BROKEN_SCHEMA).await?;
        let status = release.status.clone().unwrap_or_default();
        check(
            matches!(status.phase, Some(Phase::RolledBack | Phase::Failed))
                && status.failed_version.as_deref() == Some("1.3.0"),
            || format!("v1.3.0 should have failed its migration: {status:#?}"),
        )?;
        let (reason, _) = degraded(&status);
        check(reason == "MigrationFailed", || {
            format!("Degraded reason is {reason:?}, expected MigrationFailed: {status:#?}")
        })?;
        let started = self.stack.runner.started_versions();
        check(!started.contains("1.3.0"), || {
            format!("a v1.3.0 API process was started although its migration failed: {started:?}")
        })?;
        // Why, as a person asks: the failed Job's own words, through `kubectl logs` (the
        // runner's process output, served by kwok) and the kubectl plugin.
        let logs = self
            .plugin(&["logs", RELEASE, "migration", "--tail", "5"])
            .await?;
        self.say(format!(
            "kubectl listacompra logs {RELEASE} migration --tail 5"
        ));
        for line in logs.lines() {
            self.say(format!("  | {line}"));
        }
        check(
            logs.contains("==> pod ")
                && logs.contains(&format!("unknown schema revision {BROKEN_SCHEMA}")),
            || {
                format!(
                    "the migration Job's log should say why revision {BROKEN_SCHEMA} failed:\n{logs}"
                )
            },
        )?;
        // Keep the load on a little longer: v1.1.0 serves on.
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.traffic_flowed(&before, "the failed v1.3.0 release")?;
        self.expect_serving("1.1.0", SCHEMAS[1]).await
    }

    /// Scenario 5: v1.2.1 fails its smoke test; the stable version passes it again.
    pub async fn failing_smoke_test(&mut self) -> Result<()> {
        self.say(format!(
            "== 5. v1.2.1 (a build whose {BROKEN_ROUTE} answers 500): the smoke test decides"
        ));
        let before = self.load_stats();
        let release = self.release("1.2.1", SCHEMAS[1]).await?;
        let status = release.status.clone().unwrap_or_default();
        ended(&status, "1.2.1", Phase::RolledBack)?;
        let (reason, message) = degraded(&status);
        check(
            reason == "SmokeTestFailed" && message.contains("AI suggestions"),
            || format!("Degraded should name the smoke test's failing step: {reason} {message}"),
        )?;
        check(status.last_analysis.is_none(), || {
            format!(
                "the KPI analysis ran although the smoke test failed: {:#?}",
                status.last_analysis
            )
        })?;
        smoke_passed(&status, "1.1.0")?;
        self.traffic_flowed(&before, "the v1.2.1 release and its rollback")?;
        self.expect_serving("1.1.0", SCHEMAS[1]).await
    }

    /// Runs `kubectl-listacompra ARGS -n <namespace>` as the cluster's admin; its output.
    async fn plugin(&self, args: &[&str]) -> Result<String> {
        let binary = crate::binaries::workspace_binary("kubectl-listacompra")?;
        let cluster = crate::cluster::Cluster::start().await?;
        self.as_admin(&cluster, binary, args).await
    }

    /// Runs `kubectl ARGS -n <namespace>` as the cluster's admin; its output.
    async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let cluster = crate::cluster::Cluster::start().await?;
        self.as_admin(&cluster, cluster.bin_dir()?.join("kubectl"), args)
            .await
    }

    /// Runs `binary ARGS -n <namespace>` with `cluster`'s admin kubeconfig; its output.
    async fn as_admin(
        &self,
        cluster: &crate::cluster::Cluster,
        binary: std::path::PathBuf,
        args: &[&str],
    ) -> Result<String> {
        let output = tokio::process::Command::new(&binary)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args)
            .args(["-n", &self.stack.namespace])
            .output()
            .await
            .map_err(|source| Error::Spawn {
                script: binary.clone(),
                source,
            })?;
        crate::printed(format!("{} {}", binary.display(), args.join(" ")), &output)
    }

    /// The five scenarios in order, and the sixth (a restore) with [`Story::with_backups`].
    pub async fn run_all(&mut self) -> Result<()> {
        self.install_and_upgrade().await?;
        self.rotate_jwt_key().await?;
        self.latency_rollback().await?;
        self.failing_migration().await?;
        self.failing_smoke_test().await?;
        if let Some(database) = self.database {
            self.restore_after_corruption(database).await?;
        }
        Ok(())
    }

    /// Stops the load and checks that every acknowledged write can be read back.
    pub async fn finish(mut self) -> Result<(Summary, Timeline, Vec<String>)> {
        self.stop_load().await?;
        self.timeline.end = self.started.elapsed();
        Ok((self.summary, self.timeline, self.log))
    }

    /// Stops the load generator (if it runs) and checks that every write it was told
    /// succeeded can be read back once the last one is done.
    async fn stop_load(&mut self) -> Result<()> {
        if let Some(load) = self.load.take() {
            let (stats, lost) = load.finish().await?;
            self.say(format!(
                "load generator: {} requests, {} failed, {} items written, {} missing after the rollbacks",
                stats.requests,
                stats.failed,
                stats.written.len(),
                lost.len()
            ));
            self.summary.lost_items = lost.len();
            self.summary.load = stats;
            check(lost.is_empty(), || {
                format!("{} acknowledged items were lost: {lost:?}", lost.len())
            })?;
        }
        Ok(())
    }
}
