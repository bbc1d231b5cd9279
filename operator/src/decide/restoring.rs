//! The release's side of a `ListaCompraRestore`: taking one up (or refusing it), holding the
//! release while it runs, and returning to where the release stood once it ended.
//!
//! The restore's own steps (stop PostgreSQL, run pgBackRest, migrate, ...) are decided by
//! [`crate::restore`]; the release decides only what is the release's: that no attempt
//! starts while the database is restored, and whether its API and worker run (not until the
//! restore says the database is back). Taking a restore up is a phase change of the release,
//! written with optimistic concurrency like every other decision: a restore and an attempt
//! can never both start.

use k8s_openapi::jiff::Timestamp;
use listacompra_crds::Phase;
use listacompra_crds::approval::ApprovalRecord;
use listacompra_crds::restore::{RestorePhase, RestoreStep};
use listacompra_crds::status::{ActiveRestore, condition};

use super::approving::{self, Approval};
use super::machine::Machine;
use super::*;
use crate::conditions;

/// Stalled reason (and Event reason) of a restore that failed once pgBackRest may have
/// written the data folder.
pub const RESTORE_FAILED: &str = "RestoreFailed";
/// Stalled reason (and Event reason) of a restore deleted before it ended.
pub const RESTORE_ABANDONED: &str = "RestoreAbandoned";
/// MigrationsApplied reason once a restore has moved the schema.
const RESTORED: &str = "Restored";

/// A `ListaCompraRestore` naming this release, as the release sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSeen {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its phase (`None` before anything wrote its status).
    pub phase: Option<RestorePhase>,
    /// The step it is at, or failed at.
    pub step: Option<RestoreStep>,
    /// Why it failed.
    pub message: Option<String>,
    /// The schema revision it migrated the database to.
    pub schema_version: Option<i64>,
    /// The backup set it restores (`None`: the newest).
    pub backup_set: Option<String>,
    /// When it was created (its approvals must come after).
    pub created: Timestamp,
}

impl RestoreSeen {
    /// Not taken up by a release yet, nor refused.
    pub fn pending(&self) -> bool {
        matches!(self.phase, None | Some(RestorePhase::Pending))
    }
}

/// A restore the release refuses (nothing was touched), or keeps waiting (for approvals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The restore's name.
    pub name: String,
    /// Its uid (the refusal is written only to that object).
    pub uid: String,
    /// Why, and what to do.
    pub message: String,
}

/// Reason (Event, and the restore's Reconciling condition) while a restore waits for its
/// approvals.
const AWAITING_APPROVAL: &str = "AwaitingApproval";

/// Whether the API and the worker are stopped for `restore`: until it has brought the
/// database back (its step reaches StartingTraffic), and for good when it failed (or went)
/// once pgBackRest may have written the data folder.
pub fn holds_traffic(restore: Option<&RestoreSeen>) -> bool {
    restore.is_none_or(|r| r.step.is_none_or(|s| s < RestoreStep::StartingTraffic))
}

/// What became of the restore a release took up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// It runs (or has not begun).
    Running,
    /// Restored, migrated and serving.
    Succeeded,
    /// It ended before pgBackRest touched the data folder (refused, failed while stopping,
    /// or never begun by the deadline): the release serves as it did.
    Untouched,
    /// It failed, or was deleted, once the data folder may have been written: a person
    /// must decide (another restore, or a new attempt).
    Broken,
}

/// The fate of the restore `active` names, among `seen`. One deleted is judged by what the
/// release last saw of it: before PostgreSQL was stopped, nothing was touched.
fn fate(active: &ActiveRestore, seen: Option<&RestoreSeen>) -> Fate {
    let Some(seen) = seen else {
        return if active.step <= Some(RestoreStep::StoppingTraffic) && !active.failed {
            Fate::Untouched
        } else {
            Fate::Broken
        };
    };
    match seen.phase {
        Some(RestorePhase::Succeeded) => Fate::Succeeded,
        Some(RestorePhase::Refused) => Fate::Untouched,
        Some(RestorePhase::Failed) if seen.step < Some(RestoreStep::Restoring) => Fate::Untouched,
        Some(RestorePhase::Failed) => Fate::Broken,
        _ => Fate::Running,
    }
}

impl Machine<'_, '_> {
    /// The restore this release took up (`status.restore`), as last seen: `None` when it is
    /// gone.
    fn active_seen(&self) -> Option<(ActiveRestore, Option<RestoreSeen>)> {
        let active = self.status.restore.clone()?;
        let seen = self
            .o
            .restores
            .iter()
            .find(|r| r.uid == active.uid)
            .cloned();
        Some((active, seen))
    }

    /// Whether the release is held by a restore that failed (or went) once the data folder
    /// may have been written: a new version or retry token may then start an attempt.
    pub(super) fn restore_broken(&self) -> bool {
        self.status.phase == Some(Phase::Restoring)
            && self
                .active_seen()
                .is_some_and(|(a, seen)| fate(&a, seen.as_ref()) == Fate::Broken)
    }

    /// Takes up the oldest pending restore when the release stands still (Succeeded,
    /// RolledBack or Failed with a stable version and no new target, or held by a restore
    /// that broke), and refuses every other pending one, saying why.
    pub(super) fn take_up_restores(&mut self) {
        let active_uid = self.status.restore.as_ref().map(|a| a.uid.clone());
        let pending: Vec<RestoreSeen> = self
            .o
            .restores
            .iter()
            .filter(|r| r.pending() && Some(&r.uid) != active_uid.as_ref())
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        if let Some(why) = self.why_not_restore() {
            for restore in pending {
                self.refuse(restore, &why);
            }
            return;
        }
        // The oldest one approved (every one, without spec.approvals) is taken up; one that
        // nobody approves never holds up a later one.
        let Some(chosen) = pending
            .iter()
            .find(|r| self.restore_approvals(r).1.is_empty())
            .cloned()
        else {
            for restore in &pending {
                self.wait_for_approvals(restore);
            }
            return;
        };
        // After a broken restore, the release returns where it stood before it; the broken
        // one's pgBackRest, if it still runs, is stopped.
        let return_phase = match self.status.restore.take() {
            Some(broken) => {
                self.stop_restore_job(&broken);
                broken.return_phase
            }
            None => self.status.phase.unwrap_or(Phase::Succeeded),
        };
        let approvals = self.restore_approvals(&chosen).0;
        self.status.restore = Some(ActiveRestore {
            name: chosen.name.clone(),
            uid: chosen.uid.clone(),
            return_phase,
            start_time: self.now.clone(),
            approvals,
            step: None,
            failed: false,
        });
        self.status.phase = Some(Phase::Restoring);
        self.hold = None;
        let set = chosen
            .backup_set
            .as_deref()
            .unwrap_or("the newest backup set");
        self.note(
            true,
            "RestoreStarted",
            format!(
                "restoring the database from {set} ({}): the API and the worker stop until it \
                 is back",
                chosen.name
            ),
        );
        let why = format!("restore {} of this release runs", chosen.name);
        for other in pending.into_iter().filter(|r| r.uid != chosen.uid) {
            self.refuse(other, &why);
        }
    }

    /// Deletes (foreground) the restore Job of `restore`, which may still write the data
    /// folder: a restore that broke, or went, is never left running behind the release.
    pub(super) fn stop_restore_job(&mut self, restore: &ActiveRestore) {
        self.actions.push(Action::DeleteJob {
            name: crate::naming::restore_job_name(&restore.name, &restore.uid, "restore"),
        });
    }

    /// The approvals that count for `restore` (one per required role, each by a different
    /// person, given after it was created for the release's current version and attempt),
    /// and the roles still missing. Without `spec.approvals`, none are needed.
    fn restore_approvals(&self, restore: &RestoreSeen) -> (Vec<ApprovalRecord>, Vec<String>) {
        let Some(policy) = &self.spec().approvals else {
            return (Vec::new(), Vec::new());
        };
        let version = self.status.current_version.clone().unwrap_or_default();
        let attempt = self.attempt();
        // To the second: creation times have no fraction.
        let since = Timestamp::from_second(restore.created.as_second()).unwrap_or(restore.created);
        let given: Vec<&Approval> = self
            .o
            .approvals
            .iter()
            .filter(|a| {
                a.release == self.o.release
                    && a.restore
                        .as_ref()
                        .is_some_and(|(name, uid)| *name == restore.name && *uid == restore.uid)
                    && a.version == version
                    && a.attempt == attempt
                    && a.created >= since
            })
            .collect();
        let counted = approving::count(&policy.required_roles, given);
        let missing = policy
            .required_roles
            .iter()
            .filter(|role| !counted.iter().any(|r| &r.role == *role))
            .cloned()
            .collect();
        (counted, missing)
    }

    /// `restore` waits for its approvals, saying for which (its status, and an Event on the
    /// release when that changes).
    fn wait_for_approvals(&mut self, restore: &RestoreSeen) {
        let (counted, missing) = self.restore_approvals(restore);
        let version = self.status.current_version.clone().unwrap_or_default();
        let given = counted
            .iter()
            .map(|r| format!("{} by {}", r.role, r.approver))
            .collect::<Vec<_>>();
        let given = if given.is_empty() {
            String::new()
        } else {
            format!(" (approved: {})", given.join(", "))
        };
        let message = format!(
            "waiting for approval by {}{given}: a restore loses the writes made since its \
             backup set, so each approver creates a ListaCompraApproval with release {}, \
             version {version}, attempt {}, restore {} and their role",
            missing.join(", "),
            self.o.release,
            self.attempt(),
            restore.name
        );
        if restore.message.as_deref() != Some(message.as_str()) {
            self.note(
                true,
                AWAITING_APPROVAL,
                format!("restore {}: {message}", restore.name),
            );
        }
        self.restore_waits.push(Refusal {
            name: restore.name.clone(),
            uid: restore.uid.clone(),
            message,
        });
    }

    /// Why a restore cannot be taken up now, if it cannot.
    fn why_not_restore(&self) -> Option<String> {
        if let Some(active) = &self.status.restore
            && !self.restore_broken()
        {
            return Some(format!("restore {} of this release runs", active.name));
        }
        let phase = self.status.phase;
        if self
            .spec()
            .backups
            .as_ref()
            .is_none_or(|b| b.database.is_none())
        {
            return Some(
                "the release has no spec.backups.database: a restore runs pgBackRest with the \
                 release's spec.backups (image, stanza, options) on the StatefulSet it names. \
                 Fix: set spec.backups.database, then create the restore again"
                    .to_owned(),
            );
        }
        if self.stable().is_none() {
            return Some(
                "no version of the release has passed its gates yet: nothing would serve the \
                 restored database"
                    .to_owned(),
            );
        }
        if let Some(object) = &self.o.foreign {
            return Some(format!(
                "{object} is not controlled by this release, so the operator cannot stop its \
                 traffic"
            ));
        }
        let rotating = self
            .status
            .rotation
            .as_ref()
            .is_some_and(|r| r.completion_time.is_none() && r.failure.is_none());
        let settled = matches!(
            phase,
            Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)
        ) || self.restore_broken();
        if !settled || rotating || is_new_target(self.spec(), &self.status) {
            let what = if rotating {
                "a Secret rotation".to_owned()
            } else {
                format!(
                    "attempt {} ({}, phase {})",
                    self.attempt(),
                    self.status.current_version.as_deref().unwrap_or("?"),
                    phase.map_or("Pending", phase_name)
                )
            };
            return Some(format!(
                "{what} of the release is in flight; a restore starts only while no attempt \
                 runs. Wait for it to end (or abort it: kubectl listacompra abort), then create \
                 the restore again"
            ));
        }
        None
    }

    fn refuse(&mut self, restore: RestoreSeen, why: &str) {
        self.note(
            true,
            "RestoreRefused",
            format!("restore {} refused: {why}", restore.name),
        );
        self.refusals.push(Refusal {
            name: restore.name,
            uid: restore.uid,
            message: why.to_owned(),
        });
    }

    /// Phase Restoring: the stable workload is held (stopped until the restore brings the
    /// database back), no attempt starts, and the release returns to where it stood once
    /// the restore ends; a restore that broke holds it for a person.
    pub(super) fn restoring(&mut self) {
        let Some((active, seen)) = self.active_seen() else {
            // Only a hand-edited status gets here: nothing restores.
            self.status.phase = Some(Phase::Failed);
            return;
        };
        let serving = match active.return_phase {
            Phase::Succeeded if !is_new_target(self.spec(), &self.status) => Some(self.target()),
            _ => self.stable(),
        };
        self.workload = serving;
        self.traffic_held = match &seen {
            Some(_) => holds_traffic(seen.as_ref()),
            None => active.step.is_none_or(|s| s < RestoreStep::StartingTraffic),
        };
        let set = seen
            .as_ref()
            .and_then(|s| s.backup_set.clone())
            .unwrap_or_else(|| "the newest backup set".to_owned());
        // A restore whose first step was never recorded did nothing (each step is recorded
        // before it acts): past the deadline, the operator could not carry it out (its log
        // says why: RBAC, the StatefulSet unreadable), and the release stops waiting for it.
        let never_began = seen.as_ref().is_some_and(|s| {
            s.step.is_none() && s.phase.is_none_or(|p| p == RestorePhase::Pending)
        }) && self.o.now
            >= active.start_time.0 + seconds(self.spec().progress_deadline_seconds);
        let fate = if never_began {
            // Written off, so that it is not taken up again.
            self.refusals.push(Refusal {
                name: active.name.clone(),
                uid: active.uid.clone(),
                message: "the operator could not begin it within the release's \
                          progressDeadlineSeconds (its log says why: RBAC, the StatefulSet); \
                          create the restore again once that is fixed"
                    .to_owned(),
            });
            Fate::Untouched
        } else {
            fate(&active, seen.as_ref())
        };
        // What the release knows of it, should it be deleted.
        if let (Some(seen), Some(record)) = (&seen, self.status.restore.as_mut()) {
            record.step = seen.step;
            record.failed = seen.phase == Some(RestorePhase::Failed);
        }
        let step = seen.as_ref().and_then(|r| r.step);
        match (fate, seen) {
            (Fate::Succeeded, Some(seen)) => self.restored(&active, &seen, &set),
            (Fate::Untouched, seen) => {
                let why = match seen {
                    None => "it was deleted".to_owned(),
                    Some(s) if never_began => {
                        let _ = s;
                        "the operator could not begin it within progressDeadlineSeconds (see its \
                         log)"
                            .to_owned()
                    }
                    Some(s) => s.message.unwrap_or_else(|| "it was refused".to_owned()),
                };
                self.traffic_held = false;
                self.status.restore = None;
                self.status.phase = Some(active.return_phase);
                self.note(
                    true,
                    RESTORE_FAILED,
                    format!(
                        "restore {} ended before pgBackRest wrote the data folder: {why}; the \
                         API and the worker run again on the database as it was",
                        active.name
                    ),
                );
            }
            (Fate::Broken, seen) => {
                // Stopped, unless the database was back and migrated (a failed smoke test).
                let held = self.traffic_held;
                let (reason, message) = match seen {
                    None => (
                        RESTORE_ABANDONED,
                        format!(
                            "restore {} was deleted {} step {}: the database may be half \
                             restored",
                            active.name,
                            if active.failed {
                                "after it failed at"
                            } else {
                                "at"
                            },
                            active.step.map_or("?".to_owned(), |s| format!("{s:?}"))
                        ),
                    ),
                    Some(seen) => (
                        RESTORE_FAILED,
                        format!(
                            "restore {} failed at step {}: {}",
                            seen.name,
                            seen.step.map_or("?".to_owned(), |s| format!("{s:?}")),
                            seen.message.as_deref().unwrap_or("no reason given")
                        ),
                    ),
                };
                if reason == RESTORE_ABANDONED {
                    self.stop_restore_job(&active);
                }
                let traffic = if held {
                    "the API and the worker stay stopped"
                } else {
                    "the API and the worker run on the restored database"
                };
                let message = format!("{message}; {traffic}. Create another ListaCompraRestore");
                let before = conditions::get(&self.o.status.conditions, condition::PROGRESSING)
                    .map(|c| (c.reason.clone(), c.message.clone()));
                if before != Some((reason.to_owned(), message.clone())) {
                    self.note(true, reason, message.clone());
                }
                self.set_hold(
                    if reason == RESTORE_ABANDONED {
                        RESTORE_ABANDONED
                    } else {
                        RESTORE_FAILED
                    },
                    message,
                );
            }
            _ => {
                let step = step.map_or("StoppingTraffic".to_owned(), |s| format!("{s:?}"));
                self.waiting = Some((
                    "Restoring",
                    format!("restore {} runs (step {step})", active.name),
                ));
                self.wait();
            }
        }
    }

    /// The restore succeeded: the release returns to where it stood, on the restored schema.
    fn restored(&mut self, active: &ActiveRestore, seen: &RestoreSeen, set: &str) {
        self.traffic_held = false;
        self.status.restore = None;
        // From Failed, the stable version now serves on the restored database behind its
        // smoke test: that is a rollback done, whatever had failed before.
        self.status.phase = Some(match active.return_phase {
            Phase::Failed => Phase::RolledBack,
            phase => phase,
        });
        let message = match seen.schema_version {
            Some(revision) => {
                self.status.schema_version = Some(revision);
                format!(
                    "restore {} returned the database to {set} and migrated it to revision \
                     {revision}",
                    seen.name
                )
            }
            None => format!("restore {} returned the database to {set}", seen.name),
        };
        self.set_condition(
            condition::MIGRATIONS_APPLIED,
            true,
            RESTORED,
            message.clone(),
        );
        self.note(false, RESTORED, message);
    }
}
