//! Watched objects kept packed: each one as its JSON text, LZ4-compressed, beside the few
//! metadata fields the watch machinery reads (name, namespace, uid, resourceVersion,
//! owners), and parsed into its typed form only when a reconcile reads it
//! ([`Packed::unpack`]).
//!
//! A typed object costs its whole struct even where it is empty: 3.8 KB for a release, 2.4 KB
//! for a Deployment (its pod template is inline), before a byte of its strings. Its text
//! without `managedFields` and without what a reconcile never reads ([`Pack::prune`]) is 3 KB
//! for a release with its status and 1 to 1.5 KB for a child. LZ4 alone roughly halves that
//! (JSON repeats its keys); with a dictionary per kind, the text of the first object of that
//! kind the process packed ([`dictionary`]), most of an object is a reference to the same
//! keys and values in another object, which the operator's children of one kind share. With
//! a thousand releases and their children in the caches, the typed stores were most of the
//! operator's heap (`heaptrack`, 2026-12-04: 16 of its 24 MiB at the peak of `make
//! bench-compare`'s 1,000 releases). A reconcile decompresses and parses the few objects it
//! reads, microseconds each.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{LazyLock, PoisonError, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The annotation `kubectl apply` (client-side) writes: a second copy of the whole object
/// as it was applied, never read by the operator.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A kind that can be kept packed.
pub trait Pack: Resource<DynamicType = ()> + DeserializeOwned + 'static {
    /// Drops from the object's JSON what a reconcile never reads (a pod template, say).
    /// What stays must still parse as `Self`.
    fn prune(_object: &mut Map<String, Value>) {}

    /// The names the object is looked up by without unpacking it ([`Packed::index`]; a
    /// release: the Secrets its pods consume), read from its JSON when it is packed.
    fn index(_object: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }
}

/// An object of kind `K` kept as its JSON text (see the module's documentation).
pub struct Packed<K> {
    /// Name, namespace, uid, resourceVersion and owner references: what the watch machinery
    /// reads (store keys, the owners a child wakes). The full metadata is in `json`.
    metadata: ObjectMeta,
    /// The object's JSON, LZ4-compressed with its kind's [`dictionary`] (with its length in
    /// front), without `managedFields`, [`LAST_APPLIED`] and what [`Pack::prune`] drops.
    json: Box<[u8]>,
    /// What [`Pack::index`] gave.
    index: Box<[Box<str>]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Pack> Packed<K> {
    /// Packs an object given as JSON.
    ///
    /// # Errors
    ///
    /// When it is not a JSON object or its metadata is malformed.
    pub fn pack(object: Value) -> serde_json::Result<Self> {
        let Value::Object(mut object) = object else {
            return Err(serde_json::Error::custom("an object is a JSON object"));
        };
        if let Some(Value::Object(meta)) = object.get_mut("metadata") {
            meta.remove("managedFields");
            if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                annotations.remove(LAST_APPLIED);
            }
        }
        K::prune(&mut object);
        let full = match object.get("metadata") {
            Some(meta) => ObjectMeta::deserialize(meta)?,
            None => ObjectMeta::default(),
        };
        let index = K::index(&object).into_iter().map(Into::into).collect();
        let metadata = ObjectMeta {
            name: full.name,
            namespace: full.namespace,
            uid: full.uid,
            resource_version: full.resource_version,
            owner_references: full.owner_references,
            ..ObjectMeta::default()
        };
        let json = serde_json::to_vec(&object)?;
        let dictionary = dictionary::<K>(&json);
        Ok(Self {
            metadata,
            json: lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary)
                .into_boxed_slice(),
            index,
            kind: PhantomData,
        })
    }

    /// The object, parsed.
    ///
    /// # Errors
    ///
    /// When its JSON is not a `K` (a release written against another version of the CRD).
    pub fn unpack(&self) -> serde_json::Result<K> {
        // Packed in this process, so its kind's dictionary was chosen then.
        let json =
            lz4_flex::block::decompress_size_prepended_with_dict(&self.json, dictionary::<K>(&[]))
                .map_err(|e| serde_json::Error::custom(format!("a packed object: {e}")))?;
        serde_json::from_slice(&json)
    }

    /// The names [`Pack::index`] gave when it was packed.
    pub fn index(&self) -> &[Box<str>] {
        &self.index
    }
}

impl<'de, K: Pack> Deserialize<'de> for Packed<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::pack(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            json: self.json.clone(),
            index: self.index.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("name", &self.metadata.name)
            .field("namespace", &self.metadata.namespace)
            .field("bytes", &self.json.len())
            .finish_non_exhaustive()
    }
}

impl<K: Pack> Resource for Packed<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The most of an object's text a dictionary keeps (a release with its status and history is
/// about 3 KB; LZ4 refers up to 64 KB back).
const DICTIONARY_MAX: usize = 8 * 1024;

/// The dictionary kind `K` is compressed with: the text of the first object of that kind this
/// process packed (`first`, when there is none yet), at most [`DICTIONARY_MAX`] bytes, kept
/// for the process's life (one per kind). A different object makes a worse dictionary,
/// never a wrong one: what is packed with it is unpacked with it.
fn dictionary<K: 'static>(first: &[u8]) -> &'static [u8] {
    static DICTIONARIES: LazyLock<RwLock<HashMap<TypeId, &'static [u8]>>> =
        LazyLock::new(RwLock::default);
    let kind = TypeId::of::<K>();
    if let Some(dictionary) = DICTIONARIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&kind)
    {
        return dictionary;
    }
    DICTIONARIES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(kind)
        .or_insert_with(|| Box::leak(first[..first.len().min(DICTIONARY_MAX)].into()))
}

/// Replaces the object's `spec.<field>` with `{}` (a required field: it must stay an object).
pub fn empty_spec_field(object: &mut Map<String, Value>, field: &str) {
    if let Some(Value::Object(spec)) = object.get_mut("spec")
        && spec.contains_key(field)
    {
        spec.insert(field.to_owned(), Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_packed_object_unpacks_to_itself_without_managed_fields_or_last_applied() {
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "lc",
                "namespace": "shop",
                "uid": "u-1",
                "resourceVersion": "42",
                "labels": { "app": "lc" },
                "annotations": { LAST_APPLIED: "{\"big\": true}", "keep": "me" },
                "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
                "ownerReferences": [{
                    "apiVersion": "listacompra.app/v1alpha1", "kind": "ListaCompraRelease",
                    "name": "lc", "uid": "r-1", "controller": true
                }]
            },
            "spec": { "ports": [{ "port": 80 }], "selector": { "app": "lc" } }
        });
        let packed = Packed::<Service>::pack(service.clone()).expect("packs");
        let unpacked = packed.unpack().expect("unpacks");
        let mut expected: Service = serde_json::from_value(service).expect("a Service");
        expected.metadata.managed_fields = None;
        expected.annotations_mut().remove(LAST_APPLIED);
        assert_eq!(unpacked, expected);
        // What the watch machinery reads is at hand without unpacking.
        assert_eq!(packed.name_any(), "lc");
        assert_eq!(packed.namespace().as_deref(), Some("shop"));
        assert_eq!(packed.resource_version().as_deref(), Some("42"));
        assert_eq!(packed.owner_references().len(), 1);
        assert!(packed.labels().is_empty(), "labels stay in the text only");
        // And it deserializes the same way from a watch event's bytes.
        let text = serde_json::to_string(&expected).expect("JSON");
        let from_bytes: Packed<Service> = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(from_bytes.unpack().expect("unpacks"), expected);
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(Packed::<Service>::pack(json!([1, 2])).is_err());
        assert!(Packed::<Service>::pack(json!({ "metadata": { "name": 3 } })).is_err());
        // Without metadata, as the typed object would: empty metadata.
        let bare = Packed::<Service>::pack(json!({ "spec": {} })).expect("packs");
        assert_eq!(
            bare.unpack().expect("unpacks").metadata,
            ObjectMeta::default()
        );
    }

    /// A kind packed by no other test, so that its dictionary is this test's.
    impl Pack for ConfigMap {}

    /// Objects of one kind share their kind's dictionary, the first one packed: another of
    /// that kind packs to a fraction of its LZ4 size alone, and unpacks to itself.
    #[test]
    fn the_first_object_of_a_kind_is_the_dictionary_of_the_others() {
        let map = |name: &str, version: &str| {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": "shop",
                    "uid": format!("uid-of-{name}"),
                    "resourceVersion": version,
                    "labels": {
                        "app.kubernetes.io/managed-by": "listacompra-operator",
                        "app.kubernetes.io/name": "listacompra-api",
                        "listacompra.app/release": name,
                    },
                },
                "data": { "settings": "a rather long value that every object of the kind repeats" },
            })
        };
        let first = Packed::<ConfigMap>::pack(map("lc-first", "1")).expect("packs");
        let second = map("lc-second", "2");
        let packed = Packed::<ConfigMap>::pack(second.clone()).expect("packs");
        let alone = lz4_flex::compress_prepend_size(&serde_json::to_vec(&second).expect("JSON"));
        assert!(
            packed.json.len() * 2 < alone.len(),
            "{} bytes with the dictionary, {} without",
            packed.json.len(),
            alone.len()
        );
        let unpacked = serde_json::to_value(packed.unpack().expect("unpacks")).expect("JSON");
        assert_eq!(unpacked, second);
        assert_eq!(
            first.unpack().expect("unpacks").metadata.name.as_deref(),
            Some("lc-first")
        );
    }
}
