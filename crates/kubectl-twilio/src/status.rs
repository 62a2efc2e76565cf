//! `kubectl twilio status NAME`: one screen about a TwilioApiKey: its conditions, its key, its
//! account, its rotation schedule, its retiring keys and its recent Events. Pure: the resource,
//! what was read of its account, its Events and the time in; the text out.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use twilio_operator_api::conditions::{READY, RECONCILING, STALLED};
use twilio_operator_api::{AccountKind, AccountRef, ROTATE_ANNOTATION, RotationWindow, TwilioApiKey};

use crate::table::{field, table};
use crate::time::{age, stamp};

/// How many Events `status` shows.
pub const EVENTS_SHOWN: usize = 10;

/// What was read of the account resource (TwilioAccount or ClusterTwilioAccount) a key names.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountView {
    Found {
        account_sid: String,
        conditions: Vec<Condition>,
        deleting: bool,
    },
    NotFound,
    /// Reading it failed (often RBAC: ClusterTwilioAccounts are cluster-scoped).
    Unreadable(String),
}

/// Whether the resource is Ready for its current generation and not being deleted: what the
/// exit code of `status` says.
pub fn is_ready(resource: &TwilioApiKey) -> bool {
    let Some(status) = &resource.status else {
        return false;
    };
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == READY) else {
        return false;
    };
    ready.status == "True"
        && observed_current(ready.observed_generation.or(status.observed_generation), resource.metadata.generation)
        && resource.metadata.deletion_timestamp.is_none()
}

fn observed_current(observed: Option<i64>, generation: Option<i64>) -> bool {
    match (observed, generation) {
        (Some(observed), Some(generation)) => observed >= generation,
        _ => true,
    }
}

/// One line of the verdict: Ready, Revoked, Stalled, Reconciling, or not ready yet.
pub fn verdict(resource: &TwilioApiKey) -> String {
    let Some(status) = &resource.status else {
        return "no status yet".into();
    };
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let is_true = |type_: &str| condition(type_).is_some_and(|c| c.status == "True");
    let reason = condition(READY).map(|c| c.reason.as_str()).unwrap_or("no Ready condition");
    if resource.metadata.deletion_timestamp.is_some() {
        format!("being deleted ({reason})")
    } else if is_ready(resource) {
        format!("Ready ({reason})")
    } else if is_true(READY) {
        format!("Ready for an older generation ({reason})")
    } else if is_true(STALLED) {
        format!("Stalled ({reason}): it needs a change from you")
    } else if is_true(RECONCILING) {
        format!("Reconciling ({reason}): work in progress")
    } else if reason == "Revoked" {
        "Revoked".into()
    } else {
        format!("not Ready ({reason})")
    }
}

/// What a reader should know before the details: deletion, revocation, suspension, a spec the
/// operator has not acted on yet, a rotation requested and not done.
fn notes(resource: &TwilioApiKey) -> Vec<String> {
    let name = resource.name_any();
    let mut notes = Vec::new();
    let Some(status) = &resource.status else {
        notes.push(format!(
            "The operator has not reported on this resource yet: is it running, and does it watch namespace {}?",
            resource.namespace().unwrap_or_default()
        ));
        return notes;
    };
    if let Some(since) = &resource.metadata.deletion_timestamp {
        notes.push(format!(
            "Being deleted since {} (deletionPolicy {:?}): the finalizer goes once Twilio confirms its keys are gone.",
            since.0, resource.spec.deletion_policy
        ));
    }
    if resource.spec.revoked {
        notes.push(format!(
            "Revoked on purpose (spec.revoked). To issue a new key: kubectl twilio revoke {name} --undo"
        ));
    }
    if resource.spec.suspend {
        notes.push("spec.suspend is true: the operator makes no Twilio calls and no writes for it.".into());
    }
    if !observed_current(status.observed_generation, resource.metadata.generation) {
        notes.push(format!(
            "The status describes generation {}, the spec is at generation {}: the operator has not acted on the latest change yet.",
            status.observed_generation.unwrap_or_default(),
            resource.metadata.generation.unwrap_or_default()
        ));
    }
    let requested = resource.annotations().get(ROTATE_ANNOTATION);
    if requested.is_some() && requested != status.last_rotate_annotation.as_ref() && !resource.spec.revoked {
        notes.push(format!(
            "A rotation was requested ({ROTATE_ANNOTATION}={}) and is not done yet.",
            requested.map(String::as_str).unwrap_or_default()
        ));
    }
    notes
}

fn account_label(account: &AccountRef) -> String {
    let kind = match account.kind {
        AccountKind::TwilioAccount => "TwilioAccount",
        AccountKind::ClusterTwilioAccount => "ClusterTwilioAccount",
    };
    format!("{kind}/{}", account.name)
}

fn account_state(account: &AccountView) -> String {
    match account {
        AccountView::Found { conditions, deleting, .. } => {
            let ready = conditions.iter().find(|c| c.type_ == READY);
            let mut state = match ready {
                Some(c) if c.status == "True" => format!("Ready ({})", c.reason),
                Some(c) => format!("not Ready ({}): {}", c.reason, one_line(&c.message)),
                None => "no status yet".into(),
            };
            if *deleting {
                state.push_str("; being deleted");
            }
            state
        }
        AccountView::NotFound => "not found: the key cannot get a new key from it".into(),
        AccountView::Unreadable(error) => format!("could not be read: {error}"),
    }
}

/// "Sat,Sun 02:00-05:00 Europe/Berlin".
fn window_text(window: &RotationWindow) -> String {
    let days = if window.days.is_empty() {
        "daily".to_string()
    } else {
        window.days.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(",")
    };
    let zone = window.time_zone.as_deref().unwrap_or("UTC");
    format!("{days} {}-{} {zone}", window.start, window.end)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// When an Event last happened: the series' last observation, else its last, own or first
/// timestamp, else when it was recorded.
pub fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn event_count(event: &Event) -> i32 {
    event.series.as_ref().and_then(|s| s.count).or(event.count).unwrap_or(1).max(1)
}

/// The last [`EVENTS_SHOWN`] Events, newest last.
pub fn recent_events(events: &[Event]) -> Vec<&Event> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| event_time(e));
    let skip = sorted.len().saturating_sub(EVENTS_SHOWN);
    sorted.into_iter().skip(skip).collect()
}

/// The `status` screen.
pub fn render_status(resource: &TwilioApiKey, account: &AccountView, events: &[Event], now: Timestamp) -> String {
    let mut out = String::new();
    let status = resource.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "TwilioApiKey {}/{}: {}",
        resource.namespace().unwrap_or_default(),
        resource.name_any(),
        verdict(resource)
    );
    if let Some(ready) = status.conditions.iter().find(|c| c.type_ == READY) {
        let _ = writeln!(out, "  {}", one_line(&ready.message));
    }
    for note in notes(resource) {
        let _ = writeln!(out, "  ! {note}");
    }

    out.push_str("\nConditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  none yet\n");
    } else {
        let ready_message = status.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.as_str());
        let mut rows = vec![["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"].map(String::from).to_vec()];
        let order = |c: &Condition| [READY, RECONCILING, STALLED].iter().position(|t| *t == c.type_).unwrap_or(3);
        let mut conditions: Vec<&Condition> = status.conditions.iter().collect();
        conditions.sort_by_key(|c| order(c));
        for c in conditions {
            let message = if c.type_ != READY && Some(c.message.as_str()) == ready_message {
                "(as Ready)".to_string()
            } else {
                one_line(&c.message)
            };
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(c.last_transition_time.0, now),
                message,
            ]);
        }
        out.push_str(&table(&rows, 2));
    }

    out.push_str("\nKey:\n");
    field(&mut out, "SID", status.key_sid.as_deref().unwrap_or("none"));
    let key_type = status.key_type.map(|t| format!("{t:?}"));
    let key_type = match key_type {
        Some(t) if status.key_type != Some(resource.spec.key_type) => {
            format!("{t} (the spec asks for {:?}: the key rotates)", resource.spec.key_type)
        }
        Some(t) => t,
        None if resource.spec.revoked => format!("{:?} (as the spec asks; no key: revoked)", resource.spec.key_type),
        None => format!("{:?} (as the spec asks; no key yet)", resource.spec.key_type),
    };
    field(&mut out, "Type", &key_type);
    let key_age = match status.key_created_at.as_deref() {
        Some(created) => match created.parse::<Timestamp>() {
            Ok(t) => format!("{} (created {created})", age(t, now)),
            Err(_) => format!("unknown (created {created:?}, not a valid RFC 3339 time)"),
        },
        None => "-".into(),
    };
    field(&mut out, "Age", &key_age);
    let next_rotation =
        match (&status.next_rotation_at, resource.spec.rotation.as_ref().and_then(|r| r.interval.as_ref())) {
            (Some(at), _) => stamp(at, now),
            (None, None) => "not scheduled (spec.rotation.interval is not set)".into(),
            (None, Some(interval)) => format!("every {interval}, once a key is delivered"),
        };
    field(&mut out, "Next rotation", &next_rotation);
    let windows = resource.spec.rotation.as_ref().map(|r| r.windows.as_slice()).unwrap_or_default();
    if !windows.is_empty() {
        let listed: Vec<String> = windows.iter().map(window_text).collect();
        let opens = match &status.next_window_at {
            Some(at) => format!("; the next opens {}", stamp(at, now)),
            None => String::new(),
        };
        field(
            &mut out,
            "Rotation windows",
            &format!("{}{opens} (scheduled rotations start only in one)", listed.join("; ")),
        );
    }
    let secret = match &status.secret_name {
        Some(name) => name.clone(),
        None if resource.spec.revoked => format!("{} (deleted: revoked)", resource.desired_secret_name()),
        None => format!("{} (not written yet)", resource.desired_secret_name()),
    };
    field(&mut out, "Secret", &secret);
    if let Some(stale) = &status.stale_secret_name {
        field(&mut out, "Stale Secret", &format!("{stale} (left under an earlier spec.secret.name; being deleted)"));
    }
    if status.retiring_keys.is_empty() {
        field(&mut out, "Retiring keys", "none");
    } else {
        field(
            &mut out,
            "Retiring keys",
            &format!("{} (still valid, deleted in Twilio after their grace period)", status.retiring_keys.len()),
        );
        let rows: Vec<Vec<String>> = status
            .retiring_keys
            .iter()
            .map(|k| {
                let when = match &k.delete_by {
                    None => format!("deleted after {}", stamp(&k.delete_after, now)),
                    Some(by) => format!(
                        "deleted after {} once the rollouts below are done, at the latest {}",
                        stamp(&k.delete_after, now),
                        stamp(by, now)
                    ),
                };
                vec![k.sid.clone(), when]
            })
            .collect();
        out.push_str(&table(&rows, 4));
    }
    if !status.rollout.is_empty() {
        field(&mut out, "Rollouts", "the consumers restarted after the rotation (spec.rolloutRestartTargets)");
        let rows: Vec<Vec<String>> = status
            .rollout
            .iter()
            .map(|e| {
                let state = match (e.complete, &e.restarted_at) {
                    (true, _) => "rolled out".to_string(),
                    (false, None) => "not restarted yet".to_string(),
                    (false, Some(at)) => format!("rolling out since {}", stamp(at, now)),
                };
                let message = e.message.clone().unwrap_or_default();
                let target = match (&e.selector, e.name.is_empty()) {
                    (Some(selector), true) => format!("{}({selector})", e.kind),
                    (Some(selector), false) => format!("{}/{} (by {selector})", e.kind, e.name),
                    (None, _) => format!("{}/{}", e.kind, e.name),
                };
                let state = if e.name.is_empty() && e.complete { "matched".to_string() } else { state };
                vec![target, state, message]
            })
            .collect();
        out.push_str(&table(&rows, 4));
    }

    if !status.history.is_empty() {
        let limit = resource.history_limit();
        let _ = writeln!(out, "\nHistory (the last {limit} keys, oldest first; spec.rotation.historyLimit):");
        let mut rows = vec![["SID", "WHY", "DELIVERED", "RETIRED", "DELETED"].map(String::from).to_vec()];
        for entry in &status.history {
            let when = |at: &Option<String>| at.as_deref().map_or("-".to_string(), |t| stamp(t, now));
            let deleted = match (&entry.deleted_at, &entry.deleted_because) {
                (Some(at), Some(why)) => format!("{} ({why})", stamp(at, now)),
                (at, _) => when(at),
            };
            let current = if status.key_sid.as_deref() == Some(entry.sid.as_str()) { " (current)" } else { "" };
            rows.push(vec![
                format!("{}{current}", entry.sid),
                entry.reason.clone(),
                stamp(&entry.delivered_at, now),
                when(&entry.retired_at),
                deleted,
            ]);
        }
        out.push_str(&table(&rows, 2));
    }

    out.push_str("\nAccount:\n");
    field(&mut out, "Resource", &format!("{}: {}", account_label(&resource.spec.account_ref), account_state(account)));
    if let Some(used) = status.account_ref.as_ref().filter(|r| *r != &resource.spec.account_ref) {
        field(&mut out, "Key made through", &format!("{} (the key rotates into the new account)", account_label(used)));
    }
    let account_sid = match (&status.account_sid, account) {
        (Some(key_account), AccountView::Found { account_sid, .. }) if key_account != account_sid => {
            format!("{key_account} (the account resource now names {account_sid}: the key rotates into it)")
        }
        (Some(key_account), _) => key_account.clone(),
        (None, AccountView::Found { account_sid, .. }) => {
            format!("{account_sid} (the account resource's; no key now)")
        }
        (None, _) => "-".into(),
    };
    field(&mut out, "Account SID", &account_sid);

    let recent = recent_events(events);
    if recent.is_empty() {
        out.push_str("\nEvents: none\n");
    } else {
        let _ = writeln!(out, "\nEvents (last {EVENTS_SHOWN}, newest last):");
        let mut rows = vec![["AGE", "TYPE", "REASON", "MESSAGE"].map(String::from).to_vec()];
        for event in recent {
            let count = event_count(event);
            let reason = event.reason.clone().unwrap_or_default();
            rows.push(vec![
                event_time(event).map(|t| age(t, now)).unwrap_or_else(|| "-".into()),
                event.type_.clone().unwrap_or_default(),
                if count > 1 { format!("{reason} (x{count})") } else { reason },
                one_line(event.message.as_deref().unwrap_or_default()),
            ]);
        }
        out.push_str(&table(&rows, 2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    use serde_json::json;

    const NOW: &str = "2026-01-01T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// The text with runs of spaces as one, so that the tests do not depend on column widths.
    fn squeeze(text: &str) -> String {
        text.lines()
            .map(|l| l.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:55:00Z"})
    }

    fn ready_key() -> TwilioApiKey {
        let message = "Key SK0000000000000000000000000000000a delivered in Secret payments-api";
        serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "payments-api", "namespace": "payments", "uid": "u1", "generation": 1},
            "spec": {"accountRef": {"name": "main"}, "rotation": {"interval": "720h"}},
            "status": {
                "observedGeneration": 1,
                "conditions": [
                    condition("Stalled", "False", "KeyReady", message),
                    condition("Ready", "True", "KeyReady", message),
                    condition("Reconciling", "False", "KeyReady", message),
                ],
                "keySid": "SK0000000000000000000000000000000a",
                "keyType": "Standard",
                "accountSid": "AC00000000000000000000000000000001",
                "accountRef": {"name": "main", "kind": "TwilioAccount"},
                "secretName": "payments-api",
                "keyCreatedAt": "2026-01-01T00:55:00Z",
                "nextRotationAt": "2026-01-31T00:55:00Z",
                "retiringKeys": [{"sid": "SK0000000000000000000000000000000b", "deleteAfter": "2026-01-01T01:05:00Z"}],
            },
        }))
        .unwrap()
    }

    fn account() -> AccountView {
        AccountView::Found {
            account_sid: "AC00000000000000000000000000000001".into(),
            conditions: vec![serde_json::from_value(condition("Ready", "True", "CredentialsVerified", "ok")).unwrap()],
            deleting: false,
        }
    }

    fn event(reason: &str, at: &str, count: Option<i32>) -> Event {
        Event {
            reason: Some(reason.into()),
            type_: Some("Normal".into()),
            message: Some(format!("{reason} happened")),
            event_time: Some(MicroTime(at.parse().unwrap())),
            count,
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_key_shows_its_key_account_schedule_retiring_keys_and_events() {
        let events =
            [event("KeyRotated", "2026-01-01T00:55:00Z", None), event("KeyCreated", "2026-01-01T00:30:00Z", Some(2))];
        let text = squeeze(&render_status(&ready_key(), &account(), &events, now()));
        assert!(is_ready(&ready_key()));
        for expected in [
            "TwilioApiKey payments/payments-api: Ready (KeyReady)",
            "SID: SK0000000000000000000000000000000a",
            "Type: Standard",
            "Age: 5m (created 2026-01-01T00:55:00Z)",
            "Next rotation: 2026-01-31T00:55:00Z (in 29d)",
            "Secret: payments-api",
            "SK0000000000000000000000000000000b deleted after 2026-01-01T01:05:00Z (in 5m)",
            "Resource: TwilioAccount/main: Ready (CredentialsVerified)",
            "Account SID: AC00000000000000000000000000000001",
            "KeyCreated (x2)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let table_start = text.find("TYPE ").unwrap();
        let ready = text[table_start..].find("Ready ").unwrap();
        let stalled = text[table_start..].find("Stalled ").unwrap();
        assert!(ready < stalled, "Ready first:\n{text}");
        assert!(text.contains("(as Ready)"), "the same message is not repeated:\n{text}");
        let created = text.find("KeyCreated (x2)").unwrap();
        assert!(created < text.find("KeyRotated").unwrap(), "newest last:\n{text}");
        assert!(!text.contains("! "), "no notes for a plain ready key:\n{text}");
    }

    #[test]
    fn only_the_last_ten_events_are_shown() {
        let events: Vec<Event> = (0..15)
            .map(|i| event(&format!("Reason{i:02}"), &format!("2026-01-01T00:{:02}:00Z", 59 - i), None))
            .collect();
        let shown: Vec<String> = recent_events(&events).iter().filter_map(|e| e.reason.clone()).collect();
        assert_eq!(shown.len(), 10);
        assert_eq!(shown.first().map(String::as_str), Some("Reason09"), "the oldest shown");
        assert_eq!(shown.last().map(String::as_str), Some("Reason00"), "the newest, last");
    }

    #[test]
    fn a_key_waiting_for_rollouts_shows_each_target() {
        let mut key = ready_key();
        let status = key.status.as_mut().unwrap();
        status.retiring_keys[0].delete_by = Some("2026-01-02T00:55:00Z".into());
        status.rollout = serde_json::from_value(json!([
            {"kind": "Deployment", "name": "web", "complete": false, "restartedAt": "2026-01-01T00:55:00Z", "message": "1 of 2 Pods updated"},
            {"kind": "DaemonSet", "name": "agent", "complete": true, "restartedAt": "2026-01-01T00:55:00Z"}
        ]))
        .unwrap();
        let text = squeeze(&render_status(&key, &account(), &[], now()));
        for expected in [
            "once the rollouts below are done, at the latest 2026-01-02T00:55:00Z",
            "Deployment/web rolling out since 2026-01-01T00:55:00Z (5m ago) 1 of 2 Pods updated",
            "DaemonSet/agent rolled out",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn windows_selector_matches_and_the_history_are_shown() {
        let mut key = ready_key();
        key.spec.rotation = Some(
            serde_json::from_value(json!({
                "interval": "720h", "historyLimit": 3,
                "windows": [{"days": ["Sat", "Sun"], "start": "02:00", "end": "05:00", "timeZone": "Europe/Berlin"}]
            }))
            .unwrap(),
        );
        let status = key.status.as_mut().unwrap();
        status.next_window_at = Some("2026-01-03T01:00:00Z".into());
        status.rollout = serde_json::from_value(json!([
            {"kind": "Deployment", "name": "", "selector": "tier=api", "complete": true, "message": "matched 1 at the rotation: api"},
            {"kind": "Deployment", "name": "api", "selector": "tier=api", "complete": false, "restartedAt": "2026-01-01T00:55:00Z"}
        ]))
        .unwrap();
        status.history = serde_json::from_value(json!([
            {"sid": "SK0000000000000000000000000000000b", "reason": "Created", "deliveredAt": "2026-01-01T00:30:00Z",
             "retiredAt": "2026-01-01T00:55:00Z", "deletedAt": "2026-01-01T00:58:00Z", "deletedBecause": "RolledOut"},
            {"sid": "SK0000000000000000000000000000000a", "reason": "IntervalElapsed", "deliveredAt": "2026-01-01T00:55:00Z"}
        ]))
        .unwrap();
        let text = squeeze(&render_status(&key, &account(), &[], now()));
        for expected in [
            "Rotation windows: Sat,Sun 02:00-05:00 Europe/Berlin; the next opens 2026-01-03T01:00:00Z",
            "Deployment(tier=api) matched matched 1 at the rotation: api",
            "Deployment/api (by tier=api) rolling out since",
            "History (the last 3 keys, oldest first; spec.rotation.historyLimit):",
            "SK0000000000000000000000000000000b Created 2026-01-01T00:30:00Z (30m ago) 2026-01-01T00:55:00Z (5m ago) 2026-01-01T00:58:00Z (2m ago) (RolledOut)",
            "SK0000000000000000000000000000000a (current) IntervalElapsed",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn a_revoked_key_is_not_ready_and_says_how_to_undo() {
        let mut key = ready_key();
        key.spec.revoked = true;
        key.metadata.generation = Some(2);
        let message = "spec.revoked is true: the resource has no key in Twilio and no Secret";
        let mut revoked = condition("Ready", "False", "Revoked", message);
        revoked["observedGeneration"] = json!(2);
        key.status = Some(
            serde_json::from_value(json!({"observedGeneration": 2, "conditions": [
                revoked, condition("Reconciling", "False", "Revoked", message), condition("Stalled", "False", "Revoked", message)
            ]}))
            .unwrap(),
        );
        let text = squeeze(&render_status(&key, &account(), &[], now()));
        assert!(!is_ready(&key));
        assert!(text.contains("payments-api: Revoked"), "{text}");
        assert!(text.contains("kubectl twilio revoke payments-api --undo"), "{text}");
        assert!(text.contains("SID: none"), "{text}");
        assert!(text.contains("Retiring keys: none"), "{text}");
        assert!(text.contains("Secret: payments-api (deleted: revoked)"), "{text}");
        assert!(text.contains("Events: none"), "{text}");
    }

    #[test]
    fn stalls_stale_generations_pending_rotations_and_missing_accounts_are_said() {
        let mut stalled = ready_key();
        let message = "Twilio answered 401";
        stalled.status.as_mut().unwrap().conditions = vec![
            serde_json::from_value(condition("Ready", "False", "TwilioAuthFailed", message)).unwrap(),
            serde_json::from_value(condition("Stalled", "True", "TwilioAuthFailed", message)).unwrap(),
        ];
        let text = squeeze(&render_status(&stalled, &AccountView::NotFound, &[], now()));
        assert!(!is_ready(&stalled));
        assert!(text.contains("Stalled (TwilioAuthFailed): it needs a change from you"), "{text}");
        assert!(text.contains("Twilio answered 401"), "{text}");
        assert!(text.contains("TwilioAccount/main: not found"), "{text}");

        let mut behind = ready_key();
        behind.metadata.generation = Some(2);
        behind.annotations_mut().insert(ROTATE_ANNOTATION.into(), "2026-01-01T00:59:00Z".into());
        let text = squeeze(&render_status(&behind, &account(), &[], now()));
        assert!(!is_ready(&behind), "Ready for generation 1 is not Ready for generation 2");
        assert!(text.contains("Ready for an older generation"), "{text}");
        assert!(text.contains("the operator has not acted on the latest change yet"), "{text}");
        assert!(text.contains("A rotation was requested (twilio-operator.dev/rotate=2026-01-01T00:59:00Z)"), "{text}");

        let mut fresh = ready_key();
        fresh.status = None;
        let text = squeeze(&render_status(&fresh, &AccountView::Unreadable("forbidden".into()), &[], now()));
        assert!(!is_ready(&fresh));
        assert!(text.contains("payments-api: no status yet"), "{text}");
        assert!(text.contains("does it watch namespace payments?"), "{text}");
        assert!(text.contains("could not be read: forbidden"), "{text}");
        assert!(text.contains("Conditions:\nnone yet"), "{text}");
    }

    #[test]
    fn a_key_being_deleted_is_not_ready() {
        let mut key = ready_key();
        key.metadata.deletion_timestamp = Some(Time(now()));
        assert!(!is_ready(&key));
        let text = squeeze(&render_status(&key, &account(), &[], now()));
        assert!(text.contains("being deleted (KeyReady)"), "{text}");
        assert!(text.contains("deletionPolicy Delete"), "{text}");
    }

    #[test]
    fn an_account_change_is_explained() {
        let mut key = ready_key();
        key.spec.account_ref = AccountRef { name: "shared".into(), kind: AccountKind::ClusterTwilioAccount };
        let other = AccountView::Found {
            account_sid: "AC00000000000000000000000000000002".into(),
            conditions: vec![],
            deleting: true,
        };
        let text = squeeze(&render_status(&key, &other, &[], now()));
        assert!(text.contains("ClusterTwilioAccount/shared: no status yet; being deleted"), "{text}");
        assert!(text.contains("Key made through: TwilioAccount/main"), "{text}");
        assert!(text.contains("the account resource now names AC00000000000000000000000000000002"), "{text}");
    }
}
