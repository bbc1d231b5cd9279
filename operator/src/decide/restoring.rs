//! The release's side of a `ListaCompraRestore`: taking one up (or refusing it), holding the
//! release while it runs, and returning to where the release stood once it ended.
//!
//! The restore's own steps (stop PostgreSQL, run pgBackRest, migrate, ...) are decided by
//! [`crate::restore`]; the release decides only what is the release's: that no attempt
//! starts while the database is restored, and whether its API and worker run (not until the
//! restore says the database is back). Taking a restore up is a phase change of the release,
//! written with optimistic concurrency like every other decision: a restore and an attempt
//! can never both start.

use listacompra_crds::Phase;
use listacompra_crds::restore::{RestorePhase, RestoreStep};
use listacompra_crds::status::{ActiveRestore, condition};

use super::machine::Machine;
use super::*;

/// Degraded reason (and Event reason) of a restore that failed after it stopped PostgreSQL.
pub const RESTORE_FAILED: &str = "RestoreFailed";
/// Degraded reason (and Event reason) of a restore deleted before it ended.
const RESTORE_ABANDONED: &str = "RestoreAbandoned";
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
}

impl RestoreSeen {
    /// Not taken up by a release yet, nor refused.
    pub fn pending(&self) -> bool {
        matches!(self.phase, None | Some(RestorePhase::Pending))
    }
}

/// A restore the release refuses: nothing was touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The restore's name.
    pub name: String,
    /// Its uid (the refusal is written only to that object).
    pub uid: String,
    /// Why, and what to do.
    pub message: String,
}

/// Whether the API and the worker are stopped for `restore`: until it has brought the
/// database back (its step reaches StartingTraffic), or for good when it failed before.
pub fn holds_traffic(restore: Option<&RestoreSeen>) -> bool {
    restore.is_none_or(|r| r.step.is_none_or(|s| s < RestoreStep::StartingTraffic))
}

impl Machine<'_, '_> {
    /// Takes up the oldest pending restore when the release stands still (Succeeded,
    /// RolledBack or Failed, with a stable version and no new target), and refuses every
    /// other pending one, saying why.
    pub(super) fn take_up_restores(&mut self) {
        let mut pending = self.o.restores.iter().filter(|r| r.pending());
        let Some(first) = pending.next() else {
            return;
        };
        match self.why_not_restore() {
            None => {
                let return_phase = self.status.phase.unwrap_or(Phase::Succeeded);
                self.status.restore = Some(ActiveRestore {
                    name: first.name.clone(),
                    uid: first.uid.clone(),
                    return_phase,
                    start_time: self.now.clone(),
                });
                self.status.phase = Some(Phase::Restoring);
                let set = first
                    .backup_set
                    .as_deref()
                    .unwrap_or("the newest backup set");
                self.note(
                    true,
                    "RestoreStarted",
                    format!(
                        "restoring the database from {set} ({}): the API and the worker stop \
                         until it is back",
                        first.name
                    ),
                );
            }
            Some(why) => self.refuse(first.clone(), &why),
        }
        let others: Vec<RestoreSeen> = pending.cloned().collect();
        for other in others {
            let why = self.why_not_restore().unwrap_or_default();
            self.refuse(other, &why);
        }
    }

    /// Why a restore cannot be taken up now, if it cannot.
    fn why_not_restore(&self) -> Option<String> {
        if let Some(active) = &self.status.restore {
            return Some(format!("restore {} of this release runs", active.name));
        }
        let phase = self.status.phase;
        if self.spec().backups.is_none() {
            return Some(
                "the release has no spec.backups: a restore runs pgBackRest with its image, \
                 stanza and options. Fix: set spec.backups, then create the restore again"
                    .to_owned(),
            );
        }
        if self.status.stable_version.is_none() {
            return Some(
                "no version of the release has passed its gates yet: nothing would serve the \
                 restored database"
                    .to_owned(),
            );
        }
        let rotating = self
            .status
            .rotation
            .as_ref()
            .is_some_and(|r| r.completion_time.is_none() && r.failure.is_none());
        let settled = matches!(
            phase,
            Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)
        );
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
    /// the restore ends.
    pub(super) fn restoring(&mut self) {
        let Some(active) = self.status.restore.clone() else {
            // Only a hand-edited status gets here: nothing restores, go back to settled.
            self.status.phase = Some(Phase::Failed);
            return;
        };
        let serving = match active.return_phase {
            Phase::Succeeded if !is_new_target(self.spec(), &self.status) => Some(self.target()),
            _ => self.stable(),
        };
        self.workload = serving;
        let seen = self
            .o
            .restores
            .iter()
            .find(|r| r.uid == active.uid)
            .cloned();
        let Some(seen) = seen else {
            self.traffic_held = true;
            return self.restore_failed(
                RESTORE_ABANDONED,
                format!(
                    "restore {} was deleted before it ended: the database may be half \
                     restored, so the API and the worker stay stopped. Create another \
                     ListaCompraRestore, or change spec.version or spec.retryToken",
                    active.name
                ),
            );
        };
        self.traffic_held = holds_traffic(Some(&seen));
        match seen.phase {
            Some(RestorePhase::Succeeded) => self.restored(&active, &seen),
            Some(RestorePhase::Failed) if seen.step <= Some(RestoreStep::StoppingTraffic) => {
                // It failed before it touched PostgreSQL: the release serves as it did.
                self.traffic_held = false;
                self.status.restore = None;
                self.status.phase = Some(active.return_phase);
                self.note(
                    true,
                    RESTORE_FAILED,
                    format!(
                        "restore {} failed before it stopped PostgreSQL: {}; the API and the \
                         worker run again on the database as it was",
                        seen.name,
                        seen.message.as_deref().unwrap_or("no reason given")
                    ),
                );
            }
            Some(RestorePhase::Failed) => {
                let step = seen.step.map_or("?".to_owned(), |s| format!("{s:?}"));
                let held = if self.traffic_held {
                    "the API and the worker stay stopped"
                } else {
                    "the API and the worker run"
                };
                self.restore_failed(
                    RESTORE_FAILED,
                    format!(
                        "restore {} failed at step {step}: {}; {held}. Create another \
                         ListaCompraRestore, or change spec.version or spec.retryToken",
                        seen.name,
                        seen.message.as_deref().unwrap_or("no reason given")
                    ),
                );
            }
            _ => {
                let step = seen
                    .step
                    .map_or("StoppingTraffic".to_owned(), |s| format!("{s:?}"));
                self.waiting = Some((
                    "Restoring",
                    format!("restore {} runs (step {step})", seen.name),
                ));
                self.wait();
            }
        }
    }

    /// The restore succeeded: the release returns to where it stood, on the restored schema.
    fn restored(&mut self, active: &ActiveRestore, seen: &RestoreSeen) {
        self.traffic_held = false;
        self.status.restore = None;
        self.status.phase = Some(active.return_phase);
        let set = seen
            .backup_set
            .as_deref()
            .unwrap_or("the newest backup set");
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

    /// The restore ended without the database known good: Failed, for a person.
    fn restore_failed(&mut self, reason: &str, message: String) {
        self.status.restore = None;
        self.status.phase = Some(Phase::Failed);
        self.set_condition(condition::DEGRADED, true, reason, message.clone());
        self.note(true, reason, message);
    }
}
