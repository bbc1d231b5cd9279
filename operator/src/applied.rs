//! What the operator last applied to each Deployment and Service of a release, so that a
//! reconcile skips a server-side apply that would change nothing.
//!
//! An unchanged apply writes nothing to etcd, but it is still a PATCH the API server decodes,
//! merges and compares: a release is reconciled on every status change of its Deployments,
//! and each reconcile sent three of them (two Deployments and a Service), most of them
//! changing nothing (`make bench-compare` counts the requests). An apply is skipped only
//! when all of these hold:
//!
//! - the desired object is byte for byte what this process applied last;
//! - the live object (from the watch cache) is the one that apply returned: the same uid,
//!   and the same `metadata.generation` for a Deployment (which moves on every change of its
//!   spec, by anyone, but not on status updates) or the same `resourceVersion` for a Service
//!   (which has no generation and no status the cluster writes);
//! - the live labels, annotations and owner references still hold the desired ones (an edit
//!   of metadata moves neither the generation nor anything we compare otherwise).
//!
//! Anything else — a scaled, edited, deleted or recreated child, a new operator process, a
//! cache that has not seen our last apply yet — applies again, as before.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use kube::api::ObjectMeta;
use serde::Serialize;

/// The kinds of child the record covers; they differ in what says "changed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Changed when its `metadata.generation` moves (status updates do not move it).
    Deployment,
    /// Changed when its `resourceVersion` moves.
    Service,
}

impl Kind {
    /// What moves when the live object changes in a way that matters.
    fn version(self, meta: &ObjectMeta) -> Option<String> {
        match self {
            Self::Deployment => meta.generation.map(|g| g.to_string()),
            Self::Service => meta.resource_version.clone(),
        }
    }
}

/// One child of one release.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Child {
    /// The release's namespace.
    pub namespace: String,
    /// The release.
    pub release: String,
    /// The child's kind.
    pub kind: Kind,
    /// The child's name.
    pub name: String,
}

/// The last apply of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    /// Hash of the desired object's JSON.
    desired: u64,
    /// The uid the apply returned.
    uid: Option<String>,
    /// The generation or resourceVersion the apply returned ([`Kind::version`]).
    version: Option<String>,
}

/// The last apply of every child, in this process.
#[derive(Debug, Default)]
pub struct Applied {
    records: Mutex<HashMap<Child, Record>>,
}

impl Applied {
    /// Whether applying `desired` to `child`, live as `live` in the cache, would change
    /// nothing (see the module documentation).
    pub fn unchanged<K: Serialize>(
        &self,
        child: &Child,
        desired: &K,
        desired_meta: &ObjectMeta,
        live: Option<&ObjectMeta>,
    ) -> bool {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(record) = records.get(child) else {
            return false;
        };
        live.is_some_and(|live| {
            record.desired == hash(desired)
                && record.uid.is_some()
                && record.uid == live.uid
                && record.version.is_some()
                && record.version == child.kind.version(live)
                && holds(desired_meta, live)
        })
    }

    /// Records that `desired` was applied to `child` and the API server returned `applied`.
    pub fn record<K: Serialize>(&self, child: Child, desired: &K, applied: &ObjectMeta) {
        let record = Record {
            desired: hash(desired),
            uid: applied.uid.clone(),
            version: child.kind.version(applied),
        };
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(child, record);
    }

    /// Forgets the children of a release that is gone.
    pub fn forget(&self, namespace: &str, release: &str) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|child, _| !(child.namespace == namespace && child.release == release));
    }

    /// Children recorded (for tests and the memory benchmark).
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash<K: Serialize>(object: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    // Serializing a Kubernetes object cannot fail (maps have string keys); an error hashes
    // as empty and, differing from any real object's hash, never skips an apply wrongly
    // unless two objects both fail, which cannot happen.
    serde_json::to_vec(object)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Whether `live` still has every desired label, annotation and owner reference.
fn holds(desired: &ObjectMeta, live: &ObjectMeta) -> bool {
    fn within(
        want: Option<&BTreeMap<String, String>>,
        have: Option<&BTreeMap<String, String>>,
    ) -> bool {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    }
    within(desired.labels.as_ref(), live.labels.as_ref())
        && within(desired.annotations.as_ref(), live.annotations.as_ref())
        && desired
            .owner_references
            .iter()
            .flatten()
            .all(|r| live.owner_references.iter().flatten().any(|l| l == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(kind: Kind) -> Child {
        Child {
            namespace: "prod".into(),
            release: "lc".into(),
            kind,
            name: "lc-api".into(),
        }
    }

    fn meta(uid: &str, generation: i64, rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            generation: Some(generation),
            resource_version: Some(rv.into()),
            labels: Some([("app".to_owned(), "lc".to_owned())].into()),
            ..ObjectMeta::default()
        }
    }

    fn desired() -> (serde_json::Value, ObjectMeta) {
        let meta = ObjectMeta {
            labels: Some([("app".to_owned(), "lc".to_owned())].into()),
            ..ObjectMeta::default()
        };
        (serde_json::json!({ "spec": { "replicas": 2 } }), meta)
    }

    #[test]
    fn an_apply_is_skipped_only_over_the_object_it_returned() {
        let applied = Applied::default();
        let deployment = child(Kind::Deployment);
        let (object, want) = desired();
        let returned = meta("u1", 3, "100");
        assert!(
            !applied.unchanged(&deployment, &object, &want, Some(&returned)),
            "never applied"
        );
        applied.record(deployment.clone(), &object, &returned);
        assert!(applied.unchanged(&deployment, &object, &want, Some(&returned)));
        // A status update moves the resourceVersion, not the generation.
        assert!(applied.unchanged(&deployment, &object, &want, Some(&meta("u1", 3, "101"))));
        // Scaled or edited by someone: the generation moves.
        assert!(!applied.unchanged(&deployment, &object, &want, Some(&meta("u1", 4, "102"))));
        // Deleted, or deleted and recreated.
        assert!(!applied.unchanged(&deployment, &object, &want, None));
        assert!(!applied.unchanged(&deployment, &object, &want, Some(&meta("u2", 3, "100"))));
        // A different desired object.
        let other = serde_json::json!({ "spec": { "replicas": 3 } });
        assert!(!applied.unchanged(&deployment, &other, &want, Some(&returned)));
    }

    #[test]
    fn a_service_counts_any_change_of_its_resource_version() {
        let applied = Applied::default();
        let service = child(Kind::Service);
        let (object, want) = desired();
        applied.record(service.clone(), &object, &meta("u1", 1, "100"));
        assert!(applied.unchanged(&service, &object, &want, Some(&meta("u1", 1, "100"))));
        assert!(!applied.unchanged(&service, &object, &want, Some(&meta("u1", 1, "101"))));
    }

    #[test]
    fn an_edit_of_the_metadata_applies_again_and_a_gone_release_is_forgotten() {
        let applied = Applied::default();
        let deployment = child(Kind::Deployment);
        let (object, mut want) = desired();
        applied.record(deployment.clone(), &object, &meta("u1", 3, "100"));
        let mut edited = meta("u1", 3, "101");
        edited.labels = Some([("app".to_owned(), "other".to_owned())].into());
        assert!(
            !applied.unchanged(&deployment, &object, &want, Some(&edited)),
            "label changed"
        );
        let mut extra = meta("u1", 3, "101");
        extra
            .labels
            .get_or_insert_default()
            .insert("team".into(), "shop".into());
        assert!(
            applied.unchanged(&deployment, &object, &want, Some(&extra)),
            "a label of someone else's"
        );
        want.annotations = Some([("a".to_owned(), "1".to_owned())].into());
        assert!(
            !applied.unchanged(&deployment, &object, &want, Some(&extra)),
            "annotation removed"
        );

        applied.forget("prod", "other");
        assert_eq!(applied.len(), 1);
        applied.forget("prod", "lc");
        assert!(applied.is_empty());
    }
}
