//! Prometheus metrics with bounded labels: resource kinds, operations, HTTP statuses and error
//! labels, never names of resources or keys.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    reconcile_duration: Family<Labels, Histogram>,
    twilio_requests: Family<Labels, Counter>,
    twilio_request_duration: Family<Labels, Histogram>,
    key_operations: Family<Labels, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("twilio_operator");
    let reconciles = Family::<Labels, Counter>::default();
    registry.register("reconciles", "Reconciliations by kind and result", reconciles.clone());
    let reconcile_duration = Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
    registry.register("reconcile_duration_seconds", "Duration of reconciliations by kind", reconcile_duration.clone());
    let twilio_requests = Family::<Labels, Counter>::default();
    registry.register("twilio_requests", "Requests to Twilio by operation and HTTP status", twilio_requests.clone());
    let twilio_request_duration =
        Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
    registry.register(
        "twilio_request_duration_seconds",
        "Duration of requests to Twilio by operation",
        twilio_request_duration.clone(),
    );
    let key_operations = Family::<Labels, Counter>::default();
    registry.register("key_operations", "Twilio keys created and deleted by the operator", key_operations.clone());
    Metrics { registry, reconciles, reconcile_duration, twilio_requests, twilio_request_duration, key_operations }
});

pub fn reconciled(kind: &'static str, result: &'static str, elapsed: Duration) {
    let metrics = &*METRICS;
    metrics.reconciles.get_or_create(&vec![("kind", kind.to_string()), ("result", result.to_string())]).inc();
    metrics.reconcile_duration.get_or_create(&vec![("kind", kind.to_string())]).observe(elapsed.as_secs_f64());
}

pub fn twilio_request(operation: &'static str, status: &str, elapsed: Duration) {
    let metrics = &*METRICS;
    metrics
        .twilio_requests
        .get_or_create(&vec![("operation", operation.to_string()), ("status", status.to_string())])
        .inc();
    metrics
        .twilio_request_duration
        .get_or_create(&vec![("operation", operation.to_string())])
        .observe(elapsed.as_secs_f64());
}

/// `operation` is "created" or "deleted".
pub fn key_operation(operation: &'static str) {
    METRICS.key_operations.get_or_create(&vec![("operation", operation.to_string())]).inc();
}

/// The registry in Prometheus' text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &METRICS.registry);
    out
}
