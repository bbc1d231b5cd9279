//! What a settled release no longer needs: finished Jobs of earlier attempts beyond the last
//! few (kept for `kubectl logs`), and stable records beyond the last few. Pure: the
//! controller lists and deletes.

use std::collections::BTreeSet;

/// Finished Jobs of this many earlier attempts are kept.
pub const KEEP_ATTEMPTS: usize = 3;
/// Stable records (ControllerRevisions) kept besides the current stable version's.
pub const KEEP_REVISIONS: usize = 5;

/// A Job of the release, as cleanup sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Job name.
    pub name: String,
    /// Its attempt (label `listacompra.app/attempt`); none for Jobs from before attempts.
    pub attempt: Option<i64>,
    /// Whether it completed or failed.
    pub finished: bool,
}

/// The Jobs to delete: finished, not of the current attempt, and older than the newest
/// [`KEEP_ATTEMPTS`] earlier attempts. A running Job is never deleted here.
pub fn jobs_to_delete(jobs: &[JobSummary], current_attempt: i64) -> Vec<String> {
    let kept: BTreeSet<i64> = jobs
        .iter()
        .filter_map(|j| j.attempt)
        .filter(|a| *a != current_attempt)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .rev()
        .take(KEEP_ATTEMPTS)
        .collect();
    jobs.iter()
        .filter(|j| j.finished)
        .filter(|j| j.attempt != Some(current_attempt))
        .filter(|j| j.attempt.is_none_or(|a| !kept.contains(&a)))
        .map(|j| j.name.clone())
        .collect()
}

/// The stable records to delete: all but `stable` and the [`KEEP_REVISIONS`] newest, given
/// `(name, revision)` pairs.
pub fn revisions_to_delete(revisions: &[(String, i64)], stable: &str) -> Vec<String> {
    let mut others: Vec<&(String, i64)> = revisions.iter().filter(|(n, _)| n != stable).collect();
    others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    others
        .into_iter()
        .skip(KEEP_REVISIONS)
        .map(|(n, _)| n.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, attempt: Option<i64>, finished: bool) -> JobSummary {
        JobSummary {
            name: name.into(),
            attempt,
            finished,
        }
    }

    #[test]
    fn old_finished_jobs_go_the_current_and_recent_ones_stay() {
        let jobs = vec![
            job("a1-migrate", Some(1), true),
            job("a2-migrate", Some(2), true),
            job("a2-revert", Some(2), true),
            job("a3-migrate", Some(3), true),
            job("a4-migrate", Some(4), true),
            job("a5-migrate", Some(5), true),
            job("a6-migrate", Some(6), false),
            job("legacy", None, true),
            job("legacy-running", None, false),
        ];
        let mut gone = jobs_to_delete(&jobs, 6);
        gone.sort();
        assert_eq!(
            gone,
            vec!["a1-migrate", "a2-migrate", "a2-revert", "legacy"]
        );
        assert!(
            jobs_to_delete(&[job("a7", Some(7), true)], 7).is_empty(),
            "the current attempt's Jobs stay"
        );
    }

    #[test]
    fn the_stable_record_and_the_newest_stay() {
        let revisions: Vec<(String, i64)> = (1..=9).map(|i| (format!("r{i}"), i)).collect();
        let mut gone = revisions_to_delete(&revisions, "r2");
        gone.sort();
        assert_eq!(
            gone,
            vec!["r1", "r3", "r4"],
            "r2 is stable, r5..r9 the newest five"
        );
    }
}
