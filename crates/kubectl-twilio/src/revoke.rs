//! `kubectl twilio revoke NAME [--undo]`: `spec.revoked` set to true (every key of the resource
//! deleted in Twilio, its Secret deleted) or back to false (a new key issued). Pure: the patch,
//! the confirmation and the texts.

use kube::ResourceExt;
use twilio_operator_api::TwilioApiKey;

/// The merge patch that sets `spec.revoked`.
pub fn patch(revoked: bool) -> serde_json::Value {
    serde_json::json!({"spec": {"revoked": revoked}})
}

/// When `spec.revoked` already is what was asked: the text that says nothing is to be done.
pub fn already(resource: &TwilioApiKey, revoked: bool) -> Option<String> {
    let name = resource.name_any();
    (resource.spec.revoked == revoked).then(|| match revoked {
        true => format!("TwilioApiKey {name} is already revoked (spec.revoked is true); nothing to do.\n"),
        false => format!("TwilioApiKey {name} is not revoked (spec.revoked is false); nothing to do.\n"),
    })
}

/// What revoking deletes, and the question.
pub fn confirmation(resource: &TwilioApiKey) -> String {
    let name = resource.name_any();
    let namespace = resource.namespace().unwrap_or_default();
    let status = resource.status.clone().unwrap_or_default();
    let secret = status.secret_name.clone().unwrap_or_else(|| resource.desired_secret_name());
    let mut keys: Vec<String> = status.key_sid.iter().map(|sid| format!("{sid} (current)")).collect();
    keys.extend(status.retiring_keys.iter().map(|k| format!("{} (retiring)", k.sid)));
    let keys = if keys.is_empty() { "none recorded".to_string() } else { keys.join(", ") };
    format!(
        "Revoking TwilioApiKey {namespace}/{name}:\n\
         \x20 - deletes every key of it in Twilio at once: {keys}\n\
         \x20 - deletes its Secret {secret}\n\
         Whatever still uses these keys stops authenticating. `kubectl twilio revoke {name} --undo` later issues a\n\
         new key (a new SID and secret; the revoked ones never come back).\n\
         Revoke {name}? [y/N]: "
    )
}

/// Whether an answer to the question is yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What was done, and how to follow.
pub fn done(resource: &TwilioApiKey, revoked: bool) -> String {
    let name = resource.name_any();
    let namespace = resource.namespace().unwrap_or_default();
    let what = if revoked {
        "spec.revoked is now true: the operator deletes every key of it in Twilio and its Secret, then reports \
         Ready=False with reason Revoked."
    } else {
        "spec.revoked is now false: the operator issues a new key and writes it into the Secret."
    };
    format!("TwilioApiKey {namespace}/{name}: {what}\nFollow it with: kubectl twilio status {name} -n {namespace}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> TwilioApiKey {
        serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"accountRef": {"name": "main"}, "secret": {"name": "app-twilio"}},
            "status": {"keySid": "SK1", "secretName": "app-twilio",
                       "retiringKeys": [{"sid": "SK0", "deleteAfter": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap()
    }

    #[test]
    fn the_question_names_every_key_and_the_secret() {
        let text = confirmation(&key());
        assert!(text.contains("SK1 (current), SK0 (retiring)"), "{text}");
        assert!(text.contains("deletes its Secret app-twilio"), "{text}");
        assert!(text.contains("kubectl twilio revoke app --undo"), "{text}");
        assert!(text.ends_with("[y/N]: "), "{text}");
    }

    #[test]
    fn only_yes_is_yes() {
        for yes in ["y", "Y", "yes", " YES\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "app"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn patches_and_texts() {
        assert_eq!(patch(true), json!({"spec": {"revoked": true}}));
        assert_eq!(patch(false), json!({"spec": {"revoked": false}}));
        let mut resource = key();
        assert_eq!(already(&resource, true), None);
        assert!(already(&resource, false).unwrap().contains("not revoked"));
        resource.spec.revoked = true;
        assert!(already(&resource, true).unwrap().contains("already revoked"));
        assert!(done(&resource, true).contains("reason Revoked"));
        assert!(done(&resource, false).contains("issues a new key"));
        assert!(done(&resource, false).contains("kubectl twilio status app -n team"));
    }
}
