//! A value already written as JSON, served as it is.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A `T` already written as JSON, byte for byte as serde_json writes `T` (a list's items,
/// written by the database in one query): answered without being turned into a `T` and
/// written again (only checked to be JSON). It is the value as the API answers it, which is
/// all a list read needs; [`Rendered::parse`] gives the `T` back.
pub struct Rendered<T> {
    json: Box<RawValue>,
    of: PhantomData<fn() -> T>,
}

impl<T: Serialize> Rendered<T> {
    /// Writes `value`.
    pub fn of(value: &T) -> serde_json::Result<Self> {
        Ok(Self {
            json: serde_json::value::to_raw_value(value)?,
            of: PhantomData,
        })
    }
}

impl<T> Rendered<T> {
    /// JSON written elsewhere in `T`'s exact form; refused when it is not JSON at all. The
    /// writer is responsible for the form: PostgreSQL's for a list's items is tested byte for
    /// byte against serde_json's (`tests/list_json.rs`).
    pub(crate) fn trusted(json: String) -> serde_json::Result<Self> {
        Ok(Self {
            json: RawValue::from_string(json)?,
            of: PhantomData,
        })
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// Reads the `T` back (tests, and whoever needs the values rather than the answer).
    pub fn parse(&self) -> serde_json::Result<T>
    where
        T: DeserializeOwned,
    {
        serde_json::from_str(self.json.get())
    }
}

impl<T> Serialize for Rendered<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

impl<T> Clone for Rendered<T> {
    fn clone(&self) -> Self {
        Self {
            json: self.json.clone(),
            of: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Rendered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Rendered").field(&self.json.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_value_serializes_as_its_json_inside_another_value() {
        #[derive(Serialize)]
        struct Outer {
            #[serde(flatten)]
            head: std::collections::BTreeMap<&'static str, u8>,
            items: Rendered<Vec<f64>>,
        }
        let outer = Outer {
            head: [("a", 1)].into(),
            items: Rendered::trusted("[1.0,2.5e-7]".to_owned()).unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&outer).unwrap(),
            r#"{"a":1,"items":[1.0,2.5e-7]}"#
        );
        assert_eq!(outer.items.parse().unwrap(), vec![1.0, 2.5e-7]);
        assert_eq!(
            Rendered::of(&vec![1.0_f64]).unwrap().json(),
            "[1.0]",
            "written as serde_json writes it"
        );
    }

    #[test]
    fn what_is_not_json_is_refused() {
        assert!(Rendered::<Vec<u8>>::trusted("[1,".to_owned()).is_err());
    }
}
