//! Status conditions that follow the Kubernetes API conventions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_`. `lastTransitionTime` moves only when the status really changes;
/// reason, message and observedGeneration are kept current.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message;
            existing.observed_generation = Some(generation);
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time: now.clone(),
            observed_generation: Some(generation),
        }),
    }
}

/// The condition of `type_`, if set.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when condition `type_` is set with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t0 = Time(Timestamp::UNIX_EPOCH);
        let t1 = Time(Timestamp::UNIX_EPOCH + SignedDuration::from_secs(60));
        let t2 = Time(Timestamp::UNIX_EPOCH + SignedDuration::from_secs(120));
        let mut cs = Vec::new();
        set(&mut cs, "Ready", false, "Migrating", "m", 1, &t0);
        set(&mut cs, "Ready", false, "RollingOut", "r", 2, &t1);
        assert_eq!(cs[0].last_transition_time, t0);
        assert_eq!(
            (cs[0].reason.as_str(), cs[0].observed_generation),
            ("RollingOut", Some(2))
        );
        set(&mut cs, "Ready", true, "Serving", "s", 2, &t2);
        assert_eq!(cs[0].last_transition_time, t2);
        assert!(is_true(&cs, "Ready"));
        assert_eq!(cs.len(), 1);
    }
}
