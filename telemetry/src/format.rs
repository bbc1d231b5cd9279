//! The JSON log line: `ts`, `level`, `msg`, `target`, the event's and its spans' fields, and
//! `trace_id`/`span_id` inside a traced span.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON object per line, in Loki's conventions (see the crate
/// documentation). Span fields are read as [`JsonFields`] recorded them, so use it with
/// `fmt::layer().fmt_fields(JsonFields::new())`, as [`crate::init`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "ts".to_owned(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        let meta = event.metadata();
        line.insert(
            "level".to_owned(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        // The trace ids first: reading them takes the span's extensions for writing, so no
        // extension may be held while they are read.
        let leaf = ctx
            .event_scope()
            .and_then(|mut scope| scope.next().map(|s| s.id()));
        if let Some(id) = leaf {
            let cx = tracing::dispatcher::get_default(|d| {
                tracing_opentelemetry::get_otel_context(&id, d)
            });
            if let Some(cx) = cx {
                let span = cx.span();
                let sc = span.span_context();
                if sc.is_valid() {
                    line.insert(
                        "trace_id".to_owned(),
                        Value::String(sc.trace_id().to_string()),
                    );
                    line.insert(
                        "span_id".to_owned(),
                        Value::String(sc.span_id().to_string()),
                    );
                }
            }
        }
        // Span fields, outermost first, so an inner span's field wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields) {
                    // `otel.*` fields instruct the exporter; they are not log data.
                    line.extend(map.into_iter().filter(|(k, _)| !k.starts_with("otel.")));
                }
            }
        }
        line.insert("target".to_owned(), Value::String(meta.target().to_owned()));
        let mut visitor = Fields(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields into the line; `message` becomes `msg`.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The span-field formatter [`JsonLines`] reads.
pub fn span_fields() -> JsonFields {
    JsonFields::new()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Buffer) -> Vec<Value> {
        let bytes = buffer
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn fmt_layer<S>(buffer: &Buffer) -> impl tracing_subscriber::Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let buffer = buffer.clone();
        tracing_subscriber::fmt::layer()
            .fmt_fields(span_fields())
            .event_format(JsonLines)
            .with_writer(move || buffer.clone())
    }

    /// One test: the trace ids are read through the global dispatcher (inside an event a
    /// scoped one is out of reach), and a process has one global subscriber.
    #[test]
    fn lines_have_loki_fields_span_fields_and_the_trace_id_of_their_span() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let buffer = Buffer::default();
        let traced = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let filter = {
            let traced = traced.clone();
            tracing_subscriber::filter::filter_fn(move |_| {
                traced.load(std::sync::atomic::Ordering::Relaxed)
            })
        };
        use tracing_subscriber::Layer as _;
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(filter),
            )
            .with(fmt_layer(&buffer));
        tracing::subscriber::set_global_default(subscriber).unwrap();

        {
            let outer = tracing::info_span!(
                "request",
                request_id = "r-1",
                route = "/x",
                otel.kind = "server"
            );
            let _o = outer.enter();
            let inner = tracing::info_span!("db", route = "/inner");
            let _i = inner.enter();
            tracing::warn!(rows = 3, ok = true, "slow query");
        }
        tracing::info!("outside any span");
        // Spans the OpenTelemetry layer does not see carry no ids.
        traced.store(false, std::sync::atomic::Ordering::Relaxed);
        {
            let span = tracing::info_span!("untraced", request_id = "r-2");
            let _e = span.enter();
            tracing::info!("inside an untraced span");
        }
        provider.force_flush().unwrap();

        let lines = lines(&buffer);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "warn", "{line}");
        assert_eq!(line["msg"], "slow query", "{line}");
        assert_eq!(line["rows"], 3, "{line}");
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(line["request_id"], "r-1", "{line}");
        assert_eq!(
            line["route"], "/inner",
            "the inner span's field wins: {line}"
        );
        assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line.get("message").is_none(), "{line}");
        assert!(
            line.get("otel.kind").is_none(),
            "exporter fields stay out: {line}"
        );
        // The ids are those of the exported span the line was written in.
        let spans = exporter.get_finished_spans().unwrap();
        let db = spans
            .iter()
            .find(|s| s.name == "db")
            .expect("db span exported");
        assert_eq!(
            line["trace_id"],
            db.span_context.trace_id().to_string(),
            "{line}"
        );
        assert_eq!(
            line["span_id"],
            db.span_context.span_id().to_string(),
            "{line}"
        );

        assert_eq!(lines[1]["msg"], "outside any span");
        assert!(lines[1].get("trace_id").is_none(), "{}", lines[1]);
        assert_eq!(lines[2]["request_id"], "r-2");
        assert!(lines[2].get("trace_id").is_none(), "{}", lines[2]);
    }
}
