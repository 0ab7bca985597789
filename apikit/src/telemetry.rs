//! Logging and span export for both services.
//!
//! - Log lines go to stdout, filtered by `RUST_LOG` (default `info`): text, or with
//!   `LOG_FORMAT=json` one JSON object per line, with the fields of the span it was written in
//!   (`trace_id`, `request_id`, …). Text carries ANSI colours only on a terminal without
//!   `NO_COLOR`.
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/HTTP (protobuf;
//!   the exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables), as service
//!   `OTEL_SERVICE_NAME` or the binary's name. Without it nothing is exported and no exporter
//!   runs.
//!
//! [`continue_trace`] is the one place a span joins a trace: it makes the span the child of the
//! caller's span context and returns the span's own, to send on.

use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::trace::TraceContext;

/// Whether spans are exported (and so carry OpenTelemetry ids of their own).
static EXPORTING: OnceLock<bool> = OnceLock::new();

/// Keeps the span exporter running; dropping it sends what is still buffered.
#[must_use = "spans are exported only while the guard lives"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("exporting the last spans failed: {e}");
            }
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn log_format() -> anyhow::Result<LogFormat> {
    match std::env::var("LOG_FORMAT") {
        Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
        Ok(value) if value.eq_ignore_ascii_case("text") || value.is_empty() => Ok(LogFormat::Text),
        Ok(value) if value.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
        Ok(value) => anyhow::bail!("LOG_FORMAT must be text or json, got {value:?}"),
        Err(e) => anyhow::bail!("LOG_FORMAT is not readable: {e}"),
    }
}

/// Whether text logs carry ANSI colours: only on a terminal (not into `docker logs`, a file or
/// a pipe), and never with `NO_COLOR` set to anything (<https://no-color.org>).
fn colours_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Installs logging (and span export, when configured) for the binary `service`. A second call
/// changes nothing and exports nothing.
pub fn init_telemetry(service: &str) -> anyhow::Result<Telemetry> {
    let format = log_format()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let provider = match endpoint {
        Some(_) => Some(tracer_provider(service)?),
        None => None,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(colours_wanted());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let export = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    // Each layer filters for itself: RUST_LOG decides what is logged, not what is exported, and
    // the exporter's own diagnostics (logged, so that a collector that cannot be reached is
    // seen) are never exported, which would feed the exporter its own failures.
    let export = export.map(|layer| {
        let exported = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF)
            .with_target("opentelemetry_http", LevelFilter::OFF);
        layer.with_filter(exported)
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(export)
        .try_init()
        .is_ok();
    if !installed {
        return Ok(Telemetry { provider: None });
    }
    let _ = EXPORTING.set(provider.is_some());
    if provider.is_some() {
        tracing::info!(service, "exporting spans over OTLP");
    }
    Ok(Telemetry { provider })
}

fn tracer_provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT is set but no exporter: {e}"))?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.get().copied().unwrap_or(false)
}

/// Makes `span` continue the trace of `parent` (a new trace without one) and returns the span
/// context to send on as `traceparent`: the exported span's own when spans are exported, so
/// that a trace viewer links the next hop to it; else a new span id of ours.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceContext>) -> TraceContext {
    if exporting() {
        let cx = match parent {
            Some(p) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id.to_be_bytes()),
                SpanId::from_bytes(p.span_id.to_be_bytes()),
                TraceFlags::new(p.flags),
                true,
                TraceState::default(),
            )),
            None => opentelemetry::Context::new(),
        };
        // Fails only for a span the export layer does not know (filtered out): ours below.
        if span.set_parent(cx).is_ok() {
            let context = span.context();
            let own = context.span().span_context().clone();
            if own.is_valid() {
                return TraceContext {
                    trace_id: u128::from_be_bytes(own.trace_id().to_bytes()),
                    span_id: u64::from_be_bytes(own.span_id().to_bytes()),
                    flags: own.trace_flags().to_u8(),
                };
            }
        }
    }
    parent.map_or_else(TraceContext::root, |p| p.child())
}
