//! Times as the API writes them in JSON: RFC 3339 in UTC with `Z` and as many fraction
//! digits as the time needs (none, 3, 6 or 9), which is what chrono's own `Serialize` writes.
//! chrono's goes through `collect_str`, where serde_json escapes every piece the formatter
//! writes (about a tenth of the API's CPU for a list of 20 items); here chrono writes the
//! text once and serde_json writes it as one string. Use with
//! `#[serde(serialize_with = "rfc3339::time")]` (or `rfc3339::time_or_none`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// A time, as chrono's `Serialize` writes it.
pub fn time<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A time that may be absent (`null`).
#[allow(clippy::ref_option)] // serde's `serialize_with` passes `&Option<T>`.
pub fn time_or_none<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => self::time(t, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use rand_core::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "super::time")] DateTime<Utc>);

    #[derive(serde::Serialize)]
    struct OursOrNone(#[serde(serialize_with = "super::time_or_none")] Option<DateTime<Utc>>);

    /// The same JSON as chrono's `Serialize` for times of every year chrono holds and every
    /// precision, drawn from a fixed seed (each failure names its time).
    #[test]
    fn writes_what_chronos_serialize_writes() {
        let mut rng = Pcg64::seed_from_u64(3339);
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp(),
        );
        let span = u64::try_from(max - min).unwrap();
        // Years 1970 to 2100, the times the API holds in practice, for half the draws.
        let until = 4_102_444_800_u64;
        for i in 0..20_000 {
            let secs = if i % 2 == 0 {
                i64::try_from(rng.next_u64() % until).unwrap()
            } else {
                min + i64::try_from(rng.next_u64() % span).unwrap()
            };
            let (secs, nanos) = match i % 5 {
                0 => (secs, 0),
                1 => (secs, (rng.next_u32() % 1000) * 1_000_000),
                2 => (secs, (rng.next_u32() % 1_000_000) * 1000),
                3 => (secs, rng.next_u32() % 1_000_000_000),
                // A leap second, as chrono represents it: the 59th second of a minute with
                // a second or more of nanoseconds.
                _ => (
                    secs - secs.rem_euclid(60) + 59,
                    1_000_000_000 + rng.next_u32() % 1_000_000_000,
                ),
            };
            let Some(time) = DateTime::from_timestamp(secs, nanos) else {
                continue;
            };
            let chrono = serde_json::to_string(&time).unwrap();
            assert_eq!(
                serde_json::to_string(&Ours(time)).unwrap(),
                chrono,
                "{time:?}"
            );
            assert_eq!(
                serde_json::to_string(&OursOrNone(Some(time))).unwrap(),
                chrono,
                "{time:?}"
            );
        }
        for edge in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
            DateTime::UNIX_EPOCH - TimeDelta::nanoseconds(1),
        ] {
            assert_eq!(
                serde_json::to_string(&Ours(edge)).unwrap(),
                serde_json::to_string(&edge).unwrap()
            );
        }
        assert_eq!(serde_json::to_string(&OursOrNone(None)).unwrap(), "null");
    }
}
