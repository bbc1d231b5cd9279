//! Request parsing: the extracted request, JSON bodies and query parameters. Malformed input
//! is 400 and a wrong field 422, each naming the field.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use warp::http::{HeaderMap, Method};
use warp::hyper::body::Bytes;

use crate::domain::{Invalid, Role};
use crate::error::AppError;

/// One request, extracted.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The client address rate limits key on (see [`super::client_ip`]).
    pub(super) client: std::net::IpAddr,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Parses a JSON body; malformed JSON is 400 (`body`), a wrong or missing field is 422
/// naming it.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::BadRequest(Invalid::new(
            "body",
            "a JSON body is required",
        )));
    }
    // Syntax first (400), then shape (422): a body must be one JSON object.
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) if e.to_string().starts_with("number out of range") => {
            return Err(AppError::Invalid(out_of_range::<T>(body, &e)));
        }
        Err(e) => {
            return Err(AppError::BadRequest(Invalid::new(
                "body",
                format!("malformed JSON: {e}"),
            )));
        }
    };
    if !value.is_object() {
        return Err(AppError::Invalid(Invalid::new(
            "body",
            "must be a JSON object",
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let msg = err.into_inner().to_string();
        // serde_path_to_error's path ends at the parent of a missing field, and at the
        // field itself otherwise.
        let missing = msg
            .split_once("missing field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned());
        let field = match missing {
            Some(f) if path == "." => f,
            Some(f) => format!("{path}.{f}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        AppError::Invalid(Invalid::new(field, msg))
    })
}

/// Well-formed JSON with a number too large for a double: names the field it is in.
pub(super) fn out_of_range<T: DeserializeOwned>(body: &[u8], err: &serde_json::Error) -> Invalid {
    let mut de = serde_json::Deserializer::from_slice(body);
    let field = serde_path_to_error::deserialize::<_, T>(&mut de)
        .err()
        .map(|e| e.path().to_string())
        .filter(|p| p != ".")
        .unwrap_or_else(|| "body".to_owned());
    Invalid::new(field, err.to_string())
}

pub(super) fn query_i64(query: &str, name: &'static str) -> Result<Option<i64>, AppError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| AppError::BadRequest(Invalid::new(name, "must be an integer")));
        }
    }
    Ok(None)
}

/// Deserialises a present field (even `null`) as `Some(value)`; absent stays `None`.
pub(super) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    pub(super) email: String,
    pub(super) password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NameBody {
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShareBody {
    pub(super) email: String,
    #[serde(default = "member")]
    pub(super) role: Role,
}

pub(super) fn member() -> Role {
    Role::Member
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferBody {
    pub(super) user_id: Uuid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAttachmentBody {
    pub(super) name: String,
    pub(super) content_type: String,
    pub(super) size_bytes: i64,
    pub(super) sha256: String,
    #[serde(default)]
    pub(super) item_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewItemBody {
    pub(super) name: String,
    pub(super) quantity: Option<f64>,
    pub(super) unit: Option<String>,
    pub(super) category: Option<String>,
    pub(super) note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ItemPatchBody {
    #[serde(default, deserialize_with = "double_option")]
    pub(super) name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub(super) quantity: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub(super) unit: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub(super) category: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub(super) note: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub(super) checked: Option<Option<bool>>,
}

/// A field that may be absent but not `null`.
pub(super) fn not_null<T>(
    field: &'static str,
    value: Option<Option<T>>,
) -> Result<Option<T>, Invalid> {
    match value {
        Some(None) => Err(Invalid::new(field, "must not be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReorderBody {
    pub(super) item_ids: Vec<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let field = |body: &str| match parse_json::<NewItemBody>(body.as_bytes()) {
            Err(AppError::Invalid(i)) => (422, i.field),
            Err(AppError::BadRequest(i)) => (400, i.field),
            other => panic!("{other:?}"),
        };
        assert_eq!(field("{"), (400, "body".to_owned()));
        assert_eq!(field(""), (400, "body".to_owned()));
        assert_eq!(field(r#"{"name": "x"} x"#), (400, "body".to_owned()));
        assert_eq!(field("{}"), (422, "name".to_owned()));
        assert_eq!(field(r#"{"name": 3}"#), (422, "name".to_owned()));
        assert_eq!(
            field(r#"{"name": "x", "quantity": "2"}"#),
            (422, "quantity".to_owned())
        );
        assert_eq!(
            field(r#"{"name": "x", "colour": "red"}"#),
            (422, "colour".to_owned())
        );
        assert_eq!(field("[]"), (422, "body".to_owned()));
        assert_eq!(
            field(r#"{"name": "x", "quantity": 1e400}"#),
            (422, "quantity".to_owned())
        );
        assert_eq!(
            field(r#"{"name": "x", "note": -1e999}"#),
            (422, "note".to_owned())
        );
    }

    #[test]
    fn query_integers_are_named_when_bad() {
        assert_eq!(query_i64("limit=5&offset=2", "offset").unwrap(), Some(2));
        assert_eq!(query_i64("", "limit").unwrap(), None);
        assert!(
            matches!(query_i64("limit=x", "limit"), Err(AppError::BadRequest(i)) if i.field == "limit")
        );
    }
}
