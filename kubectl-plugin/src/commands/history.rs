//! `history RELEASE`: the past attempts, newest first, from the release's status.

use std::process::ExitCode;

use listacompra_crds::status::HistoryEntry;

use super::Target;
use crate::cli::Output;
use crate::error::Result;
use crate::tree::elapsed;

/// Prints the release's history as a table or as JSON.
pub async fn run(target: &Target, output: Output) -> Result<ExitCode> {
    let release = target.release().await?;
    let history = release.status.map(|s| s.history).unwrap_or_default();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&history).unwrap_or_default()
        ),
        Output::Text => print!("{}", table(&history)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The history as aligned columns.
fn table(history: &[HistoryEntry]) -> String {
    let mut rows = vec![[
        "VERSION".to_owned(),
        "OUTCOME".to_owned(),
        "STARTED".to_owned(),
        "TOOK".to_owned(),
        "APPROVED BY".to_owned(),
        "REASON".to_owned(),
    ]];
    for entry in history {
        let took = entry
            .end_time
            .as_ref()
            .map_or_else(|| "-".to_owned(), |end| elapsed(&entry.start_time, end.0));
        let approvers: Vec<String> = entry
            .approvals
            .iter()
            .map(|a| format!("{} ({})", a.approver, a.role))
            .collect();
        let reason = match (&entry.reason, &entry.message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(reason), None) => reason.clone(),
            (None, _) => String::new(),
        };
        rows.push([
            entry.version.clone(),
            format!("{:?}", entry.outcome),
            entry.start_time.0.to_string(),
            took,
            if approvers.is_empty() {
                "-".to_owned()
            } else {
                approvers.join(", ")
            },
            reason,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c < 5 {
                out.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use listacompra_crds::approval::ApprovalRecord;
    use listacompra_crds::status::Outcome;

    use super::*;

    #[test]
    fn the_table_has_one_row_per_attempt_with_its_reason_and_approvers() {
        let start = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000);
        let entry = |version: &str, outcome, reason: Option<&str>| HistoryEntry {
            version: version.into(),
            schema_version: Some(4),
            start_time: Time(start),
            end_time: Some(Time(start + SignedDuration::from_secs(95))),
            outcome,
            reason: reason.map(str::to_owned),
            message: reason.map(|_| "KPI p95-latency-ms (912 > max 350)".to_owned()),
            approvals: vec![ApprovalRecord {
                role: "qa".into(),
                approver: "alice".into(),
                approval: "a".into(),
                approved_at: Time(start),
            }],
        };
        let text = table(&[
            entry("1.1.0", Outcome::RolledBack, Some("KpiBreached")),
            entry("1.0.0", Outcome::Succeeded, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("VERSION"), "{text}");
        assert!(
            lines[1].starts_with("1.1.0") && lines[1].contains("RolledBack"),
            "{text}"
        );
        assert!(
            lines[1].contains("1m35s") && lines[1].contains("alice (qa)"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("KpiBreached: KPI p95-latency-ms (912 > max 350)"),
            "{text}"
        );
        assert!(lines[2].contains("Succeeded"), "{text}");
    }
}
