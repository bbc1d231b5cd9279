//! SQL expressions that write a column as JSON byte for byte as serde_json writes the
//! domain's value of it, so that the database's JSON of a list's items and members is
//! answered without being parsed and written again ([`crate::domain::Rendered`]).
//!
//! Checked against serde_json in `tests/list_json.rs`: byte for byte for every double below
//! 2^53 in magnitude (the API's quantities are at most 10^5), zeros, NaN and the infinities,
//! and timestamps of years 1 to 9999; above 2^53 PostgreSQL may write a 17th digit where
//! serde_json stops at 16, the same double. A timestamp outside those years (the API writes
//! none: they come from `now()`) cannot be written as chrono would: it makes its array NULL,
//! which the API reports as an error, as it did when it parsed the database's JSON.

/// `{"k1":v1,...}` from `(key, JSON expression)` pairs, the keys in serde's field order.
pub(super) fn object(fields: &[(&str, String)]) -> String {
    let mut sql = String::from("'{");
    for (n, (key, value)) in fields.iter().enumerate() {
        let comma = if n == 0 { "" } else { "," };
        sql.push_str(&format!("{comma}\"{key}\":' || {value} || '"));
    }
    sql.push_str("}'");
    sql
}

/// `[e1,e2,...]` of the JSON expression `element` over the rows of `from`, in `order`; NULL
/// when an element is NULL (a value it cannot write), never an array without it.
pub(super) fn array(element: &str, from: &str, order: &str) -> String {
    format!(
        "(SELECT CASE WHEN every(element IS NOT NULL) IS NOT FALSE THEN \
           '[' || coalesce(string_agg(element, ',' ORDER BY {order}), '') || ']' END \
         FROM (SELECT {element} AS element, * FROM {from}) AS elements)"
    )
}

/// A text column, possibly NULL: a JSON string (PostgreSQL escapes exactly the characters
/// serde_json escapes, in the same forms: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and
/// `\u00xx` with lowercase hex for the other control characters), or `null`.
pub(super) fn text(column: &str) -> String {
    format!("coalesce(to_json({column})::text, 'null')")
}

/// A UUID column: `"8-4-4-4-12"`, lowercase, as the `uuid` crate writes it.
pub(super) fn uuid(column: &str) -> String {
    format!("'\"' || {column}::text || '\"'")
}

/// A boolean or integer column: PostgreSQL's text is JSON's (`true`, `-12`).
pub(super) fn plain(column: &str) -> String {
    format!("{column}::text")
}

/// A `timestamptz` column as chrono writes a `DateTime<Utc>` (RFC 3339 in UTC with `Z`, and
/// no fraction, milliseconds or microseconds: the fewest of those that are exact); NULL
/// outside years 1 to 9999 (and for the infinities), where chrono writes the year otherwise.
/// The colons are quoted literals of the format (`":"MI`): a colon before a letter or a
/// digit would be a variable to pgbench, which runs this query in `make bench-compare`.
pub(super) fn timestamp(column: &str) -> String {
    format!(
        "CASE WHEN date_part('year', {column} AT TIME ZONE 'UTC') BETWEEN 1 AND 9999 \
           THEN '\"' || regexp_replace(to_char({column} AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24\":\"MI\":\"SS.US'), '(\\.000)?000$', '') || 'Z\"' END"
    )
}

/// A `double precision` column as serde_json writes an `f64`: `null` for NaN and the
/// infinities, else Ryu's shortest digits (PostgreSQL's too since version 12, with
/// `extra_float_digits` above 0: sqlx sets 2) laid out as serde_json lays them out.
pub(super) fn number(column: &str) -> String {
    let magnitude = magnitude(&format!("abs({column})"));
    format!(
        "CASE \
           WHEN {column} IN ('NaN', 'Infinity', '-Infinity') THEN 'null' \
           WHEN {column} = 0 THEN {column}::text || '.0' \
           ELSE CASE WHEN {column} < 0 THEN '-' ELSE '' END || {magnitude} \
         END"
    )
}

/// A positive finite `double precision` as serde_json writes it, from PostgreSQL's text of
/// it (the same digits): serde_json writes decimals from 1e-5 to below 1e16 (`1.0` for
/// one, `0.00001`), PostgreSQL from 1e-4 to below 1e15 (`1`), and their negative exponents
/// differ in form (`1.5e-6` against `1.5e-06`; both write `1e+16`).
fn magnitude(value: &str) -> String {
    let text = format!("{value}::text");
    let digits = format!("replace(split_part({text}, 'e', 1), '.', '')");
    format!(
        "CASE \
           WHEN {value} >= 1e-4::float8 AND {value} < 1e15::float8 THEN \
             CASE WHEN {value} = trunc({value}) THEN {text} || '.0' ELSE {text} END \
           WHEN {value} >= 1e-5::float8 AND {value} < 1e-4::float8 THEN '0.0000' || {digits} \
           WHEN {value} < 1e-5::float8 THEN replace({text}, 'e-0', 'e-') \
           WHEN {value} < 1e16::float8 THEN \
             CASE WHEN length({digits}) <= 16 THEN rpad({digits}, 16, '0') || '.0' \
                  ELSE left({digits}, 16) || '.' || substr({digits}, 17) END \
           ELSE {text} \
         END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colon_precedes_a_name_which_pgbench_would_take_for_a_variable() {
        let sql = crate::store::LIST_DETAIL_QUERY.as_str();
        let bytes = sql.as_bytes();
        for (at, pair) in bytes.windows(2).enumerate() {
            let before = at.checked_sub(1).map(|b| bytes[b]);
            assert!(
                !(pair[0] == b':'
                    && before != Some(b':')
                    && (pair[1].is_ascii_alphanumeric() || pair[1] == b'_' || pair[1] >= 0x80)),
                "a pgbench variable at {at} in {sql}"
            );
        }
    }

    #[test]
    fn an_object_lists_its_fields_in_order() {
        assert_eq!(
            object(&[("a", plain("x")), ("b", text("y"))]),
            r#"'{"a":' || x::text || ',"b":' || coalesce(to_json(y)::text, 'null') || '}'"#
        );
    }
}
