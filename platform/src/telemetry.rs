//! Logs, traces and metrics, set up in one place.
//!
//! Logs go to stderr through `tracing`, as JSON when `LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`),
//! and coloured only when stderr is a terminal, so that a log file or a container's log is plain text. Each line
//! carries the fields of the spans it is in, so the `trace_id` and `saga_id` that request and message spans record
//! show up on every line logged under them. Spans are also OpenTelemetry spans: their trace context
//! travels between services in the W3C `traceparent` (HTTP header, AMQP message header, see [`crate::trace`]),
//! and they are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (otherwise only their IDs are
//! used, in the logs). Metrics go to a Prometheus recorder installed for the whole process; `/metrics` renders it.

use std::{io::IsTerminal, sync::OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    trace::{Sampler, SdkTracerProvider},
    Resource,
};
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Sets up logs, traces and metrics for tests and tools: like [`init_for`] with a generic service name.
pub fn init() {
    init_for("checkout");
}

/// Installs the log and trace subscriber for `service` and the metrics recorder. Safe to call more than once
/// (tests start several services in one process): later calls change nothing.
pub fn init_for(service: &'static str) {
    let provider = TRACER_PROVIDER.get_or_init(|| tracer_provider(service));
    let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let json = std::env::var("LOG_FORMAT").map(|f| f == "json").unwrap_or(false);
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).boxed()
    };
    // RUST_LOG filters the logs only: request and message spans stay traced (and give their IDs to the
    // context of what is logged) however quiet the logs are.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(traces.with_filter(LevelFilter::INFO))
        .with(logs.with_filter(filter))
        .try_init();
    prometheus();
}

/// Sends the spans not exported yet; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// With an OTLP endpoint configured every span is recorded and batched out to it; without one, spans only carry
/// trace IDs from service to service and into the logs.
fn tracer_provider(service: &'static str) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service).build());
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        // Nowhere to send spans: keep their IDs (propagated and logged) but record nothing.
        return builder.with_sampler(Sampler::AlwaysOff).build();
    }
    match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(e) => {
            eprintln!("OTLP exporter for {endpoint} could not be set up, traces stay local: {e}");
            builder.build()
        }
    }
}

/// How often the recorder's upkeep runs: it drains histogram samples into their buckets, which otherwise only a
/// scrape does, so that a process nobody scrapes does not keep every sample in memory.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use, with a thread of its own running its upkeep for the
/// life of the process.
pub fn prometheus() -> &'static PrometheusHandle {
    let handle = PROMETHEUS.get_or_init(|| {
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed already (only in tests that embed several services): render an
            // unattached recorder so that /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    });
    UPKEEP.call_once(|| {
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
        if let Err(e) = spawned {
            eprintln!("the metrics upkeep thread could not start, histograms drain only when scraped: {e}");
        }
    });
    handle
}

static UPKEEP: std::sync::Once = std::sync::Once::new();
