//! Names of the metrics the ListaCompra API exports and the default KPIs query.
//!
//! Named once, here: the API server registers its metrics under these names and the default
//! KPI queries of [`crate::analysis`] read them, so the two cannot drift apart.

/// Histogram of HTTP request durations in seconds, labelled `route`, `method`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "listacompra_http_request_duration_seconds";
/// Counter of AI suggestion jobs, labelled `outcome` (`success` or `failure`).
pub const AI_JOBS_TOTAL: &str = "listacompra_ai_jobs_total";
/// Counter of outbox publish retries.
pub const OUTBOX_RETRIES_TOTAL: &str = "listacompra_outbox_retries_total";
/// Gauge of outbox events not yet published.
pub const OUTBOX_BACKLOG: &str = "listacompra_outbox_backlog";
/// Histogram of the time events wait in the outbox before they are published, in seconds.
pub const OUTBOX_QUEUE_LATENCY_SECONDS: &str = "listacompra_outbox_queue_latency_seconds";
/// Counter of messages given up on after their attempt cap, labelled `source` (`ai`: moved
/// to the AI dead-letter queue, also an AI job `failure`; `outbox`: event moved aside).
pub const DEAD_LETTERS_TOTAL: &str = "listacompra_dead_letters_total";
/// Gauge of outbox events moved aside after their attempt cap (never published).
pub const OUTBOX_DEAD: &str = "listacompra_outbox_dead";
/// Gauge of messages waiting in the AI worker's queue (ready, not yet delivered), as the
/// broker last reported it to a worker.
pub const AI_QUEUE_MESSAGES: &str = "listacompra_ai_queue_messages";
/// Gauge of the age in seconds of the oldest AI suggestion request still pending (0 when
/// none): how far behind the AI worker is, outbox and broker included.
pub const AI_OLDEST_PENDING_SECONDS: &str = "listacompra_ai_oldest_pending_seconds";
