//! The gauges about resources (how many keys, how old, when due, retiring, by condition),
//! computed at scrape time from the controllers' caches, so that they cannot drift from the truth.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::{AccountKeys, TwilioApiKey};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: &'static str,
    condition: String,
    status: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    namespace: String,
    name: String,
}

pub struct ResourceMetrics {
    managed_keys: Gauge,
    oldest_key_age: Gauge,
    conditions: Family<ConditionLabels, Gauge>,
    next_rotation: Gauge,
    rotation_overdue: Gauge,
    retiring_keys: Gauge,
    retiring_keys_overdue: Gauge,
    account_keys: Family<StateLabels, Gauge>,
    /// Per-resource series, only with `--metrics-per-resource` (a label per resource is
    /// unbounded: thousands of series for thousands of keys).
    per_resource: Option<PerResource>,
}

/// Series with a namespace and name label for each TwilioApiKey (opt-in).
struct PerResource {
    next_rotation: Family<ResourceLabels, Gauge>,
    key_created: Family<ResourceLabels, Gauge>,
}

/// How late a retiring key's deletion may be before it counts as overdue (a retry with backoff
/// is usually done within this).
const RETIRING_OVERDUE_AFTER_SECONDS: i64 = 300;

impl ResourceMetrics {
    pub fn register(registry: &mut Registry, per_resource: bool) -> Self {
        let managed_keys = Gauge::default();
        registry.register("managed_keys", "TwilioApiKeys that currently hold a key in Twilio", managed_keys.clone());
        let oldest_key_age = Gauge::default();
        registry.register(
            "oldest_key_age_seconds",
            "Age of the oldest current key among the managed keys (0 when there is none)",
            oldest_key_age.clone(),
        );
        let conditions = Family::default();
        registry.register(
            "resource_conditions",
            "Resources by kind and by the status and reason of each condition (Ready, Reconciling, Stalled); a resource the operator has not reported on yet counts as Ready Unknown",
            conditions.clone(),
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
        let account_keys = Family::default();
        registry.register(
            "account_keys",
            "Keys in the accounts the operator acts in, at each account's latest listing, by state: managed (a TwilioApiKey here records it), unmanaged (no TwilioApiKey here records it, and it carries no pending name), pending (a pending name no resource here records); each account SID counted once",
            account_keys.clone(),
        );
        let per_resource = per_resource.then(|| {
            let next_rotation = Family::default();
            registry.register(
                "key_next_rotation_timestamp_seconds",
                "When each TwilioApiKey's key is due for interval rotation (Unix time)",
                next_rotation.clone(),
            );
            let key_created = Family::default();
            registry.register(
                "key_created_timestamp_seconds",
                "When each TwilioApiKey's current key was created (Unix time)",
                key_created.clone(),
            );
            PerResource { next_rotation, key_created }
        });
        Self {
            managed_keys,
            oldest_key_age,
            conditions,
            next_rotation,
            rotation_overdue,
            retiring_keys,
            retiring_keys_overdue,
            account_keys,
            per_resource,
        }
    }

    /// Sets the gauges from what the caches hold at `now`.
    pub fn observe(&self, resources: &Resources, now: Timestamp) {
        let gauges = ResourceGauges::of(resources, now);
        self.managed_keys.set(gauges.managed_keys);
        self.oldest_key_age.set(gauges.oldest_key_age);
        self.next_rotation.set(gauges.next_rotation);
        self.rotation_overdue.set(gauges.rotation_overdue);
        self.retiring_keys.set(gauges.retiring_keys);
        self.retiring_keys_overdue.set(gauges.retiring_keys_overdue);
        for (state, count) in ["managed", "unmanaged", "pending"].into_iter().zip(gauges.account_keys) {
            self.account_keys.get_or_create(&StateLabels { state }).set(count);
        }
        // Counts that fell to zero are dropped, not kept at 0 forever.
        self.conditions.clear();
        for ((kind, condition, status, reason), count) in gauges.conditions {
            self.conditions.get_or_create(&ConditionLabels { kind, condition, status, reason }).set(count);
        }
        if let Some(per_resource) = &self.per_resource {
            per_resource.next_rotation.clear();
            per_resource.key_created.clear();
            for resource in &resources.keys {
                let labels =
                    ResourceLabels { namespace: resource.namespace().unwrap_or_default(), name: resource.name_any() };
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
    /// Per Twilio account SID, the census of its keys at its latest listing (of all the account
    /// resources of that SID, the latest).
    pub account_keys: BTreeMap<String, AccountKeys>,
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
    /// Keys in the accounts: managed, unmanaged and pending, each account SID once.
    account_keys: [i64; 3],
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
        for census in resources.account_keys.values() {
            let counts = [census.managed, census.unmanaged, census.pending];
            for (gauge, count) in gauges.account_keys.iter_mut().zip(counts) {
                *gauge += i64::from(count);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{Health, conditions_for};
    use crate::api::{RetiringKey, TwilioApiKeyStatus};
    use crate::runtime::metrics::Metrics;

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
            account_keys: [
                ("AC1".to_string(), AccountKeys { managed: 3, unmanaged: 2, pending: 1, ..Default::default() }),
                ("AC2".to_string(), AccountKeys { managed: 1, unmanaged: 0, ..Default::default() }),
            ]
            .into(),
        };
        let gauges = ResourceGauges::of(&resources, now());
        assert_eq!(gauges.account_keys, [4, 2, 1], "managed, unmanaged, pending, over both accounts");
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
                    selector: None,
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
                name: Some("web".into()),
                selector: None,
            }];
            Resources { keys: vec![Arc::new(resource)], ..Default::default() }
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
        let resources = Resources { keys: vec![key("a", Some(status))], ..Default::default() };
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
