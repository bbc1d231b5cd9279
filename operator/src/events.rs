//! Kubernetes Events (`events.k8s.io/v1`) about releases.
//!
//! A repeat of one Event (same object, type, reason, related object *and note*) within six
//! minutes becomes a series: one object whose count grows, as client-go's events recorder
//! does. An Event with another note is another object. kube-runtime's `Recorder` leaves the
//! note out of its key, so "releasing 1.2.0" would be shown as a second "releasing 1.1.0"
//! (and two approvals as one): the Events would lie about which version or who.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// How long an Event may be repeated as a series.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// What the operator does when it records an Event (the Event's `action`).
const ACTION: &str = "Release";

/// One Event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The object it is about.
    pub regarding: ObjectReference,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Message for people (at most 1,000 characters are kept).
    pub message: String,
    /// Another object it is about (an approval, say).
    pub related: Option<ObjectReference>,
}

/// What makes two Events the same: the object they are about (kind, namespace, name, uid),
/// their type, reason and note, and the related object (kind, name). Kept as a 64-bit
/// fingerprint, not as those strings: a thousand releases record seven Events each within
/// the window, and their text took 2.9 MiB of the operator's heap (`heaptrack` at the peak
/// of `make bench-compare`'s 1,000 releases). The fingerprint is keyed with a random seed of
/// this process, so nobody can write a note that shares another's; by chance, two share one
/// with odds of about one in 10^19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(u64);

impl Key {
    fn of(note: &Note, seed: &RandomState) -> Self {
        use std::hash::BuildHasher;
        let r = &note.regarding;
        Self(seed.hash_one((
            (&r.kind, &r.namespace, &r.name, &r.uid),
            note.warning,
            &note.reason,
            &note.message,
            note.related.as_ref().map(|o| (&o.kind, &o.name)),
        )))
    }
}

/// An Event recently recorded.
#[derive(Debug, Clone)]
struct Recent {
    name: String,
    count: i32,
    last: Timestamp,
}

/// How to record an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// A new Event object.
    Create,
    /// Once more: the object `name` of a series now counting `count`.
    Repeat { name: String, count: i32 },
}

/// Decides how to record the Event `key` at `now`, forgetting Events past the window.
fn plan(recent: &mut HashMap<Key, Recent>, key: &Key, now: Timestamp) -> Plan {
    recent.retain(|_, r| r.last + SERIES_WINDOW > now);
    match recent.get_mut(key) {
        Some(r) => {
            r.count += 1;
            r.last = now;
            Plan::Repeat {
                name: r.name.clone(),
                count: r.count,
            }
        }
        None => Plan::Create,
    }
}

/// Records Events as one controller instance.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<HashMap<Key, Recent>>,
    /// The seed of the [`Key`] fingerprints.
    seed: RandomState,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Records Events as `controller` from `instance` (defaults to the controller's name).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            recent: Mutex::default(),
            seed: RandomState::new(),
        }
    }

    /// Records `note`: a new Event, or one more of a series.
    pub async fn publish(&self, note: &Note) -> kube::Result<()> {
        let now = Timestamp::now();
        let key = Key::of(note, &self.seed);
        let planned = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            plan(&mut recent, &key, now)
        };
        let namespace = note.regarding.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Plan::Repeat { name, count } = planned {
            let series = json!({ "series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (TTL, by hand): record it anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            note.regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            action: Some(ACTION.to_owned()),
            reason: Some(note.reason.clone()),
            note: Some(note.message.chars().take(1000).collect()),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(note.regarding.clone()),
            related: note.related.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Recent {
                    name,
                    count: 1,
                    last: now,
                },
            );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One seed for a whole test, as one for a whole process.
    static SEED: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);

    /// A Normal Event about the release `ns/lc`.
    fn note(reason: &str, message: &str) -> Note {
        Note {
            regarding: ObjectReference {
                kind: Some("ListaCompraRelease".into()),
                namespace: Some("ns".into()),
                name: Some("lc".into()),
                uid: Some("u1".into()),
                ..ObjectReference::default()
            },
            warning: false,
            reason: reason.into(),
            message: message.into(),
            related: None,
        }
    }

    fn key(reason: &str, message: &str) -> Key {
        Key::of(&note(reason, message), &SEED)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + secs)
    }

    fn recorded(recent: &mut HashMap<Key, Recent>, key: &Key, secs: i64) {
        recent.insert(
            *key,
            Recent {
                name: "lc.1".into(),
                count: 1,
                last: at(secs),
            },
        );
    }

    #[test]
    fn the_same_event_repeats_as_a_series_and_another_note_is_another_event() {
        let mut recent = HashMap::new();
        let started = key("ReleaseStarted", "releasing 1.1.0");
        assert_eq!(plan(&mut recent, &started, at(0)), Plan::Create);
        recorded(&mut recent, &started, 0);
        assert_eq!(
            plan(&mut recent, &started, at(60)),
            Plan::Repeat {
                name: "lc.1".into(),
                count: 2
            }
        );
        assert_eq!(
            plan(&mut recent, &started, at(90)),
            Plan::Repeat {
                name: "lc.1".into(),
                count: 3
            }
        );
        // The next release starts: a new Event, not "releasing 1.1.0" once more.
        let next = key("ReleaseStarted", "releasing 1.2.0");
        assert_eq!(plan(&mut recent, &next, at(120)), Plan::Create);
    }

    #[test]
    fn every_part_of_an_event_makes_it_another_event() {
        let note = Note {
            related: Some(ObjectReference {
                kind: Some("ListaCompraApproval".into()),
                name: Some("qa".into()),
                ..ObjectReference::default()
            }),
            ..note("Approved", "approved by qa")
        };
        let edits: [fn(&mut Note); 8] = [
            |n| n.regarding.kind = Some("Other".into()),
            |n| n.regarding.namespace = Some("ns2".into()),
            |n| n.regarding.name = Some("lc2".into()),
            |n| n.regarding.uid = Some("u2".into()),
            |n| n.warning = true,
            |n| n.reason = "Refused".into(),
            |n| n.message = "approved by po".into(),
            |n| n.related = None,
        ];
        assert_eq!(Key::of(&note, &SEED), Key::of(&note.clone(), &SEED));
        for (i, edit) in edits.iter().enumerate() {
            let mut other = note.clone();
            edit(&mut other);
            assert_ne!(Key::of(&other, &SEED), Key::of(&note, &SEED), "edit {i}");
        }
        // Another process (another seed) fingerprints differently.
        assert_ne!(Key::of(&note, &RandomState::new()), Key::of(&note, &SEED));
    }

    #[test]
    fn a_series_ends_six_minutes_after_its_last_repeat() {
        let mut recent = HashMap::new();
        let k = key("ReferencesMissing", "waiting for Secret db");
        recorded(&mut recent, &k, 0);
        assert!(matches!(
            plan(&mut recent, &k, at(300)),
            Plan::Repeat { .. }
        ));
        assert!(matches!(
            plan(&mut recent, &k, at(659)),
            Plan::Repeat { .. }
        ));
        assert_eq!(plan(&mut recent, &k, at(659 + 360)), Plan::Create);
        assert!(recent.is_empty(), "forgotten past the window");
    }
}
