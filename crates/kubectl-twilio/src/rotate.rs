//! `kubectl twilio rotate NAME`: a new value of the `twilio-operator.dev/rotate` annotation, which
//! the operator answers with a new key (the old one retiring for the grace period). Pure: the
//! value, the patch and the texts.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use twilio_operator_api::{ROTATE_ANNOTATION, TwilioApiKey};

use crate::status::is_ready;
use crate::time::{human, to_the_second};

/// The annotation's next value: the current UTC time to the second, or, if the annotation holds
/// exactly that already (two rotations within a second), that time with a counter.
pub fn next_value(current: Option<&str>, now: Timestamp) -> String {
    let base = to_the_second(now);
    if current != Some(base.as_str()) {
        return base;
    }
    (2..).map(|n| format!("{base}-{n}")).find(|v| Some(v.as_str()) != current).unwrap_or(base)
}

/// The merge patch that sets the annotation.
pub fn patch(value: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {ROTATE_ANNOTATION: value}}})
}

/// Why rotating this resource makes no sense, if it does not.
pub fn refusal(resource: &TwilioApiKey) -> Option<String> {
    let name = resource.name_any();
    if resource.metadata.deletion_timestamp.is_some() {
        return Some(format!("TwilioApiKey {name} is being deleted: there is nothing to rotate"));
    }
    if resource.spec.revoked {
        return Some(format!(
            "TwilioApiKey {name} is revoked (spec.revoked is true) and has no key to rotate; \
             `kubectl twilio revoke {name} --undo` issues a new one"
        ));
    }
    None
}

/// What the user should know, after requesting the rotation.
pub fn requested(resource: &TwilioApiKey, value: &str, previous: Option<&str>) -> String {
    let name = resource.name_any();
    let namespace = resource.namespace().unwrap_or_default();
    let status = resource.status.clone().unwrap_or_default();
    let secret = status.secret_name.clone().unwrap_or_else(|| resource.desired_secret_name());
    let grace = human(resource.grace_period().as_secs());
    let mut out = format!(
        "Requested a rotation of TwilioApiKey {namespace}/{name}: annotation {ROTATE_ANNOTATION}={value} (was {}).\n",
        previous.unwrap_or("unset")
    );
    match &status.key_sid {
        Some(sid) => out.push_str(&format!(
            "The operator creates a new key, writes it into Secret {secret}, and keeps {sid} valid for the grace \
             period ({grace}) before deleting it in Twilio.\n"
        )),
        None => out.push_str("The resource has no key yet: the operator issues its first one.\n"),
    }
    if resource.spec.suspend {
        out.push_str("Note: spec.suspend is true: nothing happens until it is set back to false.\n");
    }
    out.push_str(&format!("Follow it with: kubectl twilio status {name} -n {namespace}\n"));
    out
}

/// Once the resource delivers a key other than `old` and is Ready: the text that says so.
pub fn done(resource: &TwilioApiKey, old: Option<&str>) -> Option<String> {
    let status = resource.status.as_ref()?;
    let new = status.key_sid.as_deref()?;
    if Some(new) == old || !is_ready(resource) {
        return None;
    }
    let secret = status.secret_name.clone().unwrap_or_else(|| resource.desired_secret_name());
    let mut out = format!("Rotated: {new} is delivered in Secret {secret}.\n");
    if let Some(retiring) = old.and_then(|old| status.retiring_keys.iter().find(|k| k.sid == old)) {
        out.push_str(&format!(
            "{} stays valid until {}, then is deleted in Twilio.\n",
            retiring.sid, retiring.delete_after
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00.5Z".parse().unwrap()
    }

    fn key(status: serde_json::Value) -> TwilioApiKey {
        serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team", "generation": 1},
            "spec": {"accountRef": {"name": "main"}, "rotation": {"gracePeriod": "1h"}},
            "status": status,
        }))
        .unwrap()
    }

    fn ready(sid: &str, retiring: serde_json::Value) -> TwilioApiKey {
        key(json!({
            "observedGeneration": 1, "keySid": sid, "secretName": "app", "retiringKeys": retiring,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KeyReady", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }))
    }

    #[test]
    fn the_value_is_the_time_and_always_new() {
        assert_eq!(next_value(None, now()), "2026-01-01T00:00:00Z");
        assert_eq!(next_value(Some("1"), now()), "2026-01-01T00:00:00Z");
        assert_eq!(next_value(Some("2026-01-01T00:00:00Z"), now()), "2026-01-01T00:00:00Z-2");
        // A third rotation within the second goes back to the plain time: still a change.
        assert_eq!(next_value(Some("2026-01-01T00:00:00Z-2"), now()), "2026-01-01T00:00:00Z");
        assert_eq!(patch("v"), json!({"metadata": {"annotations": {"twilio-operator.dev/rotate": "v"}}}));
    }

    #[test]
    fn revoked_and_deleted_keys_are_not_rotated() {
        let mut revoked = ready("SK1", json!([]));
        assert_eq!(refusal(&revoked), None);
        revoked.spec.revoked = true;
        assert!(refusal(&revoked).unwrap().contains("kubectl twilio revoke app --undo"));
        let mut deleting = ready("SK1", json!([]));
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert!(refusal(&deleting).unwrap().contains("being deleted"));
    }

    #[test]
    fn the_request_says_what_happens_and_how_to_follow() {
        let text = requested(&ready("SK1", json!([])), "2026-01-01T00:00:00Z", None);
        assert!(text.contains("annotation twilio-operator.dev/rotate=2026-01-01T00:00:00Z (was unset)"), "{text}");
        assert!(text.contains("keeps SK1 valid for the grace period (1h)"), "{text}");
        assert!(text.contains("kubectl twilio status app -n team"), "{text}");
        let mut suspended = key(json!({}));
        suspended.spec.suspend = true;
        let text = requested(&suspended, "v", Some("u"));
        assert!(text.contains("no key yet") && text.contains("spec.suspend is true"), "{text}");
    }

    #[test]
    fn done_once_another_key_is_ready() {
        assert_eq!(done(&ready("SK1", json!([])), Some("SK1")), None, "same key");
        let mut not_ready = ready("SK2", json!([]));
        not_ready.status.as_mut().unwrap().conditions[0].status = "False".into();
        assert_eq!(done(&not_ready, Some("SK1")), None, "not ready");
        let rotated = ready("SK2", json!([{"sid": "SK1", "deleteAfter": "2026-01-01T01:00:00Z"}]));
        let text = done(&rotated, Some("SK1")).unwrap();
        assert!(text.contains("Rotated: SK2 is delivered in Secret app"), "{text}");
        assert!(text.contains("SK1 stays valid until 2026-01-01T01:00:00Z"), "{text}");
    }
}
