//! The AwaitingApproval phase: an attempt launches nothing until every role its spec
//! requires has approved this release, this version and this attempt.
//!
//! Who approved is not decided here: the API server admitted each approval only when its
//! approver was the requesting user and in a group mapped to its role (the chart's
//! ValidatingAdmissionPolicy). Here an approval counts when it names the release, the
//! attempt's version and number and a required role, and was created after the attempt
//! began; each role needs a different person. An attempt approves the spec it started with:
//! a change of the spec before the launch starts a new attempt.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use listacompra_crds::Phase;
use listacompra_crds::approval::ApprovalRecord;

use super::Observed;
use super::machine::Machine;

/// Reconciling reason (and phase) while approvals are missing.
const AWAITING_APPROVAL: &str = "AwaitingApproval";

/// A `ListaCompraApproval` as the controller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its name.
    pub name: String,
    /// The release it approves.
    pub release: String,
    /// The version it approves.
    pub version: String,
    /// The attempt it approves.
    pub attempt: i64,
    /// The role it approves as.
    pub role: String,
    /// Who approved.
    pub approver: String,
    /// When it was created.
    pub created: Timestamp,
    /// The restore it approves instead of the attempt, if any: its name and uid.
    pub restore: Option<(String, String)>,
}

/// Reason (Event and history) of an attempt started over because its spec changed before
/// it launched.
const SPEC_CHANGED: &str = "SpecChanged";

/// An attempt that needs (or counted) approvals approves the spec it started with: when the
/// spec changes before it launches (any field: the schema revision, a Secret, the gates),
/// it starts over as a new attempt, whose approvals are asked again. The reason and message
/// of the restart, if one is due.
pub(super) fn restart_unlaunched(o: &Observed<'_>) -> Option<(&'static str, String)> {
    let unlaunched = matches!(
        o.status.phase,
        Some(Phase::Pending | Phase::AwaitingApproval)
    );
    let approvals = o.spec.approvals.is_some()
        || !o.status.approvals.is_empty()
        || o.status.phase == Some(Phase::AwaitingApproval);
    let changed = o
        .status
        .observed_generation
        .is_some_and(|g| g != o.generation);
    (unlaunched && approvals && changed).then(|| {
        let message = if o.spec.approvals.is_none() {
            "started over: the spec changed before it launched and no longer requires approvals"
        } else {
            "started over: the spec changed before it launched, so its approvals no longer count"
        };
        (SPEC_CHANGED, message.to_owned())
    })
}

impl Machine<'_, '_> {
    /// Counts the approvals of the current attempt into the status. True when every
    /// required role approved (or none is required); otherwise the release waits in
    /// AwaitingApproval, saying which roles are missing.
    pub(super) fn approved(&mut self) -> bool {
        let Some(policy) = self.spec().approvals.clone() else {
            return true;
        };
        let (version, attempt) = (self.version().to_owned(), self.attempt());
        // Given for this attempt, after it began (to the second: creation times have no
        // fraction), earliest first.
        let since = self
            .status
            .attempt_start_time
            .as_ref()
            .and_then(|t| Timestamp::from_second(t.0.as_second()).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let given: Vec<&Approval> = self
            .o
            .approvals
            .iter()
            .filter(|a| {
                a.release == self.o.release
                    && a.restore.is_none()
                    && a.version == version
                    && a.attempt == attempt
                    && a.created >= since
            })
            .collect();
        let counted = count(&policy.required_roles, given);
        // What the last look counted for this attempt (a new attempt starts from none).
        let before = if self.o.status.attempt == self.status.attempt {
            self.o.status.approvals.clone()
        } else {
            Vec::new()
        };
        for record in counted.iter().filter(|r| !before.contains(r)) {
            self.note_approval(
                false,
                "Approved",
                format!(
                    "{} approved {version} (attempt {attempt}) as {} ({})",
                    record.approver, record.role, record.approval
                ),
                &record.approval,
            );
        }
        for record in before.iter().filter(|r| !counted.contains(r)) {
            self.note_approval(
                true,
                "ApprovalWithdrawn",
                format!(
                    "the {} approval of {} ({}) is gone; {version} waits for another",
                    record.role, record.approver, record.approval
                ),
                &record.approval,
            );
        }
        let missing: Vec<&str> = policy
            .required_roles
            .iter()
            .filter(|role| !counted.iter().any(|r| &r.role == *role))
            .map(String::as_str)
            .collect();
        self.status.approvals = counted;
        if missing.is_empty() {
            return true;
        }
        let given = if self.status.approvals.is_empty() {
            String::new()
        } else {
            let list = self
                .status
                .approvals
                .iter()
                .map(|r| format!("{} by {}", r.role, r.approver))
                .collect::<Vec<_>>()
                .join(", ");
            format!(" (approved: {list})")
        };
        let message = format!(
            "waiting for approval of {version} attempt {attempt} by {}{given}: each approver creates a ListaCompraApproval with release {}, version {version}, attempt {attempt} and their role",
            missing.join(", "),
            self.o.release,
        );
        self.status.phase = Some(Phase::AwaitingApproval);
        self.waiting = Some((AWAITING_APPROVAL, message));
        self.hold_stable_while_waiting();
        false
    }

    fn note_approval(&mut self, warning: bool, reason: &str, message: String, approval: &str) {
        self.note(warning, reason, message);
        if let Some(note) = self.notes.last_mut() {
            note.approval = Some(approval.to_owned());
        }
    }
}

/// The approvals `given` that count, earliest first: one per role, each by a different
/// person (QA and the Product Owner are two people), in the order `roles` lists them.
pub(super) fn count(roles: &[String], mut given: Vec<&Approval>) -> Vec<ApprovalRecord> {
    given.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    assign(roles, &given)
        .into_iter()
        .map(|(role, a)| ApprovalRecord {
            role: role.to_owned(),
            approver: a.approver.clone(),
            approval: a.name.clone(),
            approved_at: Time(a.created),
        })
        .collect()
}

/// Chooses one approval per role, no person twice, earliest first: a complete choice when
/// one exists (backtracking over at most eight roles), else as many roles as the earliest
/// approvals cover.
fn assign<'a, 'r>(roles: &'r [String], given: &[&'a Approval]) -> Vec<(&'r str, &'a Approval)> {
    fn complete<'a, 'r>(
        roles: &'r [String],
        given: &[&'a Approval],
        chosen: &mut Vec<(&'r str, &'a Approval)>,
    ) -> bool {
        let Some(role) = roles.get(chosen.len()) else {
            return true;
        };
        for a in given.iter().filter(|a| a.role == *role) {
            if chosen.iter().any(|(_, c)| c.approver == a.approver) {
                continue;
            }
            chosen.push((role, a));
            if complete(roles, given, chosen) {
                return true;
            }
            chosen.pop();
        }
        false
    }
    let mut chosen = Vec::new();
    if complete(roles, given, &mut chosen) {
        return chosen;
    }
    let mut partial: Vec<(&'r str, &'a Approval)> = Vec::new();
    for role in roles {
        if let Some(a) = given
            .iter()
            .find(|a| a.role == *role && !partial.iter().any(|(_, c)| c.approver == a.approver))
        {
            partial.push((role, a));
        }
    }
    partial
}
