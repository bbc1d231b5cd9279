//! Validation of input: each failure names the field and what is wrong.

use uuid::Uuid;

use super::{MAX_SUGGESTIONS, Suggestion};

/// A validation failure naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field (JSON name, or a path or query parameter name).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    /// A failure of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn trimmed_text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Invalid> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => trimmed_text(field, v, max).map(Some),
    }
}

/// Validates an e-mail address (shape only) and normalises it to lower case.
pub fn email(value: &str) -> Result<String, Invalid> {
    let v = value.trim().to_lowercase();
    let valid = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(v)
    } else {
        Err(Invalid::new("email", "must be an e-mail address"))
    }
}

/// Validates a new password: 8 to 128 characters.
pub fn password(value: &str) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n < 8 {
        return Err(Invalid::new("password", "must be at least 8 characters"));
    }
    if n > 128 {
        return Err(Invalid::new("password", "must be at most 128 characters"));
    }
    Ok(())
}

/// Validates a list name: 1 to 100 characters after trimming.
pub fn list_name(value: &str) -> Result<String, Invalid> {
    trimmed_text("name", value, 100)
}

/// Largest accepted quantity.
pub const MAX_QUANTITY: f64 = 100_000.0;

/// A validated item, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFields {
    /// Name, 1..=200 characters.
    pub name: String,
    /// Quantity, > 0 and at most [`MAX_QUANTITY`].
    pub quantity: f64,
    /// Unit (`kg`, `l`, ...), up to 20 characters.
    pub unit: Option<String>,
    /// Category (`dairy`, ...), up to 50 characters.
    pub category: Option<String>,
    /// Free note, up to 500 characters.
    pub note: Option<String>,
}

/// Validates a quantity.
pub fn quantity(value: f64) -> Result<f64, Invalid> {
    if value.is_finite() && value > 0.0 && value <= MAX_QUANTITY {
        Ok(value)
    } else {
        Err(Invalid::new(
            "quantity",
            format!("must be a number greater than 0 and at most {MAX_QUANTITY}"),
        ))
    }
}

/// Validates the fields of a new item.
pub fn new_item(
    name: &str,
    qty: Option<f64>,
    unit: Option<&str>,
    category: Option<&str>,
    note: Option<&str>,
) -> Result<ItemFields, Invalid> {
    Ok(ItemFields {
        name: trimmed_text("name", name, 200)?,
        quantity: quantity(qty.unwrap_or(1.0))?,
        unit: optional_text("unit", unit, 20)?,
        category: optional_text("category", category, 50)?.map(|c| c.to_lowercase()),
        note: optional_text("note", note, 500)?,
    })
}

/// Model output checked like user input: each suggestion's name, category and reason go
/// through the rules of an item's name, category and note (no control characters such as
/// NUL, length caps; the reason's line breaks and tabs become spaces), names are lower-cased;
/// invalid entries and repeated names are dropped, and at most [`MAX_SUGGESTIONS`] are kept.
/// Returns the valid suggestions and how many entries were dropped as invalid.
pub fn validate_suggestions(raw: Vec<Suggestion>) -> (Vec<Suggestion>, usize) {
    let mut valid: Vec<Suggestion> = Vec::new();
    let mut invalid = 0;
    for s in raw {
        let reason = s.reason.split_whitespace().collect::<Vec<_>>().join(" ");
        let checked = trimmed_text("name", &s.name, 200).and_then(|name| {
            Ok(Suggestion {
                name: name.to_lowercase(),
                category: optional_text("category", s.category.as_deref(), 50)?
                    .map(|c| c.to_lowercase()),
                reason: optional_text("reason", Some(&reason), 500)?.unwrap_or_default(),
            })
        });
        match checked {
            Ok(ok) if valid.iter().any(|v| v.name == ok.name) => {}
            Ok(ok) if valid.len() < MAX_SUGGESTIONS => valid.push(ok),
            Ok(_) => {}
            Err(_) => invalid += 1,
        }
    }
    (valid, invalid)
}

/// A partial update of an item; `None` keeps the stored value, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemPatch {
    /// New name.
    pub name: Option<String>,
    /// New quantity.
    pub quantity: Option<f64>,
    /// New unit.
    pub unit: Option<Option<String>>,
    /// New category.
    pub category: Option<Option<String>>,
    /// New note.
    pub note: Option<Option<String>>,
    /// Checked or not.
    pub checked: Option<bool>,
}

impl ItemPatch {
    /// The patch with each given field validated and normalised (trimmed text, lower-case
    /// category); an empty patch is refused.
    pub fn validated(&self) -> Result<Self, Invalid> {
        let patch = Self {
            name: self
                .name
                .as_deref()
                .map(|n| trimmed_text("name", n, 200))
                .transpose()?,
            quantity: self.quantity.map(quantity).transpose()?,
            unit: self
                .unit
                .as_ref()
                .map(|u| optional_text("unit", u.as_deref(), 20))
                .transpose()?,
            category: self
                .category
                .as_ref()
                .map(|c| {
                    optional_text("category", c.as_deref(), 50).map(|c| c.map(|c| c.to_lowercase()))
                })
                .transpose()?,
            note: self
                .note
                .as_ref()
                .map(|n| optional_text("note", n.as_deref(), 500))
                .transpose()?,
            checked: self.checked,
        };
        if patch == Self::default() {
            return Err(Invalid::new("body", "no field to change"));
        }
        Ok(patch)
    }
}

/// Checks that `order` names each of `existing` exactly once.
pub fn reorder(existing: &[Uuid], order: &[Uuid]) -> Result<(), Invalid> {
    let mut a = existing.to_vec();
    let mut b = order.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    if b.windows(2).any(|w| w[0] == w[1]) {
        return Err(Invalid::new("item_ids", "names an item twice"));
    }
    if a != b {
        return Err(Invalid::new(
            "item_ids",
            "must name every item of the list exactly once",
        ));
    }
    Ok(())
}

/// Pagination of "my lists".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many (1..=100, default 20).
    pub limit: i64,
    /// Skip this many (>= 0).
    pub offset: i64,
}

impl Page {
    /// Validates the query parameters.
    pub fn new(limit: Option<i64>, offset: Option<i64>) -> Result<Self, Invalid> {
        let limit = limit.unwrap_or(20);
        let offset = offset.unwrap_or(0);
        if !(1..=100).contains(&limit) {
            return Err(Invalid::new("limit", "must be between 1 and 100"));
        }
        if !(0..=1_000_000).contains(&offset) {
            return Err(Invalid::new("offset", "must be between 0 and 1000000"));
        }
        Ok(Self { limit, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_bad_ones_named() {
        assert_eq!(email("  Ana@Example.COM ").unwrap(), "ana@example.com");
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.es",
            "ana@localhost",
            "a b@x.es",
            "ana@.es",
        ] {
            assert_eq!(email(bad).unwrap_err().field, "email", "{bad}");
        }
    }

    #[test]
    fn passwords_need_eight_to_128_characters() {
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
        assert!(password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn item_fields_are_validated_one_by_one() {
        let ok = new_item(" Leche ", Some(2.0), Some("l"), Some("Dairy"), None).unwrap();
        assert_eq!(ok.name, "Leche");
        assert_eq!(ok.category.as_deref(), Some("dairy"));
        assert_eq!(
            new_item("", None, None, None, None).unwrap_err().field,
            "name"
        );
        for q in [0.0, -1.0, f64::NAN, 1e9] {
            assert_eq!(
                new_item("x", Some(q), None, None, None).unwrap_err().field,
                "quantity"
            );
        }
        let long = "u".repeat(21);
        assert_eq!(
            new_item("x", None, Some(&long), None, None)
                .unwrap_err()
                .field,
            "unit"
        );
        let long = "n".repeat(501);
        assert_eq!(
            new_item("x", None, None, None, Some(&long))
                .unwrap_err()
                .field,
            "note"
        );
        assert_eq!(ItemPatch::default().validated().unwrap_err().field, "body");
        let clear = ItemPatch {
            unit: Some(None),
            checked: Some(true),
            ..ItemPatch::default()
        }
        .validated()
        .unwrap();
        assert_eq!(clear.unit, Some(None));
    }

    #[test]
    fn model_output_is_validated_like_user_input() {
        let s = |name: &str, category: Option<&str>, reason: &str| Suggestion {
            name: name.to_owned(),
            category: category.map(str::to_owned),
            reason: reason.to_owned(),
        };
        let mut raw = vec![
            s("tomato\u{0}sauce", None, "nul"),
            s("bell\u{7}pepper", None, "bell"),
            s(&"x".repeat(201), None, "long"),
            s("basil", Some(&"c".repeat(51)), "long category"),
            s("olives", None, "bad \u{0} reason"),
            s("  ", None, "empty"),
            s(" Parmesan ", Some("Dairy"), "on the\npasta"),
            s("parmesan", None, "again"),
        ];
        raw.extend((0..20).map(|i| s(&format!("extra {i}"), None, "")));
        let (valid, invalid) = validate_suggestions(raw);
        assert_eq!(invalid, 6);
        assert_eq!(valid.len(), MAX_SUGGESTIONS);
        assert_eq!(valid[0], s("parmesan", Some("dairy"), "on the pasta"));
        assert_eq!(valid[1].name, "extra 0");
    }

    #[test]
    fn reorder_needs_every_item_once() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(reorder(&[a, b], &[b, a]).is_ok());
        assert!(reorder(&[a, b], &[a]).is_err());
        assert!(reorder(&[a, b], &[a, a]).is_err());
        assert!(reorder(&[a], &[a, b]).is_err());
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(
            Page::new(None, None).unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(Page::new(Some(0), None).unwrap_err().field, "limit");
        assert_eq!(Page::new(None, Some(-1)).unwrap_err().field, "offset");
    }
}
