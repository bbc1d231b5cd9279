//! The operator's own metrics (served on `/metrics`) and log set-up.

use std::collections::HashMap;
use std::sync::Mutex;

use listacompra_crds::Phase;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::decide::phase_name;

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
    /// Rollbacks by reason.
    pub rollbacks: IntCounterVec,
    /// Gate verdicts by gate and verdict.
    pub gate_verdicts: IntCounterVec,
    /// Last measured value of each KPI.
    pub kpi_values: GaugeVec,
    /// Writes to the Kubernetes API by kind of object (status, deployment, service, job,
    /// revision, event).
    pub api_writes: IntCounterVec,
    phases: Mutex<HashMap<(String, String), Phase>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("listacompra_operator".to_owned()), None)?;
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciles by result"),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Reconcile errors by reason"),
            &["reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Duration of one reconcile").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &[],
        )?;
        let releases = IntGaugeVec::new(Opts::new("releases", "Releases by phase"), &["phase"])?;
        let rollbacks = IntCounterVec::new(
            Opts::new("rollbacks_total", "Rollbacks started, by reason"),
            &["reason"],
        )?;
        let gate_verdicts = IntCounterVec::new(
            Opts::new(
                "gate_verdicts_total",
                "Gate checks by gate (health, kpi) and verdict",
            ),
            &["gate", "verdict"],
        )?;
        let kpi_values = GaugeVec::new(
            Opts::new("kpi_value", "Last measured value of a KPI"),
            &["namespace", "release", "kpi"],
        )?;
        let api_writes = IntCounterVec::new(
            Opts::new(
                "api_writes_total",
                "Writes the operator made to the Kubernetes API, by kind",
            ),
            &["kind"],
        )?;
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(releases.clone()),
            Box::new(rollbacks.clone()),
            Box::new(gate_verdicts.clone()),
            Box::new(kpi_values.clone()),
            Box::new(api_writes.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            releases,
            rollbacks,
            gate_verdicts,
            kpi_values,
            api_writes,
            phases: Mutex::new(HashMap::new()),
        })
    }

    /// Records the phase of a release (`None` when it was deleted) and recounts.
    pub fn set_phase(&self, namespace: &str, name: &str, phase: Option<Phase>) {
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_owned(), name.to_owned());
        match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        self.releases.reset();
        for phase in phases.values() {
            self.releases.with_label_values(&[phase_name(*phase)]).inc();
        }
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
    /// One JSON object per line, with the span fields (release, version, phase).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
