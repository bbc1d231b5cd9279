//! W3C trace context (`traceparent`, `tracestate`) across process boundaries: read from an
//! incoming request or message into a span, written from the current span into an outgoing
//! one. Without the OpenTelemetry layer (traces off) nothing is read or written.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace context of `span` as header name → value (empty when `span` is not traced).
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    headers
}

/// Makes `span` a child of the trace context in `get` (a header lookup, case-insensitive
/// names being the caller's business), when there is a valid one.
pub fn continue_from(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let mut carrier = HashMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = get(name) {
            carrier.insert(name.to_owned(), value);
        }
    }
    if carrier.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    // Err: the span is disabled or already started; there is nothing to continue then.
    let _ = span.set_parent(cx);
}
