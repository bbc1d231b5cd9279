//! The release as a tree (`get`): the release and its attempt, approvals, Jobs, Deployments
//! and their pods, gates. Built from objects already read, and rendered for a terminal
//! (colours, symbols, tree lines), for a pipe (plain text) or as JSON. Pure.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use listacompra_crds::status::{Verdict as KpiVerdict, condition};
use listacompra_crds::{ListaCompraRelease, Phase};
use serde::Serialize;

use crate::verdict::{Step, Verdict, condition_of};

/// How a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Done and good.
    Ok,
    /// Moving.
    Progressing,
    /// Waits for something or someone.
    Waiting,
    /// Failed.
    Failed,
    /// Just information.
    Info,
}

/// One line of the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// What it is: `ListaCompraRelease`, `Job`, `Deployment`, `Pod`, `Gate`, `KPI`, ...
    pub kind: String,
    /// Its name.
    pub name: String,
    /// How it stands.
    pub state: State,
    /// Details for people.
    pub info: String,
    /// What belongs to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    fn new(kind: &str, name: impl Into<String>, state: State, info: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            name: name.into(),
            state,
            info: info.into(),
            children: Vec::new(),
        }
    }
}

/// What the tree is built from: the release and its children as listed.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The release.
    pub release: &'a ListaCompraRelease,
    /// Its Jobs.
    pub jobs: &'a [Job],
    /// Its Deployments.
    pub deployments: &'a [Deployment],
    /// Its pods.
    pub pods: &'a [Pod],
    /// Kinds the user may not list (shown as such, not as absent).
    pub hidden: Vec<&'static str>,
    /// The time elapsed times count to.
    pub now: Timestamp,
}

/// Builds the tree of a release.
pub fn build(i: &Inputs<'_>) -> Node {
    let release = i.release;
    let status = release.status.clone().unwrap_or_default();
    let step = Step::of(release);
    let verdict = Verdict::of(release);
    let state = match verdict {
        Verdict::Succeeded => State::Ok,
        Verdict::RolledBack { .. } | Verdict::Failed { .. } => State::Failed,
        Verdict::NotObserved => State::Waiting,
        Verdict::InFlight if step.stalled || release.spec.paused => State::Waiting,
        Verdict::InFlight => State::Progressing,
    };
    // Until the operator takes up the spec, the phase in the status is an earlier attempt's:
    // the step says so instead.
    let phase = if verdict == Verdict::NotObserved {
        step.detail.clone()
    } else {
        step.phase.clone()
    };
    let mut info = vec![release.spec.version.clone(), phase];
    if let Some(since) = phase_start(release) {
        info.push(format!("for {}", elapsed(since, i.now)));
    }
    if let Some(attempt) = status.attempt {
        info.push(format!("attempt {attempt}"));
    }
    if let Some(stable) = &status.stable_version {
        info.push(format!("stable {stable}"));
    }
    if let Some(schema) = status.schema_version {
        info.push(format!("schema {schema}"));
    }
    let mut root = Node::new(
        "ListaCompraRelease",
        format!(
            "{}/{}",
            release.namespace().unwrap_or_default(),
            release.name_any()
        ),
        state,
        info.join(" · "),
    );
    if !step.detail.is_empty() && verdict != Verdict::NotObserved {
        let state = if step.stalled {
            State::Waiting
        } else {
            State::Info
        };
        root.children
            .push(Node::new("Message", "", state, step.detail.clone()));
    }
    if let Some(node) = approvals(release) {
        root.children.push(node);
    }
    if let Some(node) = restore(release, i.now) {
        root.children.push(node);
    }
    let named_jobs = [
        (status.migration_job.as_deref(), "migration"),
        (status.revert_job.as_deref(), "schema revert"),
        (
            status.smoke_test.as_ref().map(|s| s.job.as_str()),
            "smoke test",
        ),
    ];
    for (name, purpose) in named_jobs {
        if let Some(name) = name {
            root.children.push(job(name, purpose, i.jobs));
        }
    }
    let mut deployments: Vec<&Deployment> = i.deployments.iter().collect();
    deployments.sort_by_key(|d| d.name_any());
    for deployment in deployments {
        root.children
            .push(self::deployment(deployment, i.pods, i.now));
    }
    root.children.extend(gates(release));
    if !i.hidden.is_empty() {
        root.children.push(Node::new(
            "Message",
            "",
            State::Info,
            format!(
                "not shown: {} (your RBAC does not allow listing them here)",
                i.hidden.join(", ")
            ),
        ));
    }
    root
}

/// When the phase the release is in began, as far as its status tells.
fn phase_start(release: &ListaCompraRelease) -> Option<&Time> {
    let status = release.status.as_ref()?;
    match status.phase? {
        Phase::Verifying => status.verification_start_time.as_ref(),
        Phase::Succeeded | Phase::RolledBack | Phase::Failed => None,
        Phase::Restoring => status.restore.as_ref().map(|r| &r.start_time),
        _ => status
            .attempt_start_time
            .as_ref()
            .or(status.release_start_time.as_ref()),
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn elapsed(since: &Time, now: Timestamp) -> String {
    let seconds = now.duration_since(since.0).as_secs().max(0);
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn approvals(release: &ListaCompraRelease) -> Option<Node> {
    let policy = release.spec.approvals.as_ref()?;
    let status = release.status.clone().unwrap_or_default();
    let mut node = Node::new("Approvals", "", State::Ok, "");
    for role in &policy.required_roles {
        let child = match status.approvals.iter().find(|a| &a.role == role) {
            Some(a) => Node::new(
                "Role",
                role,
                State::Ok,
                format!("approved by {}", a.approver),
            ),
            None if status.phase == Some(Phase::AwaitingApproval) => Node::new(
                "Role",
                role,
                State::Waiting,
                format!(
                    "waiting: kubectl listacompra approve {} --role {role}",
                    release.name_any()
                ),
            ),
            None => Node::new("Role", role, State::Info, "not approved"),
        };
        node.children.push(child);
    }
    if node.children.iter().any(|c| c.state == State::Waiting) {
        node.state = State::Waiting;
    }
    Some(node)
}

/// The restore the release carries out (`kubectl get lcrestore NAME` for its steps).
fn restore(release: &ListaCompraRelease, now: Timestamp) -> Option<Node> {
    let status = release.status.as_ref()?;
    let restore = status.restore.as_ref()?;
    let stalled = condition_of(release, condition::STALLED).is_some_and(|(on, ..)| on);
    let mut info = vec![format!("for {}", elapsed(&restore.start_time, now))];
    if let Some(step) = restore.step {
        info.push(format!("step {step:?}"));
    }
    info.extend(
        restore
            .approvals
            .iter()
            .map(|a| format!("{} approved by {}", a.role, a.approver)),
    );
    let state = if stalled {
        State::Failed
    } else {
        State::Progressing
    };
    Some(Node::new(
        "ListaCompraRestore",
        restore.name.clone(),
        state,
        info.join(" · "),
    ))
}

fn job(name: &str, purpose: &str, jobs: &[Job]) -> Node {
    let Some(job) = jobs.iter().find(|j| j.name_any() == name) else {
        return Node::new("Job", name, State::Info, format!("{purpose}, deleted"));
    };
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    match finished {
        Some(c) if c.type_ == "Complete" => {
            Node::new("Job", name, State::Ok, format!("{purpose}, complete"))
        }
        Some(c) => Node::new(
            "Job",
            name,
            State::Failed,
            format!(
                "{purpose}, failed: {}",
                c.message.clone().or(c.reason.clone()).unwrap_or_default()
            ),
        ),
        None => Node::new(
            "Job",
            name,
            State::Progressing,
            format!("{purpose}, running"),
        ),
    }
}

fn deployment(deployment: &Deployment, pods: &[Pod], now: Timestamp) -> Node {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or_default();
    let total = status.replicas.unwrap_or_default();
    let image = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let settled = ready == wanted && updated == wanted && total == wanted;
    let state = if settled {
        State::Ok
    } else {
        State::Progressing
    };
    let mut node = Node::new(
        "Deployment",
        deployment.name_any(),
        state,
        format!("{ready}/{wanted} ready, {updated} updated · {image}"),
    );
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let mut mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let labels = p.labels();
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    mine.sort_by_key(|p| p.name_any());
    node.children = mine.into_iter().map(|p| pod(p, now)).collect();
    node
}

fn pod(pod: &Pod, now: Timestamp) -> Node {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".to_owned());
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts: i32 = status
        .container_statuses
        .as_ref()
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or_default();
    let state = if pod.metadata.deletion_timestamp.is_some() {
        State::Info
    } else if phase == "Failed" {
        State::Failed
    } else if ready {
        State::Ok
    } else {
        State::Progressing
    };
    let mut info = vec![if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else if ready {
        format!("{phase}, ready")
    } else {
        format!("{phase}, not ready")
    }];
    if restarts > 0 {
        info.push(format!("{restarts} restarts"));
    }
    if let Some(created) = &pod.metadata.creation_timestamp {
        info.push(format!("age {}", elapsed(created, now)));
    }
    let version = pod
        .labels()
        .get("app.kubernetes.io/version")
        .cloned()
        .unwrap_or_default();
    if !version.is_empty() {
        info.insert(0, version);
    }
    Node::new("Pod", pod.name_any(), state, info.join(" · "))
}

/// The health gate, the smoke test and the KPI analysis of the current attempt, once it
/// reached them.
fn gates(release: &ListaCompraRelease) -> Vec<Node> {
    let Some(status) = &release.status else {
        return Vec::new();
    };
    let mut gates = Vec::new();
    if let Some(health) = &status.health {
        let spec = &release.spec.health;
        let state = if health.passed {
            State::Ok
        } else if health.consecutive_failures >= spec.failure_threshold {
            State::Failed
        } else {
            State::Progressing
        };
        let mut info = format!(
            "{}/{} checks in a row passed, {}/{} failed",
            health.consecutive_successes,
            spec.success_threshold,
            health.consecutive_failures,
            spec.failure_threshold
        );
        if let Some(message) = health.message.as_ref().filter(|m| !m.is_empty()) {
            let _ = write!(info, " · {message}");
        }
        gates.push(Node::new("Gate", "health", state, info));
    }
    if let Some(smoke) = &status.smoke_test {
        let (state, what) = match (smoke.completion_time.is_some(), smoke.passed) {
            (_, true) => (State::Ok, "passed"),
            (true, false) => (State::Failed, "failed"),
            (false, false) => (State::Progressing, "running"),
        };
        let mut info = format!("{} {what}", smoke.version);
        if let Some(message) = smoke.message.as_ref().filter(|m| !m.is_empty()) {
            let _ = write!(info, " · {message}");
        }
        gates.push(Node::new("Gate", "smoke test", state, info));
    }
    if let (Some(report), Some(analysis)) = (&status.last_analysis, &release.spec.analysis) {
        let breached = report.failures > analysis.failure_limit;
        let state = if breached {
            State::Failed
        } else if report.measurement >= analysis.measurements {
            State::Ok
        } else {
            State::Progressing
        };
        let mut node = Node::new(
            "Gate",
            "analysis",
            state,
            format!(
                "measurement {} of {} · {} failed (limit {}) · {} inconclusive (limit {})",
                report.measurement,
                analysis.measurements,
                report.failures,
                analysis.failure_limit,
                report.inconclusives,
                analysis.inconclusive_limit
            ),
        );
        for kpi in &report.kpis {
            let bound = analysis.kpis.iter().find(|k| k.name == kpi.name);
            let mut bounds = Vec::new();
            if let Some(min) = bound.and_then(|b| b.min) {
                bounds.push(format!("min {min}"));
            }
            if let Some(max) = bound.and_then(|b| b.max) {
                bounds.push(format!("max {max}"));
            }
            let value = kpi
                .value
                .map_or_else(|| "no data".to_owned(), |v| format!("{v}"));
            let state = match kpi.verdict {
                KpiVerdict::Pass => State::Ok,
                KpiVerdict::Fail => State::Failed,
                KpiVerdict::Inconclusive => State::Waiting,
            };
            node.children.push(Node::new(
                "KPI",
                &kpi.name,
                state,
                format!("{value} ({})", bounds.join(", ")),
            ));
        }
        gates.push(node);
    }
    gates
}

/// Renders the tree: with colours, symbols and tree lines when `fancy` (a terminal), else
/// plain text, one node per line indented by depth, its state as a word.
pub fn render(root: &Node, fancy: bool) -> String {
    let mut out = String::new();
    line(&mut out, root, fancy, "");
    let last = root.children.len().saturating_sub(1);
    for (n, child) in root.children.iter().enumerate() {
        walk(&mut out, child, fancy, "", n == last);
    }
    out
}

fn walk(out: &mut String, node: &Node, fancy: bool, prefix: &str, last: bool) {
    let (branch, further) = match (fancy, last) {
        (true, false) => ("├─ ", "│  "),
        (true, true) => ("└─ ", "   "),
        (false, _) => ("  ", "  "),
    };
    line(out, node, fancy, &format!("{prefix}{branch}"));
    let prefix = format!("{prefix}{further}");
    let end = node.children.len().saturating_sub(1);
    for (n, child) in node.children.iter().enumerate() {
        walk(out, child, fancy, &prefix, n == end);
    }
}

fn line(out: &mut String, node: &Node, fancy: bool, prefix: &str) {
    use anstyle::{AnsiColor, Style};
    let (symbol, word, color) = match node.state {
        State::Ok => ("✔", "ok", AnsiColor::Green),
        State::Progressing => ("◷", "progressing", AnsiColor::Yellow),
        State::Waiting => ("⏸", "waiting", AnsiColor::Cyan),
        State::Failed => ("✖", "failed", AnsiColor::Red),
        State::Info => ("·", "-", AnsiColor::BrightBlack),
    };
    let what = if node.name.is_empty() {
        node.kind.clone()
    } else {
        format!("{} {}", node.kind, node.name)
    };
    if fancy {
        let style = Style::new().fg_color(Some(color.into()));
        let bold = Style::new().bold();
        let _ = writeln!(
            out,
            "{prefix}{style}{symbol}{style:#} {bold}{what}{bold:#}  {}",
            node.info
        );
    } else {
        let _ = writeln!(out, "{prefix}{what}  [{word}]  {}", node.info);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;
    use listacompra_crds::status::{AnalysisReport, HealthProgress, KpiResult, condition};

    use super::*;
    use crate::verdict::tests::{at, release, with_condition};

    fn t(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + seconds)
    }

    fn deployment_json(name: &str, app: &str, ready: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": "lc"}},
                "template": {"spec": {"containers": [{"name": "api", "image": "reg/api:1.1.0"}]}}
            },
            "status": {"replicas": 2, "readyReplicas": ready, "updatedReplicas": 2}
        }))
        .expect("a Deployment")
    }

    fn pod_json(name: &str, app: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": "lc", "app.kubernetes.io/version": "1.1.0"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .expect("a Pod")
    }

    fn verifying_release() -> ListaCompraRelease {
        let mut lc = release("1.1.0");
        if let Some(analysis) = lc.spec.analysis.as_mut() {
            analysis.failure_limit = 1;
        }
        at(&mut lc, Phase::Verifying, "1.1.0");
        let status = lc.status.as_mut().expect("status");
        status.stable_version = Some("1.0.0".into());
        status.verification_start_time = Some(Time(t(0)));
        status.migration_job = Some("lc-migrate-1-1-0-abcd".into());
        status.health = Some(HealthProgress {
            consecutive_successes: 3,
            passed: true,
            ..HealthProgress::default()
        });
        status.last_analysis = Some(AnalysisReport {
            measured_at: Time(t(60)),
            measurement: 2,
            failures: 1,
            inconclusives: 0,
            kpis: vec![KpiResult {
                name: "p95-latency-ms".into(),
                value: Some(412.0),
                verdict: KpiVerdict::Fail,
                message: None,
            }],
        });
        with_condition(
            &mut lc,
            condition::RECONCILING,
            true,
            "Verifying",
            "running the KPI analysis",
        );
        lc
    }

    #[test]
    fn the_tree_shows_the_attempt_its_jobs_deployments_pods_and_gates() {
        let lc = verifying_release();
        let deployments = [
            deployment_json("lc-api", "listacompra-api", 1),
            deployment_json("lc-worker", "listacompra-worker", 2),
        ];
        let pods = [
            pod_json("lc-api-a", "listacompra-api", true),
            pod_json("lc-api-b", "listacompra-api", false),
            pod_json("lc-worker-a", "listacompra-worker", true),
        ];
        let tree = build(&Inputs {
            release: &lc,
            jobs: &[],
            deployments: &deployments,
            pods: &pods,
            hidden: Vec::new(),
            now: t(72),
        });
        assert_eq!(tree.state, State::Progressing);
        assert!(
            tree.info
                .contains("Verifying · for 1m12s · attempt 2 · stable 1.0.0"),
            "{}",
            tree.info
        );
        let plain = render(&tree, false);
        for expected in [
            "Message  [-]  running the KPI analysis",
            "Job lc-migrate-1-1-0-abcd  [-]  migration, deleted",
            "Deployment lc-api  [progressing]  1/2 ready",
            "    Pod lc-api-b  [progressing]  1.1.0 · Running, not ready",
            "Deployment lc-worker  [ok]  2/2 ready",
            "    Pod lc-worker-a  [ok]",
            "Gate health  [ok]  3/",
            "Gate analysis  [progressing]  measurement 2 of 4 · 1 failed (limit 1)",
            "KPI p95-latency-ms  [failed]  412 (max 350)",
        ] {
            assert!(
                plain.contains(expected),
                "{expected:?} missing from\n{plain}"
            );
        }
        assert!(
            !plain.contains('\u{1b}') && !plain.contains('├'),
            "plain when piped:\n{plain}"
        );
        let fancy = render(&tree, true);
        assert!(
            fancy.contains("├─ ") && fancy.contains("└─ ") && fancy.contains("\u{1b}["),
            "{fancy}"
        );
        let json = serde_json::to_value(&tree).expect("JSON");
        assert_eq!(json["kind"], "ListaCompraRelease");
        assert_eq!(json["children"][2]["name"], "lc-api");
        assert_eq!(json["children"][2]["children"][1]["state"], "progressing");
    }

    #[test]
    fn a_release_waiting_for_approvals_says_who_must_approve_and_how() {
        let mut lc = release("1.1.0");
        lc.spec.approvals = Some(listacompra_crds::approval::ApprovalPolicy {
            required_roles: vec!["qa".into(), "product-owner".into()],
        });
        at(&mut lc, Phase::AwaitingApproval, "1.1.0");
        lc.status.as_mut().expect("status").approvals =
            vec![listacompra_crds::approval::ApprovalRecord {
                role: "qa".into(),
                approver: "alice".into(),
                approval: "lc-2-qa".into(),
                approved_at: Time(t(0)),
            }];
        let tree = build(&Inputs {
            release: &lc,
            jobs: &[],
            deployments: &[],
            pods: &[],
            hidden: vec!["jobs", "pods"],
            now: t(10),
        });
        let plain = render(&tree, false);
        assert!(plain.contains("Approvals  [waiting]"), "{plain}");
        assert!(
            plain.contains("not shown: jobs, pods (your RBAC does not allow listing them here)"),
            "{plain}"
        );
        assert!(
            plain.contains("Role qa  [ok]  approved by alice"),
            "{plain}"
        );
        assert!(
            plain.contains("Role product-owner  [waiting]  waiting: kubectl listacompra approve listacompra --role product-owner"),
            "{plain}"
        );
    }

    #[test]
    fn a_release_restoring_its_database_shows_the_restore() {
        let mut lc = release("1.0.0");
        at(&mut lc, Phase::Restoring, "1.0.0");
        lc.status.as_mut().expect("status").restore =
            Some(listacompra_crds::status::ActiveRestore {
                name: "corrupt-lists".into(),
                uid: "u1".into(),
                return_phase: Phase::Succeeded,
                start_time: Time(t(0)),
                approvals: vec![listacompra_crds::approval::ApprovalRecord {
                    role: "release-manager".into(),
                    approver: "rita".into(),
                    approval: "corrupt-lists-release-manager-x".into(),
                    approved_at: Time(t(0)),
                }],
                step: Some(listacompra_crds::restore::RestoreStep::Restoring),
                failed: false,
            });
        let tree = build(&Inputs {
            release: &lc,
            jobs: &[],
            deployments: &[],
            pods: &[],
            hidden: vec![],
            now: t(90),
        });
        let plain = render(&tree, false);
        assert!(
            plain.contains(
                "ListaCompraRestore corrupt-lists  [progressing]  for 1m30s · step Restoring · release-manager approved by rita"
            ),
            "{plain}"
        );
    }

    #[test]
    fn a_new_version_not_yet_taken_up_is_not_shown_with_the_earlier_attempts_phase() {
        let mut lc = release("1.1.0");
        at(&mut lc, Phase::Succeeded, "1.0.0");
        let tree = build(&Inputs {
            release: &lc,
            jobs: &[],
            deployments: &[],
            pods: &[],
            hidden: Vec::new(),
            now: t(10),
        });
        assert_eq!(tree.state, State::Waiting);
        assert!(
            tree.info.starts_with(
                "1.1.0 · the operator has not taken up 1.1.0 yet (the status is of 1.0.0 Succeeded)"
            ),
            "{}",
            tree.info
        );
    }

    #[test]
    fn elapsed_times_read_like_kubectl_ages() {
        assert_eq!(elapsed(&Time(t(0)), t(42)), "42s");
        assert_eq!(elapsed(&Time(t(0)), t(185)), "3m05s");
        assert_eq!(elapsed(&Time(t(0)), t(3720)), "1h02m");
        assert_eq!(elapsed(&Time(t(10)), t(0)), "0s");
    }
}
