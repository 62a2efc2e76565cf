//! Requests to Twilio, as the client reports them (see [`crate::twilio::RequestObserver`]).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::histogram::duration_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

pub struct TwilioMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<OperationLabels, Histogram>,
}

impl TwilioMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register("twilio_requests", "Requests to Twilio by operation and HTTP status", requests.clone());
        let duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "twilio_request_duration_seconds",
            "Duration of requests to Twilio by operation",
            duration.clone(),
        );
        Self { requests, duration }
    }

    /// A request: its operation (a bounded label), its HTTP status or `transport`, its duration.
    pub fn request_done(&self, operation: &'static str, status: &str, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { operation, status: status.to_string() }).inc();
        self.duration.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
    }
}
