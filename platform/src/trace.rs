//! The W3C trace context between services. A checkout is one trace: order-svc's HTTP request span starts it (or
//! continues a client's `traceparent` header), every message carries the `traceparent` of the span that sent it
//! in its AMQP headers, and every consumer handles a message in a span that continues that context. Spans record
//! the trace ID in their `trace_id` field for the logs.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TraceId},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP and AMQP) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`: what a message sent on its behalf carries. `None` when tracing is not set up.
pub fn traceparent(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` part of the trace that `traceparent` names (a missing or malformed one leaves it the root of a
/// new trace), and records the trace ID in the span's `trace_id` field if it has one.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_continues_the_trace_it_is_given_and_passes_it_on() {
        crate::telemetry::init();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("message", trace_id = tracing::field::Empty);
        continue_trace(&span, Some(incoming));
        let outgoing = traceparent(&span).expect("a traceparent for the span");
        assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{outgoing}");
        assert!(!outgoing.contains("00f067aa0ba902b7"), "the span's own ID, not its parent's: {outgoing}");
    }

    #[test]
    fn a_span_without_a_trace_starts_one_and_garbage_is_ignored() {
        crate::telemetry::init();
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        continue_trace(&span, Some("not a traceparent"));
        let started = traceparent(&span).expect("a new trace");
        assert_eq!(started.split('-').count(), 4, "{started}");
    }
}
