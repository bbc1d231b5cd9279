//! The service's Prometheus metrics, under the names defined once in
//! [`listacompra_crds::metrics`]; every one carries the constant label `version`.

use std::collections::HashMap;

use listacompra_crds::metrics as names;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Result;

/// Counter of every HTTP request (API and operational endpoints, unmatched paths), labelled
/// `route`, `method`, `status` like the latency histogram.
pub const HTTP_REQUESTS_TOTAL: &str = "listacompra_http_requests_total";

/// Gauge of requests being handled now (the graceful shutdown waits for them).
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "listacompra_http_requests_in_flight";

/// Gauge per dependency (`postgres`, `redis`, `rabbitmq`): 1 when the last readiness probe
/// reached it, 0 when not.
pub const DEPENDENCY_UP: &str = "listacompra_dependency_up";

/// Gauge of the database's schema revision at the last readiness probe (0 = not migrated).
pub const SCHEMA_REVISION: &str = "listacompra_schema_revision";

/// Counter of readiness probes actually sent to the dependencies (`/ready` reuses one for
/// `READY_CACHE_MS`, and concurrent callers share it).
pub const READY_PROBES_TOTAL: &str = "listacompra_ready_probes_total";

/// Gauge of attachment objects waiting to be deleted from the object store.
pub const OBJECT_DELETIONS_PENDING: &str = "listacompra_object_deletions_pending";

/// Counter of failed object deletions (each is retried with backoff, never dropped).
pub const OBJECT_DELETION_FAILURES_TOTAL: &str = "listacompra_object_deletion_failures_total";

/// All metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// API request duration by `route` (template), `method` and `status`: the latency KPI,
    /// so only API routes are observed (not `/health`, `/ready`, `/metrics`, `/openapi.json`
    /// or unmatched requests).
    pub http_duration: HistogramVec,
    /// Every request by `route`, `method` and `status` (see [`HTTP_REQUESTS_TOTAL`]).
    pub http_requests: IntCounterVec,
    /// Requests being handled now (see [`HTTP_REQUESTS_IN_FLIGHT`]).
    pub http_in_flight: IntGauge,
    /// Dependencies reachable at the last readiness probe, by `dependency`.
    pub dependency_up: IntGaugeVec,
    /// The schema revision at the last readiness probe (see [`SCHEMA_REVISION`]).
    pub schema_revision: IntGauge,
    /// Readiness probes sent (see [`READY_PROBES_TOTAL`]).
    pub ready_probes: IntCounter,
    /// AI jobs by `outcome` (`success`, `failure`).
    pub ai_jobs: IntCounterVec,
    /// Outbox publish retries: one per failed publish of an event actually sent to the
    /// broker (not per event waiting while the broker is unreachable).
    pub outbox_retries: IntCounter,
    /// Outbox events not yet published.
    pub outbox_backlog: IntGauge,
    /// Seconds from an event's creation to its confirmed publish.
    pub outbox_latency: Histogram,
    /// Messages given up on, by `source`: `ai` (moved to the AI dead-letter queue after
    /// `AI_MAX_ATTEMPTS`; also counted as an AI job `failure`) and `outbox` (events moved
    /// aside after `OUTBOX_MAX_ATTEMPTS`).
    pub dead_letters: IntCounterVec,
    /// Outbox events moved aside (unpublished, never due again).
    pub outbox_dead: IntGauge,
    /// Messages waiting in the AI queue (see [`names::AI_QUEUE_MESSAGES`]).
    pub ai_queue_messages: IntGauge,
    /// Age of the oldest pending AI request (see [`names::AI_OLDEST_PENDING_SECONDS`]).
    pub ai_oldest_pending: IntGauge,
    /// Attachment objects waiting to be deleted (see [`OBJECT_DELETIONS_PENDING`]).
    pub object_deletions_pending: IntGauge,
    /// Failed object deletions (see [`OBJECT_DELETION_FAILURES_TOTAL`]).
    pub object_deletion_failures: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics with `version` as constant label.
    pub fn new(version: &str) -> Result<Self> {
        let labels: HashMap<String, String> =
            HashMap::from([("version".to_owned(), version.to_owned())]);
        let registry = Registry::new();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                names::HTTP_REQUEST_DURATION_SECONDS,
                "HTTP request duration in seconds",
            )
            .const_labels(labels.clone())
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method", "status"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(HTTP_REQUESTS_TOTAL, "HTTP requests, every route")
                .const_labels(labels.clone()),
            &["route", "method", "status"],
        )?;
        let http_in_flight = IntGauge::with_opts(
            Opts::new(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being handled now")
                .const_labels(labels.clone()),
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                DEPENDENCY_UP,
                "1 when the last readiness probe reached the dependency, else 0",
            )
            .const_labels(labels.clone()),
            &["dependency"],
        )?;
        let schema_revision = IntGauge::with_opts(
            Opts::new(
                SCHEMA_REVISION,
                "The database's schema revision at the last readiness probe (0 = not migrated)",
            )
            .const_labels(labels.clone()),
        )?;
        let ready_probes = IntCounter::with_opts(
            Opts::new(
                READY_PROBES_TOTAL,
                "Readiness probes sent to the dependencies (cached for READY_CACHE_MS)",
            )
            .const_labels(labels.clone()),
        )?;
        let ai_jobs = IntCounterVec::new(
            Opts::new(names::AI_JOBS_TOTAL, "AI suggestion jobs by outcome")
                .const_labels(labels.clone()),
            &["outcome"],
        )?;
        let outbox_retries = IntCounter::with_opts(
            Opts::new(names::OUTBOX_RETRIES_TOTAL, "Outbox publish retries")
                .const_labels(labels.clone()),
        )?;
        let outbox_backlog = IntGauge::with_opts(
            Opts::new(names::OUTBOX_BACKLOG, "Outbox events not yet published")
                .const_labels(labels.clone()),
        )?;
        let outbox_latency = Histogram::with_opts(
            HistogramOpts::new(
                names::OUTBOX_QUEUE_LATENCY_SECONDS,
                "Seconds events wait in the outbox before a confirmed publish",
            )
            .const_labels(labels.clone())
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                names::DEAD_LETTERS_TOTAL,
                "Messages given up on after their attempt cap, by source (ai, outbox)",
            )
            .const_labels(labels.clone()),
            &["source"],
        )?;
        let outbox_dead = IntGauge::with_opts(
            Opts::new(
                names::OUTBOX_DEAD,
                "Outbox events moved aside after their attempt cap",
            )
            .const_labels(labels.clone()),
        )?;
        let ai_queue_messages = IntGauge::with_opts(
            Opts::new(
                names::AI_QUEUE_MESSAGES,
                "Messages waiting in the AI queue, as the broker last reported them",
            )
            .const_labels(labels.clone()),
        )?;
        let ai_oldest_pending = IntGauge::with_opts(
            Opts::new(
                names::AI_OLDEST_PENDING_SECONDS,
                "Age in seconds of the oldest AI suggestion request still pending (0: none)",
            )
            .const_labels(labels.clone()),
        )?;
        let object_deletions_pending = IntGauge::with_opts(
            Opts::new(
                OBJECT_DELETIONS_PENDING,
                "Attachment objects waiting to be deleted from the object store",
            )
            .const_labels(labels.clone()),
        )?;
        let object_deletion_failures = IntCounter::with_opts(
            Opts::new(
                OBJECT_DELETION_FAILURES_TOTAL,
                "Failed deletions of attachment objects (retried with backoff)",
            )
            .const_labels(labels),
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_in_flight.clone()))?;
        registry.register(Box::new(dependency_up.clone()))?;
        registry.register(Box::new(schema_revision.clone()))?;
        registry.register(Box::new(ready_probes.clone()))?;
        registry.register(Box::new(ai_jobs.clone()))?;
        registry.register(Box::new(outbox_retries.clone()))?;
        registry.register(Box::new(outbox_backlog.clone()))?;
        registry.register(Box::new(outbox_latency.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(outbox_dead.clone()))?;
        registry.register(Box::new(ai_queue_messages.clone()))?;
        registry.register(Box::new(ai_oldest_pending.clone()))?;
        registry.register(Box::new(object_deletions_pending.clone()))?;
        registry.register(Box::new(object_deletion_failures.clone()))?;
        dead_letters.with_label_values(&["ai"]);
        dead_letters.with_label_values(&["outbox"]);
        // Export both outcomes from the start, so the success ratio has a denominator.
        ai_jobs.with_label_values(&["success"]);
        ai_jobs.with_label_values(&["failure"]);
        Ok(Self {
            registry,
            http_duration,
            http_requests,
            http_in_flight,
            dependency_up,
            schema_revision,
            ready_probes,
            ai_jobs,
            outbox_retries,
            outbox_backlog,
            outbox_latency,
            dead_letters,
            outbox_dead,
            ai_queue_messages,
            ai_oldest_pending,
            object_deletions_pending,
            object_deletion_failures,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which registration rejects.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(%err, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_uses_the_shared_name_and_carries_the_version() {
        let m = Metrics::new("1.2.3").unwrap();
        m.http_duration
            .with_label_values(&["/v1/lists", "GET", "200"])
            .observe(0.01);
        m.outbox_retries.inc();
        m.outbox_latency.observe(0.2);
        let text = m.render();
        for name in [
            names::HTTP_REQUEST_DURATION_SECONDS,
            names::AI_JOBS_TOTAL,
            names::OUTBOX_RETRIES_TOTAL,
            names::OUTBOX_BACKLOG,
            names::OUTBOX_QUEUE_LATENCY_SECONDS,
            names::DEAD_LETTERS_TOTAL,
            names::OUTBOX_DEAD,
            names::AI_QUEUE_MESSAGES,
            names::AI_OLDEST_PENDING_SECONDS,
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(name) && !l.starts_with('#'))
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
            assert!(line.contains(r#"version="1.2.3""#), "{line}");
        }
        assert!(
            text.contains(r#"method="GET",route="/v1/lists",status="200""#)
                || text.contains(r#"route="/v1/lists""#)
        );
        assert!(text.contains(r#"outcome="success""#) && text.contains(r#"outcome="failure""#));
    }
}
