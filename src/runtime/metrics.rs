//! Prometheus metrics with bounded labels: resource kinds, operations, HTTP statuses, error
//! labels and rotation causes, never names of resources or keys.
//!
//! One [`Metrics`] is made at start, registered once, and shared (held by the context and the
//! Twilio client). Counters are updated where things happen; the gauges about keys (how many,
//! how old the oldest) are computed at scrape time from the controllers' caches, so they cannot
//! drift from the truth.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::TwilioApiKey;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    reconcile_duration: Family<Labels, Histogram>,
    twilio_requests: Family<Labels, Counter>,
    twilio_request_duration: Family<Labels, Histogram>,
    key_operations: Family<Labels, Counter>,
    rotations: Family<Labels, Counter>,
    leaked_keys_found: Counter,
    managed_keys: Gauge,
    oldest_key_age: Gauge,
    leader: Gauge,
    kube_requests: Family<Labels, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
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

impl Metrics {
    /// A registry with every metric of the operator, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("twilio_operator");
        let reconciles = Family::<Labels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciliations by kind and result (ok or an error label)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that met an error, by kind and reason (stalled ones included)",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations by kind",
            reconcile_duration.clone(),
        );
        let twilio_requests = Family::<Labels, Counter>::default();
        registry.register(
            "twilio_requests",
            "Requests to Twilio by operation and HTTP status",
            twilio_requests.clone(),
        );
        let twilio_request_duration =
            Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "twilio_request_duration_seconds",
            "Duration of requests to Twilio by operation",
            twilio_request_duration.clone(),
        );
        let key_operations = Family::<Labels, Counter>::default();
        registry.register(
            "key_operations",
            "Twilio keys created and deleted by the operator (orphan_deleted: leaked by an interrupted create)",
            key_operations.clone(),
        );
        let rotations = Family::<Labels, Counter>::default();
        registry.register("rotations", "Key rotations by cause", rotations.clone());
        let leaked_keys_found = Counter::default();
        registry.register(
            "leaked_keys_found",
            "Keys found in Twilio that an interrupted create left undelivered (each is deleted)",
            leaked_keys_found.clone(),
        );
        let managed_keys = Gauge::default();
        registry.register("managed_keys", "TwilioApiKeys that currently hold a key in Twilio", managed_keys.clone());
        let oldest_key_age = Gauge::default();
        registry.register(
            "oldest_key_age_seconds",
            "Age of the oldest current key among the managed keys (0 when there is none)",
            oldest_key_age.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this process reconciles (holds the lease, or runs alone)", leader.clone());
        let kube_requests = Family::<Labels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API server by verb (get, list or watch, post, put, patch, delete)",
            kube_requests.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            twilio_requests,
            twilio_request_duration,
            key_operations,
            rotations,
            leaked_keys_found,
            managed_keys,
            oldest_key_age,
            leader,
            kube_requests,
        }
    }

    pub fn reconciled(&self, kind: &'static str, result: &'static str, elapsed: Duration) {
        self.reconciles.get_or_create(&vec![("kind", kind.to_string()), ("result", result.to_string())]).inc();
        self.reconcile_duration.get_or_create(&vec![("kind", kind.to_string())]).observe(elapsed.as_secs_f64());
    }

    /// A reconciliation met an error; `reason` is the error's bounded label.
    pub fn reconcile_error(&self, kind: &'static str, reason: &'static str) {
        self.reconcile_errors.get_or_create(&vec![("kind", kind.to_string()), ("reason", reason.to_string())]).inc();
    }

    pub fn twilio_request(&self, operation: &'static str, status: &str, elapsed: Duration) {
        self.twilio_requests
            .get_or_create(&vec![("operation", operation.to_string()), ("status", status.to_string())])
            .inc();
        self.twilio_request_duration
            .get_or_create(&vec![("operation", operation.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    pub fn key_operation(&self, operation: KeyOperation) {
        self.key_operations.get_or_create(&vec![("operation", operation.label().to_string())]).inc();
    }

    pub fn rotation(&self, cause: &'static str) {
        self.rotations.get_or_create(&vec![("cause", cause.to_string())]).inc();
    }

    pub fn leaked_key_found(&self) {
        self.leaked_keys_found.inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts a request to the Kubernetes API server (called by the client's request layer).
    pub fn kube_request<B>(&self, request: &http::Request<B>) {
        let verb = match *request.method() {
            http::Method::GET if request.uri().query().is_some_and(|q| q.contains("watch=true")) => "watch",
            http::Method::GET => "get",
            http::Method::POST => "post",
            http::Method::PUT => "put",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        };
        self.kube_requests.get_or_create(&vec![("verb", verb.to_string())]).inc();
    }

    /// The registry in Prometheus' text exposition format, with the gauges about keys computed
    /// from `key_caches` (the keys controllers' caches) now.
    pub fn render(&self, key_caches: &[Store<TwilioApiKey>]) -> String {
        let (count, oldest) = key_gauges(key_caches, Timestamp::now());
        self.managed_keys.set(count);
        self.oldest_key_age.set(oldest);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// What the operator did to a key in Twilio.
#[derive(Clone, Copy, Debug)]
pub enum KeyOperation {
    Created,
    Deleted,
    /// Deleted a key an interrupted create had left undelivered.
    OrphanDeleted,
}

impl KeyOperation {
    fn label(self) -> &'static str {
        match self {
            KeyOperation::Created => "created",
            KeyOperation::Deleted => "deleted",
            KeyOperation::OrphanDeleted => "orphan_deleted",
        }
    }
}

/// How many resources hold a key, and the age in seconds of the oldest of those keys.
fn key_gauges(stores: &[Store<TwilioApiKey>], now: Timestamp) -> (i64, i64) {
    let mut count = 0;
    let mut oldest: Option<Timestamp> = None;
    for resource in stores.iter().flat_map(Store::state) {
        let Some(status) = resource.status.as_ref().filter(|s| s.key_sid.is_some()) else { continue };
        count += 1;
        if let Some(created) = status.key_created_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
            oldest = Some(oldest.map_or(created, |o| o.min(created)));
        }
    }
    let age = oldest.map_or(0, |o| now.duration_since(o).as_secs().max(0));
    (count, age)
}
