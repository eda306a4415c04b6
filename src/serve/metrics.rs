//! Prometheus metrics (`GET /metrics`, text format) and the one-line-per-request log.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: HistogramFamily,
    pub input_tokens: Counter,
    pub queue_size: Gauge,
    pub queue_duration: Histogram,
    pub inference_duration: Histogram,
    pub batch_inputs: Histogram,
    pub batch_tokens: Histogram,
}

fn seconds() -> Histogram {
    // 1 ms ... ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xlmr");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register("requests", "HTTP requests by route and status", requests.clone());
        let request_duration: HistogramFamily = Family::new_with_constructor(seconds);
        registry.register("request_duration_seconds", "Time from request to response, by route", request_duration.clone());
        let input_tokens = Counter::default();
        registry.register("input_tokens", "Tokens of all inputs sent to the model", input_tokens.clone());
        let queue_size = Gauge::default();
        registry.register("queue_size", "Jobs waiting for the compute worker", queue_size.clone());
        let queue_duration = seconds();
        registry.register("queue_duration_seconds", "Time a job waited in the queue", queue_duration.clone());
        let inference_duration = seconds();
        registry.register("batch_duration_seconds", "Compute time of one scheduler batch", inference_duration.clone());
        let batch_inputs = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register("batch_inputs", "Inputs per scheduler batch", batch_inputs.clone());
        let batch_tokens = Histogram::new(exponential_buckets(8.0, 2.0, 14));
        registry.register("batch_tokens", "Tokens per scheduler batch", batch_tokens.clone());
        Metrics { registry, requests, request_duration, input_tokens, queue_size, queue_duration, inference_duration, batch_inputs, batch_tokens }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What a handler reports about its request, for the log line and the token counter.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub inputs: usize,
    pub tokens: usize,
}

/// Routes are metric labels only when they are ours, so a scanner cannot grow the series.
fn route_label(path: &str) -> &'static str {
    super::ROUTES.iter().find(|r| **r == path).copied().unwrap_or("other")
}

/// Counts, times and logs every request: `method route status inputs tokens ms` on stderr.
pub async fn observe(State(state): State<super::AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route_label(req.uri().path());
    let response = next.run(req).await;
    let usage = response.extensions().get::<Usage>().copied().unwrap_or_default();
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let m = &state.metrics;
    m.requests.get_or_create(&RouteStatus { route: route.into(), status: status.to_string() }).inc();
    m.request_duration.get_or_create(&RouteLabel { route: route.into() }).observe(ms / 1e3);
    m.input_tokens.inc_by(usage.tokens as u64);
    if state.json_logs {
        let line = serde_json::json!({"method": method.as_str(), "route": route, "status": status, "inputs": usage.inputs, "tokens": usage.tokens, "ms": (ms * 1000.0).round() / 1000.0});
        eprintln!("{line}");
    } else {
        eprintln!("{method} {route} {status} inputs={} tokens={} {ms:.1}ms", usage.inputs, usage.tokens);
    }
    response
}
