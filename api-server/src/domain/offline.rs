//! The offline suggestion rule: deterministic suggestions from a list's items and
//! categories, used when no AI provider key is configured.

use super::{ItemSummary, Suggestion};

/// How many suggestions a request yields at most.
pub const MAX_SUGGESTIONS: usize = 8;

/// Things that usually go together, by category and by item.
const PAIRINGS: &[(&str, &[(&str, &str)])] = &[
    (
        "dairy",
        &[
            ("butter", "dairy"),
            ("yogurt", "dairy"),
            ("cheese", "dairy"),
        ],
    ),
    (
        "bakery",
        &[("butter", "dairy"), ("jam", "pantry"), ("bread", "bakery")],
    ),
    (
        "produce",
        &[
            ("lemons", "produce"),
            ("onions", "produce"),
            ("garlic", "produce"),
        ],
    ),
    (
        "fruit",
        &[
            ("bananas", "fruit"),
            ("apples", "fruit"),
            ("oranges", "fruit"),
        ],
    ),
    (
        "vegetables",
        &[
            ("olive oil", "pantry"),
            ("onions", "produce"),
            ("garlic", "produce"),
        ],
    ),
    (
        "meat",
        &[
            ("olive oil", "pantry"),
            ("garlic", "produce"),
            ("potatoes", "produce"),
        ],
    ),
    (
        "fish",
        &[
            ("lemons", "produce"),
            ("parsley", "produce"),
            ("rice", "pantry"),
        ],
    ),
    (
        "pantry",
        &[("salt", "pantry"), ("rice", "pantry"), ("pasta", "pantry")],
    ),
    (
        "drinks",
        &[
            ("water", "drinks"),
            ("coffee", "drinks"),
            ("juice", "drinks"),
        ],
    ),
    (
        "cleaning",
        &[
            ("sponges", "cleaning"),
            ("dish soap", "cleaning"),
            ("bin bags", "cleaning"),
        ],
    ),
    (
        "pasta",
        &[
            ("tomato sauce", "pantry"),
            ("parmesan", "dairy"),
            ("basil", "produce"),
        ],
    ),
    (
        "milk",
        &[
            ("cereal", "pantry"),
            ("coffee", "drinks"),
            ("cookies", "bakery"),
        ],
    ),
    (
        "leche",
        &[
            ("cereales", "pantry"),
            ("café", "drinks"),
            ("galletas", "bakery"),
        ],
    ),
    (
        "pan",
        &[
            ("mantequilla", "dairy"),
            ("mermelada", "pantry"),
            ("aceite de oliva", "pantry"),
        ],
    ),
    (
        "huevos",
        &[
            ("patatas", "produce"),
            ("cebolla", "produce"),
            ("aceite de oliva", "pantry"),
        ],
    ),
    (
        "eggs",
        &[("bacon", "meat"), ("bread", "bakery"), ("milk", "dairy")],
    ),
];

/// Staples suggested when nothing else matches.
const STAPLES: &[(&str, &str)] = &[
    ("milk", "dairy"),
    ("bread", "bakery"),
    ("eggs", "dairy"),
    ("rice", "pantry"),
    ("bananas", "fruit"),
];

/// The offline provider's rule: deterministic suggestions from the list's items and
/// categories, never repeating something already on the list, at most `max`.
pub fn offline_suggestions(items: &[ItemSummary], max: usize) -> Vec<Suggestion> {
    let have: Vec<String> = items.iter().map(|i| i.name.trim().to_lowercase()).collect();
    let mut out: Vec<Suggestion> = Vec::new();
    let push = |name: &str, category: &str, reason: String, out: &mut Vec<Suggestion>| {
        if out.len() < max && !have.iter().any(|h| h == name) && !out.iter().any(|s| s.name == name)
        {
            out.push(Suggestion {
                name: name.to_owned(),
                category: Some(category.to_owned()),
                reason,
            });
        }
    };
    for item in items {
        let keys = [
            Some(item.name.trim().to_lowercase()),
            item.category.as_ref().map(|c| c.trim().to_lowercase()),
        ];
        for key in keys.iter().flatten() {
            if let Some((_, pairs)) = PAIRINGS.iter().find(|(k, _)| k == key) {
                for (name, category) in *pairs {
                    push(
                        name,
                        category,
                        format!("goes well with {}", item.name.trim()),
                        &mut out,
                    );
                }
            }
        }
    }
    for (name, category) in STAPLES {
        push(
            name,
            category,
            "a staple of most shopping lists".to_owned(),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_suggestions_are_deterministic_and_skip_what_is_listed() {
        let items = vec![
            ItemSummary {
                name: "Pasta".to_owned(),
                category: Some("pantry".to_owned()),
            },
            ItemSummary {
                name: "salt".to_owned(),
                category: None,
            },
        ];
        let a = offline_suggestions(&items, 5);
        assert_eq!(a, offline_suggestions(&items, 5));
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].name, "tomato sauce");
        assert!(a.iter().all(|s| s.name != "salt" && s.name != "pasta"));
        let staples = offline_suggestions(&[], 3);
        assert_eq!(
            staples.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["milk", "bread", "eggs"]
        );
    }
}
