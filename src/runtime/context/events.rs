//! Kubernetes Events about the operator's resources: one POST each, nothing cached. (kube's
//! Recorder keeps every Event it wrote for an hour to count repeats into a series; the
//! operator's notes name keys and times, so no two repeat, and that cache was the largest part of
//! the operator's memory at 10,000 keys.)
//!
//! They are written through the core `v1` Events API, as `kubectl describe` reads them. An Event
//! with an `eventTime` (what `events.k8s.io/v1` requires) about a cluster-scoped object is refused
//! by API servers before 1.22 unless it lives in `kube-system`; without one it may live in
//! `default`, on every version.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

use crate::api::FIELD_MANAGER;

/// The most bytes an Event's note may hold (the API server refuses longer ones).
const MAX_NOTE_BYTES: usize = 1024;

/// Whether an Event reports something normal or something a person should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

pub struct Events {
    client: Client,
    /// The reporting instance: the Pod's name, or the controller's when not in a Pod.
    instance: String,
}

impl Events {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.to_string());
        Self { client, instance }
    }

    /// Records a Normal Event about `obj`.
    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, action: &str, note: String) {
        self.record(obj, EventType::Normal, reason, action, note).await;
    }

    /// Records a Warning Event about `obj`.
    pub async fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, action: &str, note: String) {
        self.record(obj, EventType::Warning, reason, action, note).await;
    }

    /// Records an Event of `type_` about `obj`. An Event that cannot be written must not fail
    /// the reconciliation it describes: the failure is logged.
    pub async fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = event(obj.object_ref(&()), &self.instance, type_, reason, action, note, Timestamp::now());
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, reason, "could not record Event");
        }
    }
}

/// The Event about `regarding`. An Event lives in its object's namespace; one about a
/// cluster-scoped object (a ClusterTwilioAccount) lives in `default`, where `kubectl describe`
/// and `kubectl events` look for it.
fn event(
    regarding: ObjectReference,
    instance: &str,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    now: Timestamp,
) -> Event {
    let namespace = regarding.namespace.clone().filter(|ns| !ns.is_empty()).unwrap_or_else(|| "default".into());
    // An object's name may be 253 characters; the Event's, with its suffix, may not exceed that.
    let object = regarding.name.as_deref().unwrap_or(FIELD_MANAGER);
    let name = format!("{}.{:x}", &object[..object.len().min(230)], now.as_nanosecond());
    Event {
        metadata: ObjectMeta { name: Some(name), namespace: Some(namespace), ..ObjectMeta::default() },
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        type_: Some(match type_ {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        reason: Some(reason.into()),
        action: Some(action.into()),
        message: Some(truncate(crate::api::text::printable(&note), MAX_NOTE_BYTES)),
        involved_object: regarding,
        source: Some(EventSource { component: Some(FIELD_MANAGER.into()), host: None }),
        reporting_component: Some(FIELD_MANAGER.into()),
        reporting_instance: Some(instance.into()),
        ..Event::default()
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(namespace: Option<&str>) -> ObjectReference {
        ObjectReference {
            api_version: Some("twilio-operator.dev/v1alpha1".into()),
            kind: Some("ClusterTwilioAccount".into()),
            name: Some("shared".into()),
            namespace: namespace.map(Into::into),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_event_lives_in_its_objects_namespace_or_in_default() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for (namespace, expected) in [(Some("team"), "team"), (None, "default"), (Some(""), "default")] {
            let event = event(reference(namespace), "pod-1", EventType::Warning, "R", "A", "n".into(), now);
            assert_eq!(event.metadata.namespace.as_deref(), Some(expected));
            assert_eq!(event.involved_object.uid.as_deref(), Some("u1"));
            assert_eq!(event.metadata.name.as_deref(), Some(format!("shared.{:x}", now.as_nanosecond()).as_str()));
            assert_eq!(event.type_.as_deref(), Some("Warning"));
            assert_eq!(event.reporting_instance.as_deref(), Some("pod-1"));
        }
    }

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let note = "é".repeat(600); // 1200 bytes
        let cut = truncate(note, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES && cut.len() >= MAX_NOTE_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short".into(), MAX_NOTE_BYTES), "short");
    }
}
