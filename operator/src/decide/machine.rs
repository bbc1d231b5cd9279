//! One run of the state machine: the copy of the status it edits, what it has decided so
//! far, and the helpers every phase uses.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use listacompra_crds::status::{HistoryEntry, MAX_HISTORY, Outcome, condition};
use listacompra_crds::{ListaCompraReleaseSpec, ListaCompraReleaseStatus, Phase};

use super::*;
use crate::conditions;
use crate::workload::{SpecSource, Workload};

/// One run of the state machine over a copy of the status.
pub(super) struct Machine<'o, 'a> {
    pub(super) o: &'o Observed<'a>,
    pub(super) now: Time,
    pub(super) status: ListaCompraReleaseStatus,
    pub(super) workload: Option<Workload>,
    pub(super) actions: Vec<Action>,
    pub(super) notes: Vec<Note>,
    pub(super) requeue_after: Duration,
    /// What the release waits for before it launches anything, as a Reconciling reason and
    /// message (references to exist, approvals).
    pub(super) waiting: Option<(&'static str, String)>,
    /// Why the release is held (Progressing=False with this reason), if it is.
    pub(super) hold: Option<(&'static str, String)>,
    /// Restores refused by this run.
    pub(super) refusals: Vec<restoring::Refusal>,
    /// Restores that wait for their approvals, and for which.
    pub(super) restore_waits: Vec<restoring::Refusal>,
    /// The API and the worker are stopped for a restore.
    pub(super) traffic_held: bool,
}

impl<'o, 'a> Machine<'o, 'a> {
    pub(super) fn new(o: &'o Observed<'a>) -> Self {
        let mut status = o.status.clone();
        status.observed_generation = Some(o.generation);
        let hold = conditions::get(&status.conditions, condition::PROGRESSING)
            .filter(|c| c.status == "False")
            .and_then(|c| {
                HOLD_REASONS
                    .iter()
                    .find(|r| **r == c.reason)
                    .map(|r| (*r, c.message.clone()))
            });
        Self {
            o,
            now: Time(o.now),
            status,
            workload: None,
            actions: Vec::new(),
            notes: Vec::new(),
            requeue_after: SETTLED,
            waiting: None,
            hold,
            refusals: Vec::new(),
            restore_waits: Vec::new(),
            traffic_held: false,
        }
    }

    pub(super) fn spec(&self) -> &ListaCompraReleaseSpec {
        self.o.spec
    }

    pub(super) fn version(&self) -> &str {
        &self.o.spec.version
    }

    pub(super) fn target(&self) -> Workload {
        Workload {
            version: self.o.spec.version.clone(),
            image: self.o.spec.image.reference(&self.o.spec.version),
            spec: SpecSource::Current,
            secrets: self.status.secrets_version.clone(),
        }
    }

    /// The current attempt's number (0 before the first release started).
    pub(super) fn attempt(&self) -> i64 {
        self.status.attempt.unwrap_or(0)
    }

    /// The version and image the current attempt started with (recorded in status; the
    /// spec's for a status written before attempts were recorded).
    pub(super) fn attempted(&self) -> Workload {
        let target = self.target();
        Workload {
            version: self
                .status
                .current_version
                .clone()
                .unwrap_or(target.version),
            image: self.status.current_image.clone().unwrap_or(target.image),
            spec: SpecSource::Current,
            secrets: target.secrets,
        }
    }

    pub(super) fn stable(&self) -> Option<Workload> {
        match (&self.status.stable_version, &self.status.stable_image) {
            (Some(version), Some(image)) => Some(Workload {
                version: version.clone(),
                image: image.clone(),
                spec: SpecSource::Stable,
                secrets: self.status.secrets_version.clone(),
            }),
            _ => None,
        }
    }

    pub(super) fn note(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        self.notes.push(Note {
            warning,
            reason: reason.to_owned(),
            message: message.into(),
            approval: None,
        });
    }

    pub(super) fn set_condition(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message,
            self.o.generation,
            &self.now,
        );
    }

    /// Waits on a watched child (a Job or a Deployment): its watch wakes the release on any
    /// change, so the requeue is only a safety net, or the next deadline when one falls
    /// sooner (so that a deadline is acted on when it passes, not at the next poll).
    pub(super) fn wait(&mut self) {
        self.requeue_after = self.requeue_after.min(WAIT);
        if let Some(deadline) = self.next_deadline() {
            self.requeue_in(deadline.duration_since(self.o.now));
        }
    }

    /// The soonest deadline still ahead, of those a waiting phase acts on: the release's,
    /// its rollback's, a rotation's and a restore's (each `progressDeadlineSeconds` from its
    /// start). One that does not apply to the phase only costs a reconcile that waits again.
    fn next_deadline(&self) -> Option<Timestamp> {
        let degraded = conditions::get(&self.status.conditions, condition::DEGRADED)
            .filter(|c| c.status == "True")
            .map(|c| &c.last_transition_time);
        let rotation = self
            .status
            .rotation
            .as_ref()
            .filter(|r| r.completion_time.is_none())
            .map(|r| &r.start_time);
        let restore = self.status.restore.as_ref().map(|r| &r.start_time);
        let within = seconds(self.spec().progress_deadline_seconds);
        [
            self.status.release_start_time.as_ref(),
            degraded,
            rotation,
            restore,
        ]
        .into_iter()
        .flatten()
        .map(|start| start.0 + within)
        .filter(|deadline| *deadline > self.o.now)
        .min()
    }

    pub(super) fn requeue_in(&mut self, wait: SignedDuration) {
        let wait = Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1));
        self.requeue_after = self.requeue_after.min(wait);
    }

    pub(super) fn schema_target(&self) -> Option<i64> {
        let m = &self.spec().migrations;
        if m.enabled { m.schema_version } else { None }
    }

    pub(super) fn deadline_passed(&self) -> bool {
        self.status
            .release_start_time
            .as_ref()
            .is_some_and(|start| {
                self.o.now >= start.0 + seconds(self.spec().progress_deadline_seconds)
            })
    }

    pub(super) fn push_history(
        &mut self,
        outcome: Outcome,
        reason: Option<String>,
        message: Option<String>,
    ) {
        let Some(version) = self.status.current_version.clone() else {
            return;
        };
        let start_time = self
            .status
            .release_start_time
            .clone()
            .unwrap_or_else(|| self.now.clone());
        self.status.history.insert(
            0,
            HistoryEntry {
                version,
                schema_version: self.schema_target(),
                start_time,
                end_time: Some(self.now.clone()),
                outcome,
                reason,
                message,
                approvals: self.status.approvals.clone(),
            },
        );
        self.status.history.truncate(MAX_HISTORY);
    }

    pub(super) fn is_serving(&self, workload: &Workload) -> bool {
        self.o.workload.available
            && self.o.workload.hash.as_deref() == Some(desired_hash(self.o, workload).as_str())
    }

    pub(super) fn settled(&mut self, serving: Option<Workload>) {
        self.workload = serving;
    }

    /// Time paused does not count toward the release deadline: a pause is recorded when
    /// it begins, and on unpause the start time moves forward by its length.
    /// A rotation in flight stops its clock the same way.
    pub(super) fn stop_the_clock_while_paused(&mut self) {
        let rotating = self.status.phase == Some(Phase::Succeeded)
            && self
                .status
                .rotation
                .as_ref()
                .is_some_and(|r| r.completion_time.is_none());
        if self.spec().paused && (advancing(self.status.phase) || rotating) {
            if self.status.paused_since.is_none() {
                self.status.paused_since = Some(self.now.clone());
            }
        } else if let Some(since) = self.status.paused_since.take() {
            let paused = self.now.0.duration_since(since.0);
            if let Some(start) = self.status.release_start_time.as_mut() {
                start.0 += paused;
            }
            if let Some(rotation) = self.status.rotation.as_mut().filter(|_| rotating) {
                rotation.start_time.0 += paused;
            }
        }
    }

    pub(super) fn pause(&mut self) {
        self.set_hold(
            "Paused",
            "spec.paused is true; the release waits at this step".to_owned(),
        );
    }

    pub(super) fn set_hold(&mut self, reason: &'static str, message: String) {
        self.hold = Some((reason, message));
        self.requeue_after = SETTLED;
    }

    /// A child it would apply belongs to someone else: apply nothing, say so (Stalled, one
    /// Event), and look again, going on by itself once the object is gone.
    pub(super) fn refuse_takeover(&mut self, object: &str) {
        let message = format!(
            "{object} exists and is not controlled by this release; the operator does not take over objects it did not create. Fix: delete or rename it"
        );
        let before = conditions::get(&self.o.status.conditions, condition::STALLED)
            .map(|c| (c.reason.clone(), c.message.clone()));
        if before != Some((OBJECT_NOT_OWNED.to_owned(), message.clone())) {
            self.note(true, OBJECT_NOT_OWNED, message.clone());
        }
        self.set_hold(OBJECT_NOT_OWNED, message);
        self.requeue_in(RECHECK);
    }

    /// A wait before the launch (approvals, references, alerts) may take days: meanwhile the
    /// stable version that serves is held like a settled release's (a scaled, edited or
    /// deleted Deployment is put back). Only when the Deployment runs the stable version (or
    /// is gone): an earlier attempt superseded in the middle of its rollout is left as it is,
    /// as in every phase before a rollout. A changed Secret is stamped on them at once.
    pub(super) fn hold_stable_while_waiting(&mut self) {
        if let Some(stable) = self.stable() {
            let live = self.o.workload.hash.as_deref();
            if live.is_none() || live == Some(desired_hash(self.o, &stable).as_str()) {
                // A Secret rotated meanwhile reaches the serving pods now, not days later.
                self.rotate_stable_at_once("a new attempt waits to launch");
                self.workload = self.stable();
            }
        }
    }
}
