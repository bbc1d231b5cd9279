//! Logs and traces of the ListaCompra programs (the API server and the operator).
//!
//! - **Logs**: one JSON object per line, ready for Loki's `json` parser: `ts` (RFC 3339),
//!   `level`, `msg`, `target`, the event's fields, the fields of the spans it happened in
//!   (request id, release, attempt), and `trace_id`/`span_id` when the line is written inside
//!   a traced span. Ids are fields, never labels. `RUST_LOG` filters.
//! - **Traces**: OpenTelemetry spans from `tracing` spans, exported over OTLP/HTTP
//!   (protobuf) only when the standard variables ask for it: `OTEL_EXPORTER_OTLP_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, and neither `OTEL_SDK_DISABLED=true` nor
//!   `OTEL_TRACES_EXPORTER=none`. The SDK reads the rest itself: `OTEL_TRACES_SAMPLER` and
//!   `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on), `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`.
//! - **Propagation**: W3C trace context (`traceparent`, `tracestate`) in and out, through
//!   [`propagation`].

mod format;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use format::JsonLines;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("cannot build the OTLP trace exporter from the OTEL_* variables: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (see the crate documentation).
    Json,
    /// tracing-subscriber's human-readable lines, for a terminal.
    Text,
}

/// What [`init`] set up; keep it alive for the life of the program. Dropping it (or
/// [`Telemetry::shutdown`]) sends the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Errors only mean spans were lost at exit; there is nobody left to tell.
            let _ = provider.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the `OTEL_*` variables (as read by `var`) ask for traces to be exported.
pub fn traces_wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter =
        var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !disabled
        && !no_exporter
}

/// Installs the global subscriber: log lines in `format` filtered by `RUST_LOG` (default
/// `default_filter`), and, when [`traces_wanted`], the OpenTelemetry layer with a filter of
/// its own (spans at `info` and above, whatever `RUST_LOG` says: quieter logs do not cut
/// traces). `service` names the
/// program in traces unless `OTEL_SERVICE_NAME` does. Once per process: a second call leaves
/// the first subscriber in place and exports nothing.
pub fn init(
    service: &'static str,
    format: LogFormat,
    default_filter: &str,
) -> Result<Telemetry, Error> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let provider = if traces_wanted(|k| std::env::var(k).ok()) {
        Some(provider(service)?)
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(LevelFilter::INFO)
    });
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(format::span_fields())
                    .event_format(JsonLines)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init(),
    };
    if installed.is_err() {
        // Another subscriber was first (tests start several servers in one process).
        return Ok(Telemetry { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Telemetry { provider })
}

fn provider(service: &'static str) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    // Resource::builder() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_exported_only_when_an_endpoint_is_set_and_nothing_disables_them() {
        assert!(!traces_wanted(vars(&[])));
        assert!(!traces_wanted(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(traces_wanted(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://j:4318"
        )])));
        assert!(traces_wanted(vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://j:4318/v1/traces"
        )])));
        assert!(!traces_wanted(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(!traces_wanted(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
        assert!(traces_wanted(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4318"),
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ])));
    }
}
