//! Prometheus metrics with bounded labels: resource kinds, operations, HTTP statuses, error
//! labels and rotation causes, never names of resources or keys.
//!
//! One [`Metrics`] is made at start and shared (held by the context, the Twilio client and the
//! Kubernetes client's request layer). Each component registers its own families, with typed
//! label sets: [`reconcile`] (every reconciliation, timed by one wrapper for both reconcilers),
//! [`twilio`] (requests to Twilio), [`keys`] (what was done to keys), [`resources`] (gauges
//! computed at scrape time from the controllers' caches, so they cannot drift from the truth),
//! [`process`] (leadership, requests to the API server).

mod histogram;
pub mod keys;
pub mod process;
pub mod reconcile;
pub mod resources;
pub mod twilio;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub use keys::{KeyMetrics, KeyOperation, RestartOutcome};
pub use process::ProcessMetrics;
pub use reconcile::ReconcileMetrics;
pub use resources::{ResourceMetrics, Resources};
pub use twilio::TwilioMetrics;

pub struct Metrics {
    registry: Registry,
    pub reconcile: ReconcileMetrics,
    pub twilio: TwilioMetrics,
    pub keys: KeyMetrics,
    pub resources: ResourceMetrics,
    pub process: ProcessMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The Twilio client tells of each request.
impl crate::twilio::RequestObserver for Metrics {
    fn request_done(&self, operation: &'static str, status: &str, elapsed: Duration) {
        self.twilio.request_done(operation, status, elapsed);
    }
}

impl Metrics {
    /// A registry with every metric of the operator, all at zero, without per-resource series.
    pub fn new() -> Self {
        Self::with_options(false)
    }

    /// A registry with every metric of the operator; `per_resource` adds series labelled with
    /// each TwilioApiKey's namespace and name.
    pub fn with_options(per_resource: bool) -> Self {
        let mut registry = Registry::with_prefix("twilio_operator");
        Metrics {
            reconcile: ReconcileMetrics::register(&mut registry),
            twilio: TwilioMetrics::register(&mut registry),
            keys: KeyMetrics::register(&mut registry),
            resources: ResourceMetrics::register(&mut registry, per_resource),
            process: ProcessMetrics::register(&mut registry),
            registry,
        }
    }

    /// The registry in Prometheus' text exposition format, with the gauges about resources
    /// computed from `resources` (the controllers' caches) now.
    pub fn render(&self, resources: &Resources) -> String {
        self.resources.observe(resources, Timestamp::now());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
