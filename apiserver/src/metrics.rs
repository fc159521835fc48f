//! The REST server's Prometheus metrics, served at `/metrics`: requests by route template (never
//! the raw path, which holds ids), method and status; their latency; and errors by code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::AppState;

/// The server's metrics and their registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new_custom(Some("prospector_apiserver".into()), None).expect("a valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by route template, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time to answer, by route template and method")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(duration.clone())).expect("registered once");
        Self { registry, requests, duration }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.duration.with_label_values(&[&route, &method]).observe(started.elapsed().as_secs_f64());
    state.metrics.requests.with_label_values(&[&route, &method, response.status().as_str()]).inc();
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Response {
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
