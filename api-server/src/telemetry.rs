//! JSON logs via tracing (the request id is a field of the request span).

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber (`RUST_LOG` filters, default `info`). Safe to call twice.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .try_init();
}
