//! Prometheus metrics with bounded labels: resource kinds, operations, HTTP statuses, error
//! labels and rotation causes, never names of resources or keys.
//!
//! One [`Metrics`] is made at start, registered once, and shared (held by the context and the
//! Twilio client). Counters are updated where things happen; the gauges about keys (how many,
//! how old the oldest) are computed at scrape time from the controllers' caches, so they cannot
//! drift from the truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
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
    resource_conditions: Family<Labels, Gauge>,
    next_rotation: Gauge,
    rotation_overdue: Gauge,
    retiring_keys: Gauge,
    retiring_keys_overdue: Gauge,
    /// Per-resource series, only with `--metrics-per-resource` (a label per resource is
    /// unbounded: thousands of series for thousands of keys).
    per_resource: Option<PerResource>,
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

/// Series with a namespace and name label for each TwilioApiKey (opt-in).
struct PerResource {
    next_rotation: Family<Labels, Gauge>,
    key_created: Family<Labels, Gauge>,
}

/// How late a retiring key's deletion may be before it counts as overdue (a retry with backoff
/// is usually done within this).
const RETIRING_OVERDUE_AFTER_SECONDS: i64 = 300;

/// The Twilio client tells of each request: counted by operation and status, timed by operation.
impl crate::twilio::RequestObserver for Metrics {
    fn request_done(&self, operation: &'static str, status: &str, elapsed: Duration) {
        self.twilio_requests
            .get_or_create(&vec![("operation", operation.to_string()), ("status", status.to_string())])
            .inc();
        self.twilio_request_duration
            .get_or_create(&vec![("operation", operation.to_string())])
            .observe(elapsed.as_secs_f64());
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
        let resource_conditions = Family::<Labels, Gauge>::default();
        registry.register(
            "resource_conditions",
            "Resources by kind and by the status and reason of each condition (Ready, Reconciling, Stalled); a resource the operator has not reported on yet counts as Ready Unknown",
            resource_conditions.clone(),
        );
        let next_rotation = Gauge::default();
        registry.register(
            "next_rotation_seconds",
            "Seconds until the soonest interval rotation among the managed keys (negative when overdue, 0 when no key rotates by interval)",
            next_rotation.clone(),
        );
        let rotation_overdue = Gauge::default();
        registry.register(
            "rotation_overdue_resources",
            "TwilioApiKeys whose interval rotation is past due",
            rotation_overdue.clone(),
        );
        let retiring_keys = Gauge::default();
        registry.register("retiring_keys", "Replaced keys still valid for their grace period", retiring_keys.clone());
        let retiring_keys_overdue = Gauge::default();
        registry.register(
            "retiring_keys_overdue",
            "Replaced keys still recorded more than 5 minutes after they were due: their grace period ended (and their rollouts finished, or maxGracePeriod passed); their deletion is failing",
            retiring_keys_overdue.clone(),
        );
        let per_resource = per_resource.then(|| {
            let next_rotation = Family::<Labels, Gauge>::default();
            registry.register(
                "key_next_rotation_timestamp_seconds",
                "When each TwilioApiKey's key is due for interval rotation (Unix time)",
                next_rotation.clone(),
            );
            let key_created = Family::<Labels, Gauge>::default();
            registry.register(
                "key_created_timestamp_seconds",
                "When each TwilioApiKey's current key was created (Unix time)",
                key_created.clone(),
            );
            PerResource { next_rotation, key_created }
        });
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
            resource_conditions,
            next_rotation,
            rotation_overdue,
            retiring_keys,
            retiring_keys_overdue,
            per_resource,
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

    /// The registry in Prometheus' text exposition format, with the gauges about resources
    /// computed from `resources` (the controllers' caches) now.
    pub fn render(&self, resources: &Resources) -> String {
        self.observe(resources, Timestamp::now());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Sets the gauges about resources from what the caches hold at `now`.
    fn observe(&self, resources: &Resources, now: Timestamp) {
        let gauges = ResourceGauges::of(resources, now);
        self.managed_keys.set(gauges.managed_keys);
        self.oldest_key_age.set(gauges.oldest_key_age);
        self.next_rotation.set(gauges.next_rotation);
        self.rotation_overdue.set(gauges.rotation_overdue);
        self.retiring_keys.set(gauges.retiring_keys);
        self.retiring_keys_overdue.set(gauges.retiring_keys_overdue);
        // Counts that fell to zero are dropped, not kept at 0 forever.
        self.resource_conditions.clear();
        for ((kind, condition, status, reason), count) in gauges.conditions {
            let labels =
                vec![("kind", kind.to_string()), ("condition", condition), ("status", status), ("reason", reason)];
            self.resource_conditions.get_or_create(&labels).set(count);
        }
        if let Some(per_resource) = &self.per_resource {
            per_resource.next_rotation.clear();
            per_resource.key_created.clear();
            for resource in &resources.keys {
                let labels =
                    vec![("namespace", resource.namespace().unwrap_or_default()), ("name", resource.name_any())];
                let Some(status) = resource.status.as_ref() else { continue };
                if let Some(at) = parse_time(status.next_rotation_at.as_deref()) {
                    per_resource.next_rotation.get_or_create(&labels).set(at.as_second());
                }
                if let Some(at) = parse_time(status.key_created_at.as_deref()) {
                    per_resource.key_created.get_or_create(&labels).set(at.as_second());
                }
            }
        }
    }
}

/// The resources the controllers' caches hold, for the gauges.
#[derive(Default)]
pub struct Resources {
    pub keys: Vec<Arc<TwilioApiKey>>,
    /// Each account's kind and conditions (each account once).
    pub accounts: Vec<(&'static str, Vec<Condition>)>,
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text?.parse().ok()
}

/// Condition counts: (kind, condition type, status, reason) to how many resources.
type ConditionCounts = BTreeMap<(&'static str, String, String, String), i64>;

/// The gauges about resources, computed from a snapshot of the caches.
#[derive(Debug, Default, PartialEq)]
struct ResourceGauges {
    managed_keys: i64,
    oldest_key_age: i64,
    next_rotation: i64,
    rotation_overdue: i64,
    retiring_keys: i64,
    retiring_keys_overdue: i64,
    conditions: ConditionCounts,
}

impl ResourceGauges {
    fn of(resources: &Resources, now: Timestamp) -> Self {
        let mut gauges = ResourceGauges::default();
        let mut oldest: Option<Timestamp> = None;
        let mut soonest: Option<Timestamp> = None;
        for resource in &resources.keys {
            let Some(status) = resource.status.as_ref() else {
                count_conditions(&mut gauges.conditions, "TwilioApiKey", &[]);
                continue;
            };
            count_conditions(&mut gauges.conditions, "TwilioApiKey", &status.conditions);
            if status.key_sid.is_some() {
                gauges.managed_keys += 1;
                if let Some(created) = parse_time(status.key_created_at.as_deref()) {
                    oldest = Some(oldest.map_or(created, |o| o.min(created)));
                }
                if let Some(due) = parse_time(status.next_rotation_at.as_deref()) {
                    soonest = Some(soonest.map_or(due, |s| s.min(due)));
                    gauges.rotation_overdue += i64::from(due < now);
                }
            }
            // A key that waits for rollouts is due at its deleteBy until they are done.
            let rolling_out = !crate::keys::rollout::waiting(resource, status).is_empty();
            for retiring in &status.retiring_keys {
                gauges.retiring_keys += 1;
                let due = match &retiring.delete_by {
                    Some(latest) if rolling_out => latest,
                    _ => &retiring.delete_after,
                };
                let overdue = parse_time(Some(due))
                    .is_some_and(|deadline| now.duration_since(deadline).as_secs() > RETIRING_OVERDUE_AFTER_SECONDS);
                gauges.retiring_keys_overdue += i64::from(overdue);
            }
        }
        for (kind, conditions) in &resources.accounts {
            count_conditions(&mut gauges.conditions, kind, conditions);
        }
        gauges.oldest_key_age = oldest.map_or(0, |o| now.duration_since(o).as_secs().max(0));
        gauges.next_rotation = soonest.map_or(0, |s| s.duration_since(now).as_secs());
        gauges
    }
}

/// Counts one resource's conditions; one without a Ready condition counts as Ready Unknown.
fn count_conditions(counts: &mut ConditionCounts, kind: &'static str, conditions: &[Condition]) {
    if !conditions.iter().any(|c| c.type_ == crate::api::conditions::READY) {
        *counts.entry((kind, "Ready".into(), "Unknown".into(), String::new())).or_default() += 1;
    }
    for condition in conditions {
        let key = (kind, condition.type_.clone(), condition.status.clone(), condition.reason.clone());
        *counts.entry(key).or_default() += 1;
    }
}

/// What the operator did to a key in Twilio.
#[derive(Clone, Copy, Debug)]
pub enum KeyOperation {
    Created,
    Deleted,
    /// Deleted a key an interrupted create had left undelivered.
    OrphanDeleted,
    /// Took over a key found in a Secret, once proven (`spec.secret.adopt`).
    Adopted,
}

impl KeyOperation {
    fn label(self) -> &'static str {
        match self {
            KeyOperation::Created => "created",
            KeyOperation::Deleted => "deleted",
            KeyOperation::OrphanDeleted => "orphan_deleted",
            KeyOperation::Adopted => "adopted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{Health, conditions_for};
    use crate::api::{RetiringKey, TwilioApiKeyStatus};

    const NOW: &str = "2026-01-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn key(name: &str, status: Option<TwilioApiKeyStatus>) -> Arc<TwilioApiKey> {
        let mut key: TwilioApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "twilio-operator.dev/v1alpha1",
            "kind": "TwilioApiKey",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"accountRef": {"name": "main"}},
        }))
        .unwrap();
        key.status = status;
        Arc::new(key)
    }

    fn ready() -> Vec<Condition> {
        conditions_for(&[], &Health::Ready { reason: "KeyReady", message: String::new() }, Some(1), now())
    }

    fn stalled(reason: &'static str) -> Vec<Condition> {
        conditions_for(&[], &Health::Stalled { reason, message: String::new() }, Some(1), now())
    }

    fn retiring(delete_after: &str) -> RetiringKey {
        RetiringKey {
            sid: "SK0".into(),
            delete_after: delete_after.into(),
            account_ref: None,
            account_sid: None,
            delete_by: None,
        }
    }

    #[test]
    fn gauges_count_resources_by_condition_and_key_deadlines() {
        let issued = |created: &str, next: Option<&str>| TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            key_created_at: Some(created.into()),
            next_rotation_at: next.map(Into::into),
            conditions: ready(),
            ..Default::default()
        };
        let resources = Resources {
            keys: vec![
                key("a", Some(issued("2026-01-01T11:00:00Z", Some("2026-01-01T13:00:00Z")))),
                key("b", Some(issued("2026-01-01T10:00:00Z", Some("2026-01-01T11:59:00Z")))),
                key(
                    "c",
                    Some(TwilioApiKeyStatus {
                        retiring_keys: vec![retiring("2026-01-01T11:59:00Z"), retiring("2026-01-01T11:00:00Z")],
                        ..issued("2026-01-01T11:30:00Z", None)
                    }),
                ),
                key("d", Some(TwilioApiKeyStatus { conditions: stalled("TwilioAuthFailed"), ..Default::default() })),
                key("e", None),
            ],
            accounts: vec![("ClusterTwilioAccount", stalled("TwilioAuthFailed")), ("TwilioAccount", vec![])],
        };
        let gauges = ResourceGauges::of(&resources, now());
        assert_eq!(gauges.managed_keys, 3);
        assert_eq!(gauges.oldest_key_age, 7200);
        assert_eq!(gauges.next_rotation, -60, "b is a minute overdue");
        assert_eq!(gauges.rotation_overdue, 1);
        assert_eq!(gauges.retiring_keys, 2);
        assert_eq!(gauges.retiring_keys_overdue, 1, "only the one an hour past its deadline");
        let count = |kind: &'static str, condition: &str, status: &str, reason: &str| {
            gauges.conditions.get(&(kind, condition.into(), status.into(), reason.into())).copied().unwrap_or(0)
        };
        assert_eq!(count("TwilioApiKey", "Ready", "True", "KeyReady"), 3);
        assert_eq!(count("TwilioApiKey", "Stalled", "True", "TwilioAuthFailed"), 1);
        assert_eq!(count("TwilioApiKey", "Ready", "False", "TwilioAuthFailed"), 1);
        assert_eq!(count("TwilioApiKey", "Ready", "Unknown", ""), 1, "not reported on yet");
        assert_eq!(count("ClusterTwilioAccount", "Stalled", "True", "TwilioAuthFailed"), 1);
        assert_eq!(count("TwilioAccount", "Ready", "Unknown", ""), 1);
    }

    #[test]
    fn a_key_waiting_for_rollouts_is_overdue_only_past_its_delete_by() {
        let waiting_key = |complete: bool| {
            let status = TwilioApiKeyStatus {
                key_sid: Some("SK1".into()),
                retiring_keys: vec![RetiringKey {
                    delete_by: Some("2026-01-01T13:00:00Z".into()),
                    ..retiring("2026-01-01T11:00:00Z")
                }],
                rollout: vec![crate::api::RolloutTargetStatus {
                    kind: crate::api::WorkloadKind::Deployment,
                    name: "web".into(),
                    complete,
                    restarted_at: Some("2026-01-01T10:50:00Z".into()),
                    message: None,
                    restart_failures: 0,
                    next_restart_at: None,
                }],
                ..Default::default()
            };
            let mut resource = (*key("w", Some(status))).clone();
            resource.spec.rollout_restart_targets = vec![crate::api::RolloutRestartTarget {
                kind: crate::api::WorkloadKind::Deployment,
                name: "web".into(),
            }];
            Resources { keys: vec![Arc::new(resource)], accounts: vec![] }
        };
        // An hour past its grace period, an hour before its deleteBy.
        assert_eq!(ResourceGauges::of(&waiting_key(false), now()).retiring_keys_overdue, 0, "still rolling out");
        assert_eq!(ResourceGauges::of(&waiting_key(true), now()).retiring_keys_overdue, 1, "rolled out, not deleted");
    }

    #[test]
    fn per_resource_series_exist_only_when_asked_for() {
        let status = TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            key_created_at: Some(NOW.into()),
            next_rotation_at: Some("2026-01-02T12:00:00Z".into()),
            ..Default::default()
        };
        let resources = Resources { keys: vec![key("a", Some(status))], accounts: vec![] };
        let bounded = Metrics::new().render(&resources);
        assert!(!bounded.contains("name=\"a\""), "{bounded}");
        assert!(bounded.contains("twilio_operator_resource_conditions{kind=\"TwilioApiKey\",condition=\"Ready\",status=\"Unknown\",reason=\"\"} 1"), "{bounded}");
        let detailed = Metrics::with_options(true).render(&resources);
        assert!(
            detailed.contains(
                "twilio_operator_key_next_rotation_timestamp_seconds{namespace=\"team\",name=\"a\"} 1767355200"
            ),
            "{detailed}"
        );
    }
}
