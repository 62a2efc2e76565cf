//! Building a TwilioApiKey's status, and reading deadlines from it: pure functions of the
//! resource, what was done, and the time, so that each status the executor writes is unit-tested.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};

use crate::api::conditions::{self, Health};
use crate::api::duration;
use crate::api::{KeyHistoryEntry, KeyType, ROTATE_ANNOTATION, RetiringKey, TwilioApiKey, TwilioApiKeyStatus};
use crate::keys::rollout;
use crate::keys::window::Schedule;
use crate::twilio::{AccountConnection, Key};

/// Where a delivered key lives in Twilio.
#[derive(Clone, Debug)]
pub struct Issued<'a> {
    pub sid: &'a str,
    pub account_sid: &'a str,
    pub region: &'a str,
    /// The name the status records: the spec's for a key Twilio renames right after this
    /// status is written, the pending name for one found in its Secret (renamed later in the pass).
    pub friendly_name: String,
    /// Why the key was made, as status.history says it (see [`crate::keys::plan::history_reason`]).
    pub reason: &'static str,
}

impl<'a> Issued<'a> {
    /// Key `sid`, made through `connection`'s account and Region, for `reason`.
    pub fn through(
        connection: &'a AccountConnection,
        sid: &'a str,
        friendly_name: String,
        reason: &'static str,
    ) -> Self {
        Issued { sid, account_sid: &connection.account_sid, region: &connection.region, friendly_name, reason }
    }
}

/// `history` with the key `issued` delivered at `now`, the key it replaces (`replaced`) retired
/// then, and no more than the resource's limit (the oldest go first).
fn history_with(
    resource: &TwilioApiKey,
    history: &[KeyHistoryEntry],
    issued: &Issued<'_>,
    replaced: Option<&str>,
    now: Timestamp,
) -> Vec<KeyHistoryEntry> {
    let mut history = history.to_vec();
    for entry in history.iter_mut().filter(|e| Some(e.sid.as_str()) == replaced && e.retired_at.is_none()) {
        entry.retired_at = Some(now.to_string());
    }
    if !history.iter().any(|e| e.sid == issued.sid) {
        history.push(KeyHistoryEntry {
            sid: issued.sid.to_string(),
            reason: issued.reason.to_string(),
            delivered_at: now.to_string(),
            retired_at: None,
            deleted_at: None,
            deleted_because: None,
        });
    }
    bounded(history, resource.history_limit())
}

/// The last `limit` entries of `history`.
fn bounded(mut history: Vec<KeyHistoryEntry>, limit: usize) -> Vec<KeyHistoryEntry> {
    history.drain(..history.len().saturating_sub(limit));
    history
}

/// `history` with the keys `deleted` marked deleted at `now`, because `why`.
fn history_deleted<'a>(
    history: &[KeyHistoryEntry],
    deleted: impl IntoIterator<Item = (&'a str, &'static str)>,
    now: Timestamp,
) -> Vec<KeyHistoryEntry> {
    let mut history = history.to_vec();
    for (sid, why) in deleted {
        for entry in history.iter_mut().filter(|e| e.sid == sid && e.deleted_at.is_none()) {
            entry.retired_at.get_or_insert_with(|| now.to_string());
            entry.deleted_at = Some(now.to_string());
            entry.deleted_because = Some(why.to_string());
        }
    }
    history
}

/// The status once `issued` is delivered: the key it replaces, if any, starts its grace period.
pub fn delivered(resource: &TwilioApiKey, issued: Issued<'_>, now: Timestamp) -> TwilioApiKeyStatus {
    let previous = resource.status.clone().unwrap_or_default();
    let mut retiring = previous.retiring_keys.clone();
    let mut rollout_entries = previous.rollout.clone();
    if let Some(old) = previous.key_sid.as_ref().filter(|old| old.as_str() != issued.sid) {
        // Validation bounds the grace periods; past jiff's range the key would never retire.
        let after = |period: SignedDuration| now.checked_add(period).unwrap_or(Timestamp::MAX).to_string();
        let grace = resource.grace_period();
        let waits_for_rollouts = !resource.spec.rollout_restart_targets.is_empty();
        retiring.push(RetiringKey {
            sid: old.clone(),
            delete_after: after(grace),
            account_ref: previous.account_ref.clone(),
            account_sid: previous.account_sid.clone(),
            delete_by: waits_for_rollouts.then(|| after(rollout::max_grace_period(resource, grace))),
        });
        // The targets are restarted for this key; Pods that roll out drop every older key too.
        rollout_entries = rollout::started(resource);
    }
    let replaced = previous.key_sid.as_deref().filter(|old| *old != issued.sid);
    let history = history_with(resource, &previous.history, &issued, replaced, now);
    let status = TwilioApiKeyStatus {
        key_sid: Some(issued.sid.to_string()),
        key_type: Some(resource.spec.key_type),
        account_sid: Some(issued.account_sid.to_string()),
        account_ref: Some(resource.spec.account_ref.clone()),
        region: Some(issued.region.to_string()),
        friendly_name: Some(issued.friendly_name),
        policy: resource.restricted_policy().cloned(),
        secret_name: Some(resource.desired_secret_name()),
        key_created_at: Some(now.to_string()),
        last_rotation_trigger: resource.spec.rotation.as_ref().and_then(|r| r.trigger.clone()),
        last_rotate_annotation: resource.annotations().get(ROTATE_ANNOTATION).cloned(),
        retiring_keys: retiring,
        rollout: rollout_entries,
        history,
        ..previous
    };
    ready(resource, &status, now)
}

/// The status once a key found in a Secret is adopted (`spec.secret.adopt`): recorded as Twilio
/// holds it (its name, type, policy and creation time), so that the next passes rename, re-scope
/// or rotate it as the spec asks, as for a key this resource created.
pub fn adopted(resource: &TwilioApiKey, issued: Issued<'_>, key: &Key, now: Timestamp) -> TwilioApiKeyStatus {
    let policy = key.policy.as_ref().and_then(|p| serde_json::from_value::<crate::api::KeyPolicy>(p.clone()).ok());
    let key_type = if key.policy.is_some() { KeyType::Restricted } else { KeyType::Standard };
    let status = TwilioApiKeyStatus {
        key_type: Some(key_type),
        policy,
        key_created_at: Some(key.created_at().unwrap_or(now).to_string()),
        ..delivered(resource, issued, now)
    };
    ready(resource, &status, now)
}

/// The status after the key was renamed (and, for a Restricted key, its policy replaced).
pub fn updated_in_place(resource: &TwilioApiKey, now: Timestamp) -> TwilioApiKeyStatus {
    let previous = resource.status.clone().unwrap_or_default();
    let status = TwilioApiKeyStatus {
        friendly_name: Some(resource.desired_friendly_name()),
        policy: resource.restricted_policy().cloned(),
        ..previous
    };
    ready(resource, &status, now)
}

/// `status` with Ready conditions (or Reconciling while the key still waits for its name in
/// Twilio), the current generation and the next interval rotation.
pub fn ready(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, now: Timestamp) -> TwilioApiKeyStatus {
    let sid = status.key_sid.clone().unwrap_or_default();
    let secret_name = resource.desired_secret_name();
    let health = if status.friendly_name.as_deref() == Some(resource.desired_friendly_name().as_str()) {
        let mut message = format!("Key {sid} delivered in Secret {secret_name}");
        let waiting = rollout::waiting(resource, status);
        if !waiting.is_empty() {
            let waiting = rollout::names(&waiting);
            message.push_str(&format!("; the old key stays valid until {waiting} rolled out"));
        }
        if let Some(held) = held_for_window(resource, status, now) {
            message.push_str(&format!("; {held}"));
        }
        Health::Ready { reason: "KeyReady", message }
    } else {
        let message = format!("Key {sid} delivered in Secret {secret_name}; its name in Twilio is being set");
        Health::Progressing { reason: "NamingKey", message }
    };
    let windows = schedule(resource);
    TwilioApiKeyStatus {
        observed_generation: resource.meta().generation,
        conditions: conditions::conditions_for(&status.conditions, &health, resource.meta().generation, now),
        next_rotation_at: rotation_start(resource, status, now).map(|t| t.to_string()),
        next_window_at: windows.and_then(|w| w.next_opening_after(now)).map(|t| t.to_string()),
        ..status.clone()
    }
}

/// The status of a revoked resource: no key, no Secret, Ready False with reason Revoked.
pub fn revoked(resource: &TwilioApiKey, now: Timestamp) -> TwilioApiKeyStatus {
    let previous = resource.status.clone().unwrap_or_default();
    let health = Health::Inactive {
        reason: "Revoked",
        message: "spec.revoked is true: the resource has no key in Twilio and no Secret".into(),
    };
    let deleted = all_keys(resource, &previous).into_iter().map(|k| k.sid).collect::<Vec<_>>();
    TwilioApiKeyStatus {
        observed_generation: resource.meta().generation,
        conditions: conditions::conditions_for(&previous.conditions, &health, resource.meta().generation, now),
        history: history_deleted(&previous.history, deleted.iter().map(|sid| (sid.as_str(), "Revoked")), now),
        ..Default::default()
    }
}

/// `status` once the rollout restart targets have all rolled out at `now`: the grace period of
/// each key that waited for them starts again, so that it covers the Pods a finished rollout
/// still leaves terminating (and consumers that are not targets), never past its deleteBy.
pub fn rolled_out(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, now: Timestamp) -> TwilioApiKeyStatus {
    let after_grace = now.checked_add(resource.grace_period()).unwrap_or(Timestamp::MAX);
    let mut status = status.clone();
    for key in status.retiring_keys.iter_mut() {
        let Some(latest) = key.delete_by.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) else { continue };
        let earliest = key.delete_after.parse::<Timestamp>().unwrap_or(Timestamp::MIN);
        key.delete_after = earliest.max(after_grace).min(latest).to_string();
    }
    status
}

/// The retiring keys that are due by `now`, and the status without them; None when no key is
/// due. A key is due once its grace period has ended, and, if it waits for rollouts (deleteBy),
/// the rollout restart targets the spec names have all rolled out; at deleteBy it is due
/// regardless. An unreadable deadline counts as passed. With the last retiring key, what the
/// status says of rollouts goes too.
pub fn retire_due(
    resource: &TwilioApiKey,
    status: &TwilioApiKeyStatus,
    now: Timestamp,
) -> Option<(Vec<RetiringKey>, TwilioApiKeyStatus)> {
    let passed = |deadline: &str| deadline.parse::<Timestamp>().map_or(true, |deadline| deadline <= now);
    let rolled_out = rollout::waiting(resource, status).is_empty();
    let (due, remaining): (Vec<RetiringKey>, Vec<RetiringKey>) =
        status.retiring_keys.iter().cloned().partition(|r| match r.delete_by.as_deref() {
            None => passed(&r.delete_after),
            Some(latest) => passed(latest) || (passed(&r.delete_after) && rolled_out),
        });
    if due.is_empty() {
        return None;
    }
    let deleted = due.iter().map(|r| (r.sid.as_str(), Deletion::of(r, rolled_out).reason()));
    let history = history_deleted(&status.history, deleted, now);
    let mut status = TwilioApiKeyStatus { retiring_keys: remaining, history, ..status.clone() };
    if status.retiring_keys.is_empty() {
        status.rollout.clear();
        status
            .conditions
            .retain(|c| ![rollout::ROLLOUT_DELAYED, rollout::ROLLOUT_TARGET_MISSING].contains(&c.type_.as_str()));
    }
    Some((due, status))
}

/// Why a retiring key that is due goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Its grace period ended; it waited for no rollout.
    GracePeriodEnded,
    /// Its grace period ended and the rollouts it waited for are done.
    RolledOut,
    /// The rollouts it waited for are not done, and its deleteBy has come.
    MaxGracePeriod,
}

impl Deletion {
    pub fn of(key: &RetiringKey, rolled_out: bool) -> Self {
        match key.delete_by {
            None => Deletion::GracePeriodEnded,
            Some(_) if rolled_out => Deletion::RolledOut,
            Some(_) => Deletion::MaxGracePeriod,
        }
    }

    /// As status.history says it.
    pub fn reason(self) -> &'static str {
        match self {
            Deletion::GracePeriodEnded => "GracePeriodEnded",
            Deletion::RolledOut => "RolledOut",
            Deletion::MaxGracePeriod => "MaxGracePeriod",
        }
    }

    /// As the KeyDeleted Event says it: "Deleted retired key SK… {when}".
    pub fn when(self) -> &'static str {
        match self {
            Deletion::GracePeriodEnded => "after its grace period",
            Deletion::RolledOut => "after its grace period, once the rollout restart targets had rolled out",
            Deletion::MaxGracePeriod => {
                "at its maxGracePeriod, although the rollout restart targets had not all rolled out"
            }
        }
    }
}

/// The current key and every retiring one, each with the account it was created through.
pub fn all_keys(resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Vec<RetiringKey> {
    current_key(resource, status).into_iter().chain(status.retiring_keys.iter().cloned()).collect()
}

/// The current key, with the account it was created through.
pub fn current_key(resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Option<RetiringKey> {
    status.key_sid.as_ref().map(|sid| RetiringKey {
        sid: sid.clone(),
        delete_after: String::new(),
        account_ref: status.account_ref.clone().or_else(|| Some(resource.spec.account_ref.clone())),
        account_sid: status.account_sid.clone(),
        delete_by: None,
    })
}

/// Every Secret name this resource may have written to.
pub fn secret_names(resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Vec<String> {
    let mut names = vec![resource.desired_secret_name()];
    for name in [&status.secret_name, &status.stale_secret_name].into_iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// When the current key is due for rotation by spec.rotation.interval (windows aside).
pub fn next_rotation_at(resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Option<Timestamp> {
    let interval = resource.spec.rotation.as_ref()?.interval.as_ref()?;
    let interval = SignedDuration::try_from(duration::parse(interval).ok()?).ok()?;
    let created: Timestamp = status.key_created_at.as_ref()?.parse().ok()?;
    created.checked_add(interval).ok()
}

/// The rotation windows of the spec; None when it sets none (or they do not parse, which
/// validation reports before any step).
pub fn schedule(resource: &TwilioApiKey) -> Option<Schedule> {
    Schedule::parse(&resource.spec.rotation.as_ref()?.windows).ok().flatten()
}

/// Whether a scheduled rotation may start at `now`: no windows, or one is open.
pub fn window_open(resource: &TwilioApiKey, now: Timestamp) -> bool {
    schedule(resource).is_none_or(|windows| windows.is_open(now))
}

/// When the next scheduled rotation starts: when the key is due by interval, or, with windows,
/// the first time from then on that one is open; if that time has passed outside any window
/// (no pass came while it was open), when the next one opens. Stable from pass to pass: it
/// changes only when a window opens or the key does.
pub fn rotation_start(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, now: Timestamp) -> Option<Timestamp> {
    let due = next_rotation_at(resource, status)?;
    let Some(windows) = schedule(resource) else { return Some(due) };
    match windows.open_from(due) {
        Some(start) if start >= now || windows.is_open(now) => Some(start),
        _ => windows.open_from(now),
    }
}

/// What the Ready message says while a key due for interval rotation waits for a window.
fn held_for_window(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, now: Timestamp) -> Option<String> {
    let due = next_rotation_at(resource, status).filter(|due| *due <= now)?;
    let windows = schedule(resource).filter(|w| !w.is_open(now))?;
    let opens = windows.open_from(now).map_or("never".to_string(), |t| t.to_string());
    Some(format!("rotation due since {due} waits for a rotation window, the next opening at {opens}"))
}

/// When to look at the resource again: at the next resync, or earlier when a retired key's grace
/// period ends or the key is due for interval rotation (a little after, so that it is due).
/// Deadlines live in the status, so they survive restarts.
pub fn next_wake(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, resync: Duration, now: Timestamp) -> Duration {
    // With windows, also when the key falls due, so that the status says it waits for one.
    let due = next_rotation_at(resource, status).filter(|due| *due > now);
    let deadlines =
        deadlines(resource, status).chain(rotation_start(resource, status, now)).chain(due).map(|t| until(t, now));
    // While old keys wait for rollouts, the targets are looked at every few seconds (a target not
    // restarted yet is restarted at once, one whose restart failed when its backoff ends).
    let rollouts = rollout::waiting(resource, status).into_iter().map(|entry| rollout_wake(entry, now));
    deadlines.chain(rollouts).chain([resync]).min().unwrap_or(resync) + Duration::from_millis(100)
}

/// When to look again at a resource that stalled (an error only a change can fix): when the
/// stall's retry interval `retry` has passed, unless a retiring key falls due before that, or
/// its rollouts are to be looked at. Deadlines already passed do not count: a stalled resource
/// meets them on the next pass or fails them, and must not retry at once, over and over (a key
/// due for rotation whose Secret cannot be written would create and delete keys without end).
pub fn stalled_wake(resource: &TwilioApiKey, status: &TwilioApiKeyStatus, retry: Duration, now: Timestamp) -> Duration {
    let deadlines = deadlines(resource, status).filter(|deadline| *deadline > now).map(|t| until(t, now));
    let rollouts = rollout::waiting(resource, status)
        .into_iter()
        .map(|entry| rollout_wake(entry, now).max(STALLED_ROLLOUT_POLL_INTERVAL));
    deadlines.chain(rollouts).chain([retry]).min().unwrap_or(retry) + Duration::from_millis(100)
}

/// How often a stalled resource looks at its rollouts.
const STALLED_ROLLOUT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The retiring keys' deadlines: deleteBy, and deleteAfter unless the key waits for rollouts
/// that have not completed (then its end comes with the rollouts, which are looked at apart).
fn deadlines<'a>(resource: &TwilioApiKey, status: &'a TwilioApiKeyStatus) -> impl Iterator<Item = Timestamp> + 'a {
    let waiting = !rollout::waiting(resource, status).is_empty();
    status
        .retiring_keys
        .iter()
        .flat_map(move |r| [(r.delete_by.is_none() || !waiting).then_some(&r.delete_after), r.delete_by.as_ref()])
        .flatten()
        .filter_map(|deadline| deadline.parse::<Timestamp>().ok())
}

fn until(deadline: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// When a target the retiring keys wait for is next looked at: its rollout every few seconds once
/// restarted; its restart at once, or when the backoff after a failed restart ends.
fn rollout_wake(entry: &crate::api::RolloutTargetStatus, now: Timestamp) -> Duration {
    if entry.restarted_at.is_some() {
        return rollout::POLL_INTERVAL;
    }
    match entry.next_restart_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(retry_at) => until(retry_at, now),
        None => Duration::ZERO,
    }
}

/// `status` with at most `max` retiring keys once the current key retires too: the oldest
/// (earliest created, so first in the list) that must go to make room, and the status without
/// them. None when there is room.
pub fn make_room(
    status: &TwilioApiKeyStatus,
    max: usize,
    now: Timestamp,
) -> Option<(Vec<RetiringKey>, TwilioApiKeyStatus)> {
    let keep = max.saturating_sub(1);
    if status.key_sid.is_none() || status.retiring_keys.len() <= keep {
        return None;
    }
    let mut status = status.clone();
    let evicted: Vec<RetiringKey> = status.retiring_keys.drain(..status.retiring_keys.len() - keep).collect();
    status.history = history_deleted(&status.history, evicted.iter().map(|r| (r.sid.as_str(), "RetiringLimit")), now);
    Some((evicted, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountKind, AccountRef, RolloutTargetStatus, WorkloadKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn resource(spec: serde_json::Value, status: Option<TwilioApiKeyStatus>) -> TwilioApiKey {
        let mut resource: TwilioApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "twilio-operator.dev/v1alpha1",
            "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team", "uid": "u1", "generation": 3},
            "spec": spec,
        }))
        .unwrap();
        resource.status = status;
        resource
    }

    fn spec() -> serde_json::Value {
        serde_json::json!({"accountRef": {"name": "main"}})
    }

    fn retiring(sid: &str, delete_after: &str) -> RetiringKey {
        RetiringKey {
            sid: sid.into(),
            delete_after: delete_after.into(),
            account_ref: None,
            account_sid: None,
            delete_by: None,
        }
    }

    fn issued(sid: &str, friendly_name: &str) -> Issued<'static> {
        Issued {
            sid: Box::leak(sid.to_string().into_boxed_str()),
            account_sid: "AC1",
            region: "us1",
            friendly_name: friendly_name.into(),
            reason: "Created",
        }
    }

    fn reason_condition() -> Condition {
        Condition {
            type_: String::new(),
            status: "True".into(),
            reason: "RolloutDeadlineExceeded".into(),
            message: "late".into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()),
        }
    }

    fn reason(status: &TwilioApiKeyStatus) -> (&str, &str) {
        conditions::ready_of(&status.conditions).unwrap()
    }

    #[test]
    fn an_adopted_key_is_recorded_as_twilio_holds_it_so_that_the_spec_then_applies() {
        let key = |policy: Option<serde_json::Value>| Key {
            sid: "SK9".into(),
            friendly_name: Some("made by hand".into()),
            date_created: Some("Thu, 01 Oct 2026 10:00:00 +0000".into()),
            policy,
        };
        let restricted_spec = serde_json::json!({"accountRef": {"name": "main"}, "keyType": "Restricted",
            "policy": {"allow": ["/twilio/messaging/messages/create"]}});
        let standard = adopted(&resource(restricted_spec, None), issued("SK9", "made by hand"), &key(None), now());
        assert_eq!(standard.key_sid.as_deref(), Some("SK9"));
        assert_eq!(standard.key_type, Some(KeyType::Standard), "as Twilio holds it, not as the spec asks");
        assert_eq!(standard.policy, None);
        assert_eq!(standard.friendly_name.as_deref(), Some("made by hand"));
        assert_eq!(standard.key_created_at.as_deref(), Some("2026-10-01T10:00:00Z"), "Twilio's creation time");
        let allow = serde_json::json!({"allow": ["/twilio/messaging/messages/read"]});
        let restricted = adopted(&resource(spec(), None), issued("SK9", "made by hand"), &key(Some(allow)), now());
        assert_eq!(restricted.key_type, Some(KeyType::Restricted));
        assert_eq!(restricted.policy.map(|p| p.allow), Some(vec!["/twilio/messaging/messages/read".to_string()]));
    }

    #[test]
    fn a_first_delivery_records_the_key_and_waits_for_its_name() {
        let status = delivered(&resource(spec(), None), issued("SK1", "twilio-operator:pending:u1"), now());
        assert_eq!(status.key_sid.as_deref(), Some("SK1"));
        assert_eq!(status.account_sid.as_deref(), Some("AC1"));
        assert_eq!(status.secret_name.as_deref(), Some("app"));
        assert_eq!(status.key_created_at.as_deref(), Some(NOW));
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.retiring_keys.is_empty());
        assert_eq!(reason(&status), ("False", "NamingKey"));
        let named = delivered(&resource(spec(), None), issued("SK1", "team/app"), now());
        assert_eq!(reason(&named), ("True", "KeyReady"));
    }

    #[test]
    fn a_rotation_retires_the_previous_key_for_the_grace_period() {
        let previous = TwilioApiKeyStatus {
            key_sid: Some("SK0".into()),
            account_sid: Some("AC0".into()),
            retiring_keys: vec![retiring("SKold", "2026-01-01T00:05:00Z")],
            ..Default::default()
        };
        let with_grace = serde_json::json!({"accountRef": {"name": "main"}, "rotation": {"gracePeriod": "1h"}});
        let cases = [(spec(), "2026-01-01T00:10:00Z"), (with_grace, "2026-01-01T01:00:00Z")];
        for (spec, deadline) in cases {
            let status = delivered(&resource(spec, Some(previous.clone())), issued("SK1", "team/app"), now());
            let sids: Vec<(&str, &str)> =
                status.retiring_keys.iter().map(|r| (r.sid.as_str(), r.delete_after.as_str())).collect();
            assert_eq!(sids, [("SKold", "2026-01-01T00:05:00Z"), ("SK0", deadline)]);
            assert_eq!(status.retiring_keys[1].account_sid.as_deref(), Some("AC0"), "the old key's account");
        }
        // Delivering the same key again (a recorded delivery) retires nothing.
        let again = delivered(&resource(spec(), Some(previous.clone())), issued("SK0", "team/app"), now());
        assert_eq!(again.retiring_keys.len(), 1);
    }

    #[test]
    fn due_keys_are_those_whose_deadline_passed_or_is_unreadable() {
        let status = TwilioApiKeyStatus {
            retiring_keys: vec![
                retiring("SKpast", "2025-12-31T23:59:59Z"),
                retiring("SKnow", NOW),
                retiring("SKlater", "2026-01-01T00:00:01Z"),
                retiring("SKgarbled", "soon"),
            ],
            ..Default::default()
        };
        let resource = resource(spec(), None);
        let (due, rest) = retire_due(&resource, &status, now()).unwrap();
        let due: Vec<&str> = due.iter().map(|r| r.sid.as_str()).collect();
        assert_eq!(due, ["SKpast", "SKnow", "SKgarbled"]);
        assert_eq!(rest.retiring_keys, vec![retiring("SKlater", "2026-01-01T00:00:01Z")]);
        assert!(retire_due(&resource, &rest, now()).is_none());
    }

    fn with_targets(targets: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "accountRef": {"name": "main"},
            "rotation": {"gracePeriod": "1m", "maxGracePeriod": "1h"},
            "rolloutRestartTargets": targets
        })
    }

    fn entry(kind: WorkloadKind, name: &str, complete: bool) -> RolloutTargetStatus {
        RolloutTargetStatus {
            kind,
            selector: None,
            name: name.into(),
            complete,
            restarted_at: Some(NOW.into()),
            message: None,
            restart_failures: 0,
            next_restart_at: None,
        }
    }

    #[test]
    fn a_rotation_with_targets_waits_for_their_rollout_at_most_the_max_grace_period() {
        let spec = with_targets(serde_json::json!([{"kind": "Deployment", "name": "api"}]));
        let previous = TwilioApiKeyStatus { key_sid: Some("SK0".into()), ..Default::default() };
        let status = delivered(&resource(spec.clone(), Some(previous)), issued("SK1", "team/app"), now());
        let old = &status.retiring_keys[0];
        assert_eq!(
            (old.delete_after.as_str(), old.delete_by.as_deref()),
            ("2026-01-01T00:01:00Z", Some("2026-01-01T01:00:00Z"))
        );
        assert_eq!(status.rollout.len(), 1);
        assert!(!status.rollout[0].complete && status.rollout[0].restarted_at.is_none(), "restarted after the write");
        assert_eq!(reason(&status), ("True", "KeyReady"));
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert!(ready.message.contains("until Deployment/api rolled out"), "{}", ready.message);
        // The first key retires nothing, and restarts nothing.
        let first = delivered(&resource(spec, None), issued("SK1", "team/app"), now());
        assert!(first.rollout.is_empty());
        // Without targets, a key retires at the end of its grace period, as before.
        let plain = serde_json::json!({"accountRef": {"name": "main"}});
        let previous = TwilioApiKeyStatus {
            key_sid: Some("SK0".into()),
            rollout: vec![entry(WorkloadKind::Deployment, "api", false)],
            ..Default::default()
        };
        let status = delivered(&resource(plain, Some(previous)), issued("SK1", "team/app"), now());
        assert_eq!(status.retiring_keys[0].delete_by, None);
        assert!(status.rollout.is_empty(), "a rotation without targets waits for no earlier rollout");
    }

    #[test]
    fn a_waiting_key_goes_after_its_grace_period_once_rolled_out_or_at_its_latest_deadline() {
        let targets = with_targets(serde_json::json!([
            {"kind": "Deployment", "name": "api"}, {"kind": "StatefulSet", "name": "db"}
        ]));
        let old =
            RetiringKey { delete_by: Some("2026-01-01T01:00:00Z".into()), ..retiring("SK0", "2025-12-31T23:59:00Z") };
        let status = |api: bool, db: bool| TwilioApiKeyStatus {
            retiring_keys: vec![old.clone()],
            rollout: vec![entry(WorkloadKind::Deployment, "api", api), entry(WorkloadKind::StatefulSet, "db", db)],
            conditions: vec![Condition { type_: rollout::ROLLOUT_DELAYED.into(), ..reason_condition() }],
            ..Default::default()
        };
        let key = resource(targets, None);
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert!(retire_due(&key, &status(true, false), now()).is_none(), "db has not rolled out");
        assert!(retire_due(&key, &status(false, false), at("2026-01-01T00:59:59Z")).is_none());
        let (due, rest) = retire_due(&key, &status(true, true), now()).unwrap();
        assert_eq!(due[0].sid, "SK0");
        assert!(rest.rollout.is_empty() && rest.conditions.is_empty(), "nothing is waited for any more");
        let (due, _) = retire_due(&key, &status(false, false), at("2026-01-01T01:00:00Z")).unwrap();
        assert_eq!(due[0].sid, "SK0", "at deleteBy, rolled out or not");
        // Rolled out, but inside the grace period: not yet.
        let early = TwilioApiKeyStatus {
            retiring_keys: vec![RetiringKey { delete_after: "2026-01-01T00:01:00Z".into(), ..old.clone() }],
            ..status(true, true)
        };
        assert!(retire_due(&key, &early, now()).is_none());
        // A target the spec no longer names is not waited for.
        let only_api = resource(with_targets(serde_json::json!([{"kind": "Deployment", "name": "api"}])), None);
        assert!(retire_due(&only_api, &status(true, false), now()).is_some());
    }

    #[test]
    fn once_rolled_out_a_waiting_key_gets_its_grace_period_again_within_its_delete_by() {
        let spec = with_targets(serde_json::json!([{"kind": "Deployment", "name": "api"}]));
        let key = resource(spec, None);
        let waiting = |delete_after: &str, delete_by: Option<&str>| TwilioApiKeyStatus {
            retiring_keys: vec![RetiringKey { delete_by: delete_by.map(Into::into), ..retiring("SK0", delete_after) }],
            ..Default::default()
        };
        let after = |status: TwilioApiKeyStatus| rolled_out(&key, &status, now()).retiring_keys[0].delete_after.clone();
        // Grace 1m from now; the rotation's own deadline was earlier.
        assert_eq!(after(waiting("2025-12-31T23:59:30Z", Some("2026-01-01T01:00:00Z"))), "2026-01-01T00:01:00Z");
        // Never earlier than it was, nor later than deleteBy.
        assert_eq!(after(waiting("2026-01-01T00:05:00Z", Some("2026-01-01T01:00:00Z"))), "2026-01-01T00:05:00Z");
        assert_eq!(after(waiting("2025-12-31T23:59:30Z", Some("2026-01-01T00:00:30Z"))), "2026-01-01T00:00:30Z");
        // A key that did not wait for rollouts keeps its deadline.
        assert_eq!(after(waiting("2025-12-31T23:59:30Z", None)), "2025-12-31T23:59:30Z");
    }

    #[test]
    fn while_keys_wait_for_rollouts_the_targets_are_polled() {
        let resync = Duration::from_secs(600);
        let spec = with_targets(serde_json::json!([{"kind": "Deployment", "name": "api"}]));
        let old =
            RetiringKey { delete_by: Some("2026-01-01T01:00:00Z".into()), ..retiring("SK0", "2026-01-01T00:01:00Z") };
        let waiting = TwilioApiKeyStatus {
            retiring_keys: vec![old.clone()],
            rollout: vec![entry(WorkloadKind::Deployment, "api", false)],
            ..Default::default()
        };
        let wake = next_wake(&resource(spec.clone(), None), &waiting, resync, now());
        assert_eq!(wake, rollout::POLL_INTERVAL + Duration::from_millis(100));
        let done = TwilioApiKeyStatus { rollout: vec![entry(WorkloadKind::Deployment, "api", true)], ..waiting };
        assert_eq!(next_wake(&resource(spec, None), &done, resync, now()), Duration::from_millis(60_100));
    }

    #[test]
    fn wake_ups_come_at_the_earliest_deadline_or_the_resync() {
        let resync = Duration::from_secs(600);
        let interval = serde_json::json!({"accountRef": {"name": "main"}, "rotation": {"interval": "1h"}});
        let created = |at: &str| TwilioApiKeyStatus { key_created_at: Some(at.into()), ..Default::default() };
        let retiring_at =
            |at: &str| TwilioApiKeyStatus { retiring_keys: vec![retiring("SK0", at)], ..Default::default() };
        let ms = Duration::from_millis;
        let cases = [
            (spec(), TwilioApiKeyStatus::default(), resync + ms(100)),
            (spec(), retiring_at("2026-01-01T00:01:00Z"), ms(60_100)),
            (spec(), retiring_at("2025-01-01T00:00:00Z"), ms(100)),
            (spec(), retiring_at("2026-01-02T00:00:00Z"), resync + ms(100)),
            (interval.clone(), created("2025-12-31T23:05:00Z"), ms(300_100)),
            (interval, created("2025-12-31T23:58:00Z"), resync + ms(100)),
        ];
        for (spec, status, expected) in cases {
            assert_eq!(next_wake(&resource(spec, None), &status, resync, now()), expected, "{status:?}");
        }
    }

    /// Defect: a stalled resource whose rotation (or retirement) deadline had passed was woken
    /// 100 ms later, over and over; each pass went through Twilio.
    #[test]
    fn a_stalled_resource_waits_for_its_retry_interval_whatever_deadline_has_passed() {
        let retry = Duration::from_secs(300);
        let interval =
            serde_json::json!({"accountRef": {"name": "main"}, "rotation": {"interval": "1m", "gracePeriod": "0s"}});
        let overdue = TwilioApiKeyStatus {
            key_created_at: Some("2025-12-31T00:00:00Z".into()),
            retiring_keys: vec![retiring("SK0", "2025-01-01T00:00:00Z")],
            ..Default::default()
        };
        let resource = resource(interval, None);
        assert_eq!(next_wake(&resource, &overdue, retry, now()), Duration::from_millis(100), "Ready: due now");
        assert_eq!(stalled_wake(&resource, &overdue, retry, now()), retry + Duration::from_millis(100));
        // A retiring key due before the retry interval ends is still deleted on time.
        let due_soon = TwilioApiKeyStatus { retiring_keys: vec![retiring("SK0", "2026-01-01T00:00:05Z")], ..overdue };
        assert_eq!(stalled_wake(&resource, &due_soon, retry, now()), Duration::from_millis(5_100));
    }

    /// Defect: a rollout restart target that could not be restarted (missing, forbidden) was
    /// tried again 100 ms later, for up to maxGracePeriod.
    #[test]
    fn a_target_whose_restart_failed_is_tried_again_when_its_backoff_ends() {
        let spec = serde_json::json!({"accountRef": {"name": "main"}, "rolloutRestartTargets": [{"kind": "Deployment", "name": "gone"}]});
        let mut target = entry(WorkloadKind::Deployment, "gone", false);
        target.restarted_at = None;
        target.restart_failures = 3;
        target.next_restart_at = Some("2026-01-01T00:00:20Z".into());
        let status = TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            retiring_keys: vec![RetiringKey { delete_by: Some("2026-01-02T00:00:00Z".into()), ..retiring("SK0", NOW) }],
            rollout: vec![target.clone()],
            ..Default::default()
        };
        let resync = Duration::from_secs(600);
        let resource = resource(spec, None);
        // Its grace period has ended (deleteAfter is now), but it waits for the target: the
        // next look is when the target's backoff ends.
        assert_eq!(next_wake(&resource, &status, resync, now()), Duration::from_millis(20_100));
        assert_eq!(stalled_wake(&resource, &status, resync, now()), Duration::from_millis(30_100));
        target.next_restart_at = None;
        let never_tried = TwilioApiKeyStatus { rollout: vec![target], ..status };
        assert_eq!(next_wake(&resource, &never_tried, resync, now()), Duration::from_millis(100));
    }

    #[test]
    fn a_rotation_at_the_retiring_limit_makes_room_by_the_oldest_keys() {
        let status = TwilioApiKeyStatus {
            key_sid: Some("SK9".into()),
            retiring_keys: ["SK1", "SK2", "SK3", "SK4", "SK5"].iter().map(|sid| retiring(sid, NOW)).collect(),
            ..Default::default()
        };
        let (evicted, kept) = make_room(&status, 5, now()).unwrap();
        assert_eq!(evicted.iter().map(|k| k.sid.as_str()).collect::<Vec<_>>(), ["SK1"]);
        assert_eq!(kept.retiring_keys.len(), 4, "the current key retires next: five in all");
        let (evicted, kept) = make_room(&status, 2, now()).unwrap();
        assert_eq!(evicted.len(), 4);
        assert_eq!(kept.retiring_keys[0].sid, "SK5");
        assert!(make_room(&kept, 5, now()).is_none());
        assert!(make_room(&TwilioApiKeyStatus { key_sid: None, ..status }, 1, now()).is_none(), "nothing retires");
    }

    #[test]
    fn revocation_clears_everything_but_the_conditions() {
        let status = TwilioApiKeyStatus { key_sid: Some("SK1".into()), ..Default::default() };
        let revoked = revoked(&resource(spec(), Some(status)), now());
        assert_eq!(revoked.key_sid, None);
        assert_eq!(reason(&revoked), ("False", "Revoked"));
    }

    #[test]
    fn every_key_and_secret_of_the_resource_is_listed_once() {
        let other = AccountRef { kind: AccountKind::ClusterTwilioAccount, name: "shared".into() };
        let status = TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            account_ref: Some(other.clone()),
            retiring_keys: vec![retiring("SK0", NOW)],
            secret_name: Some("old".into()),
            stale_secret_name: Some("app".into()),
            ..Default::default()
        };
        let resource = resource(spec(), Some(status.clone()));
        let keys = all_keys(&resource, &status);
        assert_eq!(keys.iter().map(|k| k.sid.as_str()).collect::<Vec<_>>(), ["SK1", "SK0"]);
        assert_eq!(keys[0].account_ref.as_ref(), Some(&other), "the account it was created through");
        assert_eq!(secret_names(&resource, &status), ["app", "old"]);
        let unrecorded = TwilioApiKeyStatus::default();
        assert_eq!(current_key(&resource, &unrecorded), None);
        assert_eq!(
            current_key(&resource, &TwilioApiKeyStatus { key_sid: Some("SK2".into()), ..unrecorded })
                .and_then(|k| k.account_ref),
            Some(resource.spec.account_ref.clone())
        );
    }

    fn history_sids(status: &TwilioApiKeyStatus) -> Vec<&str> {
        status.history.iter().map(|e| e.sid.as_str()).collect()
    }

    #[test]
    fn the_history_keeps_the_last_keys_up_to_the_limit_and_says_what_became_of_each() {
        let spec =
            serde_json::json!({"accountRef": {"name": "main"}, "rotation": {"gracePeriod": "0s", "historyLimit": 3}});
        let mut key = resource(spec, None);
        let mut at = now();
        for (i, reason) in
            ["Created", "TriggerChanged", "TriggerChanged", "IntervalElapsed", "SecretDrift"].iter().enumerate()
        {
            let sid = format!("SK{i}");
            let issued = Issued { reason, ..issued(&sid, "team/app") };
            let mut status = delivered(&key, issued, at);
            at = at.checked_add(SignedDuration::from_secs(60)).unwrap();
            if let Some((_, after)) = retire_due(&key, &status, at) {
                status = after;
            }
            key.status = Some(status);
        }
        let status = key.status.clone().unwrap();
        assert_eq!(history_sids(&status), ["SK2", "SK3", "SK4"], "the last 3 of 5");
        let reasons: Vec<&str> = status.history.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["TriggerChanged", "IntervalElapsed", "SecretDrift"]);
        assert!(
            status.history[..2]
                .iter()
                .all(|e| e.retired_at.is_some() && e.deleted_because.as_deref() == Some("GracePeriodEnded"))
        );
        assert_eq!((&status.history[2].retired_at, &status.history[2].deleted_at), (&None, &None), "the current key");
        // Revocation deletes every key; the history says so, and stays.
        let revoked = revoked(&key, at);
        assert_eq!(history_sids(&revoked), ["SK2", "SK3", "SK4"]);
        assert_eq!(revoked.history[2].deleted_because.as_deref(), Some("Revoked"));
        assert_eq!(
            revoked.history[1].deleted_because.as_deref(),
            Some("GracePeriodEnded"),
            "already deleted: kept as it was"
        );
        // historyLimit 0: none at all.
        let none = resource(serde_json::json!({"accountRef": {"name": "main"}, "rotation": {"historyLimit": 0}}), None);
        assert!(delivered(&none, issued("SK9", "team/app"), now()).history.is_empty());
    }

    #[test]
    fn keys_evicted_to_make_room_are_recorded_as_such() {
        let mut status = TwilioApiKeyStatus {
            key_sid: Some("SK3".into()),
            retiring_keys: vec![retiring("SK1", NOW), retiring("SK2", NOW)],
            ..Default::default()
        };
        status.history = ["SK1", "SK2", "SK3"]
            .iter()
            .map(|sid| KeyHistoryEntry {
                sid: sid.to_string(),
                reason: "TriggerChanged".into(),
                delivered_at: NOW.into(),
                retired_at: None,
                deleted_at: None,
                deleted_because: None,
            })
            .collect();
        let (evicted, kept) = make_room(&status, 2, now()).unwrap();
        assert_eq!(evicted.iter().map(|r| r.sid.as_str()).collect::<Vec<_>>(), ["SK1"]);
        assert_eq!(kept.history[0].deleted_because.as_deref(), Some("RetiringLimit"));
        assert_eq!(kept.history[1].deleted_at, None);
    }

    #[test]
    fn a_key_due_outside_its_windows_starts_rotating_when_the_next_opens_and_the_time_is_stable() {
        // 2026-01-01 is a Thursday; the window is Saturdays 02:00-04:00 UTC.
        let spec = serde_json::json!({"accountRef": {"name": "main"}, "rotation": {
            "interval": "1h", "windows": [{"days": ["Sat"], "start": "02:00", "end": "04:00"}]}});
        let status = TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            key_created_at: Some(NOW.into()),
            friendly_name: Some("team/app".into()),
            ..Default::default()
        };
        let key = resource(spec, Some(status.clone()));
        let saturday: Timestamp = "2026-01-03T02:00:00Z".parse().unwrap();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        for now in [now(), at("2026-01-01T05:00:00Z"), at("2026-01-02T23:00:00Z")] {
            assert_eq!(rotation_start(&key, &status, now), Some(saturday), "at {now}");
        }
        assert!(!window_open(&key, at("2026-01-01T05:00:00Z")));
        assert!(window_open(&key, at("2026-01-03T03:00:00Z")));
        // Past the window with no pass in it: the next one.
        assert_eq!(rotation_start(&key, &status, at("2026-01-03T05:00:00Z")), Some(at("2026-01-10T02:00:00Z")));
        let ready = ready(&key, &status, at("2026-01-01T05:00:00Z"));
        assert_eq!(ready.next_window_at.as_deref(), Some("2026-01-03T02:00:00Z"));
        assert_eq!(ready.next_rotation_at.as_deref(), Some("2026-01-03T02:00:00Z"));
        let message = &ready.conditions.iter().find(|c| c.type_ == "Ready").unwrap().message;
        assert!(message.contains("waits for a rotation window, the next opening at 2026-01-03T02:00:00Z"), "{message}");
        // Woken when the key falls due (to say it waits), then at the window.
        let wake = next_wake(&key, &status, Duration::from_secs(86400), now());
        assert_eq!(wake, Duration::from_secs(3600) + Duration::from_millis(100));
        let wake = next_wake(&key, &status, Duration::from_secs(86400 * 7), at("2026-01-02T02:00:00Z"));
        assert_eq!(wake, Duration::from_secs(86400) + Duration::from_millis(100));
    }
}
