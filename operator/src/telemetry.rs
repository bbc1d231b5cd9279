//! The operator's own metrics (served on `/metrics`) and log set-up.

use std::collections::HashMap;
use std::sync::Mutex;

use listacompra_crds::Phase;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::backups::{BackupKind, BackupSeries};
use crate::decide::phase_name;

/// Names of the operator's metrics, named once: registration uses them, and so do the alert
/// rules and dashboards in `config/` (a test checks those against [`names::ALL`]).
pub mod names {
    /// Counter of reconciles, labelled `result` (`ok`, `error`).
    pub const RECONCILES_TOTAL: &str = "listacompra_operator_reconciles_total";
    /// Counter of reconcile errors, labelled `reason` (`conflict`, `kube_api`, `secret`,
    /// `invalid_object`).
    pub const RECONCILE_ERRORS_TOTAL: &str = "listacompra_operator_reconcile_errors_total";
    /// Histogram of the duration of one reconcile, in seconds.
    pub const RECONCILE_DURATION_SECONDS: &str = "listacompra_operator_reconcile_duration_seconds";
    /// Gauge of releases by `phase` (counts over every release this replica reconciles).
    pub const RELEASES: &str = "listacompra_operator_releases";
    /// Gauge, 1 per release for its current phase: labels `namespace`, `release`, `phase`
    /// and `version` (the version of the current or last attempt, the one being released or
    /// rolled back, so an alert can name it). A release has exactly one series; it moves to
    /// other labels when the phase or the version changes, so `for:` in an alert measures the
    /// time spent in one phase.
    pub const RELEASE_PHASE: &str = "listacompra_operator_release_phase";
    /// Counter of rollbacks started, labelled `reason` (the Degraded condition's reason).
    pub const ROLLBACKS_TOTAL: &str = "listacompra_operator_rollbacks_total";
    /// Counter of gate checks, labelled `gate` (`health`, `smoke`, `kpi`) and `verdict`.
    pub const GATE_VERDICTS_TOTAL: &str = "listacompra_operator_gate_verdicts_total";
    /// Gauge of the last measured value of a KPI: labels `namespace`, `release`, `kpi`.
    pub const KPI_VALUE: &str = "listacompra_operator_kpi_value";
    /// Counter of writes to the Kubernetes API, labelled `kind`.
    pub const API_WRITES_TOTAL: &str = "listacompra_operator_api_writes_total";
    /// Counter of reads from the Kubernetes API (not from the watch caches), labelled `kind`.
    pub const API_READS_TOTAL: &str = "listacompra_operator_api_reads_total";
    /// Gauge, 1 while this replica holds the leader Lease (or runs without leader election),
    /// 0 while it waits. Every replica exports it from start-up.
    pub const LEADER: &str = "listacompra_operator_leader";
    /// Gauge: when the newest successful backup of a kind finished (Unix seconds), per
    /// release with `spec.backups`: labels `namespace`, `release`, `type` (`full`, `incr`).
    /// Absent until one has succeeded.
    pub const BACKUP_LAST_SUCCESS: &str =
        "listacompra_operator_backup_last_success_timestamp_seconds";
    /// Gauge: when a kind of backup was first scheduled (its CronJob created, Unix seconds):
    /// the age of a schedule that never succeeded counts from here. Same labels.
    pub const BACKUP_SCHEDULED: &str = "listacompra_operator_backup_scheduled_timestamp_seconds";
    /// Gauge: `spec.backups.<kind>.maxAgeSeconds`, the age past which the alert
    /// `ListaCompraBackupTooOld` fires. Same labels.
    pub const BACKUP_MAX_AGE: &str = "listacompra_operator_backup_max_age_seconds";
    /// Counter of restores (`ListaCompraRestore`) that ended, labelled `outcome`
    /// (`succeeded`, `failed`, `refused`).
    pub const RESTORES_TOTAL: &str = "listacompra_operator_restores_total";
    /// Histogram of how long each step of a restore took, in seconds, labelled `step`
    /// (`StoppingTraffic`, ..., `SmokeTesting`): `make bench-backups`' restore times, live.
    pub const RESTORE_STEP_SECONDS: &str = "listacompra_operator_restore_step_seconds";

    /// Every metric name above.
    pub const ALL: &[&str] = &[
        RECONCILES_TOTAL,
        RECONCILE_ERRORS_TOTAL,
        RECONCILE_DURATION_SECONDS,
        RELEASES,
        RELEASE_PHASE,
        ROLLBACKS_TOTAL,
        GATE_VERDICTS_TOTAL,
        KPI_VALUE,
        API_WRITES_TOTAL,
        API_READS_TOTAL,
        LEADER,
        BACKUP_LAST_SUCCESS,
        BACKUP_SCHEDULED,
        BACKUP_MAX_AGE,
        RESTORES_TOTAL,
        RESTORE_STEP_SECONDS,
    ];
}

/// Metrics of the operator, registered in their own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by result (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile errors by reason.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration.
    pub reconcile_duration: HistogramVec,
    /// Releases by phase.
    releases: IntGaugeVec,
    /// The current phase of each release.
    release_phase: IntGaugeVec,
    /// Rollbacks by reason.
    pub rollbacks: IntCounterVec,
    /// Gate verdicts by gate and verdict.
    pub gate_verdicts: IntCounterVec,
    /// Last measured value of each KPI.
    pub kpi_values: GaugeVec,
    /// Writes to the Kubernetes API by kind of object (status, deployment, service, job,
    /// revision, event).
    pub api_writes: IntCounterVec,
    /// Reads from the Kubernetes API (not from the watch caches) by kind of object.
    pub api_reads: IntCounterVec,
    /// 1 while this replica is the leader.
    pub leader: IntGauge,
    /// Restores that ended, by outcome.
    pub restores: IntCounterVec,
    /// Duration of each restore step.
    pub restore_steps: HistogramVec,
    /// Backups: last success, first schedule and maximum age, by release and kind.
    backup_last_success: GaugeVec,
    backup_scheduled: GaugeVec,
    backup_max_age: GaugeVec,
    phases: Mutex<HashMap<(String, String), (Phase, String)>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(names::RECONCILES_TOTAL, "Reconciles by result"),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(names::RECONCILE_ERRORS_TOTAL, "Reconcile errors by reason"),
            &["reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                names::RECONCILE_DURATION_SECONDS,
                "Duration of one reconcile",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[],
        )?;
        let releases =
            IntGaugeVec::new(Opts::new(names::RELEASES, "Releases by phase"), &["phase"])?;
        let release_phase = IntGaugeVec::new(
            Opts::new(
                names::RELEASE_PHASE,
                "1 for the current phase of each release",
            ),
            &["namespace", "release", "phase", "version"],
        )?;
        let rollbacks = IntCounterVec::new(
            Opts::new(names::ROLLBACKS_TOTAL, "Rollbacks started, by reason"),
            &["reason"],
        )?;
        let gate_verdicts = IntCounterVec::new(
            Opts::new(
                names::GATE_VERDICTS_TOTAL,
                "Gate checks by gate (health, health-watch after the health gate passed, smoke, kpi) and verdict",
            ),
            &["gate", "verdict"],
        )?;
        let kpi_values = GaugeVec::new(
            Opts::new(names::KPI_VALUE, "Last measured value of a KPI"),
            &["namespace", "release", "kpi"],
        )?;
        let api_writes = IntCounterVec::new(
            Opts::new(
                names::API_WRITES_TOTAL,
                "Writes the operator made to the Kubernetes API, by kind",
            ),
            &["kind"],
        )?;
        let api_reads = IntCounterVec::new(
            Opts::new(
                names::API_READS_TOTAL,
                "Reads the operator made from the Kubernetes API rather than its watch caches, by kind",
            ),
            &["kind"],
        )?;
        let leader = IntGauge::with_opts(Opts::new(
            names::LEADER,
            "1 while this replica holds the leader Lease, 0 while it waits",
        ))?;
        let restores = IntCounterVec::new(
            Opts::new(names::RESTORES_TOTAL, "Restores that ended, by outcome"),
            &["outcome"],
        )?;
        let restore_steps = HistogramVec::new(
            HistogramOpts::new(
                names::RESTORE_STEP_SECONDS,
                "Duration of one step of a restore",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
            ]),
            &["step"],
        )?;
        let backup = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["namespace", "release", "type"])
        };
        let backup_last_success = backup(
            names::BACKUP_LAST_SUCCESS,
            "When the newest successful backup of a kind finished (Unix seconds)",
        )?;
        let backup_scheduled = backup(
            names::BACKUP_SCHEDULED,
            "When a kind of backup was first scheduled (Unix seconds)",
        )?;
        let backup_max_age = backup(
            names::BACKUP_MAX_AGE,
            "Age in seconds past which the newest backup of a kind is too old",
        )?;
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(releases.clone()),
            Box::new(release_phase.clone()),
            Box::new(rollbacks.clone()),
            Box::new(gate_verdicts.clone()),
            Box::new(kpi_values.clone()),
            Box::new(api_writes.clone()),
            Box::new(api_reads.clone()),
            Box::new(leader.clone()),
            Box::new(restores.clone()),
            Box::new(restore_steps.clone()),
            Box::new(backup_last_success.clone()),
            Box::new(backup_scheduled.clone()),
            Box::new(backup_max_age.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            releases,
            release_phase,
            rollbacks,
            gate_verdicts,
            kpi_values,
            api_writes,
            api_reads,
            leader,
            restores,
            restore_steps,
            backup_last_success,
            backup_scheduled,
            backup_max_age,
            phases: Mutex::new(HashMap::new()),
        })
    }

    /// Records the phase of a release (`None` when it was deleted) and recounts.
    pub fn set_phase(&self, namespace: &str, name: &str, phase: Option<(Phase, &str)>) {
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_owned(), name.to_owned());
        let previous = match phase {
            Some((p, version)) => phases.insert(key, (p, version.to_owned())),
            None => phases.remove(&key),
        };
        if let Some((old, old_version)) =
            previous.filter(|(old, v)| Some((*old, v.as_str())) != phase)
        {
            // Err only means the series did not exist; either way it is gone now.
            let _ = self.release_phase.remove_label_values(&[
                namespace,
                name,
                phase_name(old),
                &old_version,
            ]);
        }
        if let Some((p, version)) = phase {
            self.release_phase
                .with_label_values(&[namespace, name, phase_name(p), version])
                .set(1);
        }
        self.releases.reset();
        for (phase, _) in phases.values() {
            self.releases.with_label_values(&[phase_name(*phase)]).inc();
        }
    }

    /// Records the backups of a release: one entry per kind it schedules (none when it has no
    /// backups or was deleted). A kind no longer listed loses its series.
    pub fn set_backups(&self, namespace: &str, name: &str, series: Vec<BackupSeries>) {
        for kind in BackupKind::ALL.map(BackupKind::pgbackrest_type) {
            let labels = [namespace, name, kind];
            let entry = series.iter().find(|s| s.kind == kind);
            for (gauge, value) in [
                (
                    &self.backup_last_success,
                    entry.and_then(|e| e.last_success),
                ),
                (
                    &self.backup_scheduled,
                    entry.and_then(|e| e.scheduled_since),
                ),
                (&self.backup_max_age, entry.map(|e| e.max_age_seconds)),
            ] {
                match value {
                    Some(v) => gauge.with_label_values(&labels).set(v),
                    // Err only means the series did not exist; either way it is gone now.
                    None => {
                        let _ = gauge.remove_label_values(&labels);
                    }
                }
            }
        }
    }

    /// Forgets a deleted release: its phase and backup series go.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.set_phase(namespace, name, None);
        self.set_backups(namespace, name, Vec::new());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoded = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        match encoded {
            Ok(()) => String::from_utf8(buffer).unwrap_or_default(),
            Err(e) => format!("# encoding failed: {e}\n"),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (Loki's conventions: `ts`, `level`, `msg`, the span fields
    /// release, version, attempt and phase, and `trace_id` inside a traced reconcile).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global tracing subscriber (`RUST_LOG` filters; default `info`) and, when the
/// `OTEL_*` variables ask for it, the OTLP trace exporter (see `listacompra_telemetry`).
/// Keep the returned value for the life of the process: dropping it flushes the spans.
pub fn init(
    format: LogFormat,
) -> Result<listacompra_telemetry::Telemetry, listacompra_telemetry::Error> {
    let format = match format {
        LogFormat::Json => listacompra_telemetry::LogFormat::Json,
        LogFormat::Text => listacompra_telemetry::LogFormat::Text,
    };
    listacompra_telemetry::init("listacompra-operator", format, "info")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_metric_is_exported_under_its_shared_name() {
        let m = Metrics::new().unwrap();
        m.reconciles.with_label_values(&["ok"]).inc();
        m.reconcile_errors.with_label_values(&["kube_api"]).inc();
        m.reconcile_duration
            .with_label_values(&[] as &[&str])
            .observe(0.1);
        m.set_phase("ns", "lc", Some((Phase::Verifying, "1.2.0")));
        m.rollbacks.with_label_values(&["KpiBreached"]).inc();
        m.gate_verdicts.with_label_values(&["kpi", "pass"]).inc();
        m.kpi_values
            .with_label_values(&["ns", "lc", "p95-latency-ms"])
            .set(1.0);
        m.api_writes.with_label_values(&["status"]).inc();
        m.api_reads.with_label_values(&["secret"]).inc();
        m.set_backups("ns", "lc", vec![series("full", Some(2.0))]);
        m.restores.with_label_values(&["succeeded"]).inc();
        m.restore_steps
            .with_label_values(&["Restoring"])
            .observe(12.0);
        let text = m.render();
        for name in names::ALL {
            let help = format!("# HELP {name} ");
            assert!(text.contains(&help), "{name} missing in\n{text}");
        }
        assert_eq!(
            samples(&text, names::LEADER),
            vec![format!("{} 0", names::LEADER)]
        );
    }

    fn series(kind: &'static str, last_success: Option<f64>) -> BackupSeries {
        BackupSeries {
            kind,
            max_age_seconds: 3600.0,
            scheduled_since: Some(1.0),
            last_success,
        }
    }

    #[test]
    fn backup_series_follow_the_kinds_a_release_schedules_and_go_with_it() {
        let m = Metrics::new().unwrap();
        m.set_backups(
            "ns",
            "lc",
            vec![series("full", Some(1_796_190_760.0)), series("incr", None)],
        );
        let text = m.render();
        assert_eq!(
            samples(&text, names::BACKUP_LAST_SUCCESS),
            vec![format!(
                r#"{}{{namespace="ns",release="lc",type="full"}} 1796190760"#,
                names::BACKUP_LAST_SUCCESS
            )]
        );
        assert_eq!(samples(&text, names::BACKUP_MAX_AGE).len(), 2, "{text}");
        // The incremental schedule is dropped from the spec: its series go.
        m.set_backups("ns", "lc", vec![series("full", Some(1_796_190_800.0))]);
        let text = m.render();
        assert_eq!(samples(&text, names::BACKUP_SCHEDULED).len(), 1, "{text}");
        assert!(text.contains("1796190800"), "{text}");
        m.forget("ns", "lc");
        let text = m.render();
        for name in [
            names::BACKUP_LAST_SUCCESS,
            names::BACKUP_SCHEDULED,
            names::BACKUP_MAX_AGE,
        ] {
            assert!(samples(&text, name).is_empty(), "{text}");
        }
    }

    #[test]
    fn a_release_has_one_phase_series_that_moves_with_the_phase() {
        let m = Metrics::new().unwrap();
        m.set_phase("ns", "lc", Some((Phase::Succeeded, "1.1.0")));
        m.set_phase("ns", "lc", Some((Phase::Migrating, "1.2.0")));
        m.set_phase("ns", "other", Some((Phase::Succeeded, "1.0.0")));
        m.set_phase("ns", "lc", Some((Phase::RolledBack, "1.2.0")));
        let text = m.render();
        assert_eq!(
            samples(&text, names::RELEASE_PHASE),
            vec![
                format!(
                    r#"{}{{namespace="ns",phase="RolledBack",release="lc",version="1.2.0"}} 1"#,
                    names::RELEASE_PHASE
                ),
                format!(
                    r#"{}{{namespace="ns",phase="Succeeded",release="other",version="1.0.0"}} 1"#,
                    names::RELEASE_PHASE
                ),
            ]
        );
        // A new version in the same phase moves the series too.
        m.set_phase("ns", "other", Some((Phase::Succeeded, "1.0.1")));
        let text = m.render();
        assert!(
            !text.contains(r#"version="1.0.0""#) && text.contains(r#"version="1.0.1""#),
            "{text}"
        );
        m.set_phase("ns", "lc", None);
        let text = m.render();
        assert_eq!(samples(&text, names::RELEASE_PHASE).len(), 1, "{text}");
        assert_eq!(
            samples(&text, names::RELEASES),
            vec![format!(r#"{}{{phase="Succeeded"}} 1"#, names::RELEASES)]
        );
    }
}
