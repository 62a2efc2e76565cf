//! `kubectl twilio inspect secret NAME`: which TwilioApiKey a Secret belongs to, and whether the
//! key it holds is the current one, a retiring one or a stale one. Pure: the Secret and the
//! resource its annotations name in; the text out.
//!
//! Never a value of the Secret's data, nor its length, is part of the output: only the names of
//! its data keys. The data is read only to tell whether it is as the operator wrote it.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use twilio_operator_api::ownership::{OWNER_ANNOTATION, OWNER_UID_ANNOTATION, ObservedSecret, is_owned, observe};
use twilio_operator_api::{DATA_KEYS_ANNOTATION, GROUP, KEY_SID_ANNOTATION, TwilioApiKey};

use crate::table::field;
use crate::time::stamp;

/// The TwilioApiKey (same namespace) a Secret names as its owner: its owner annotation, else an
/// ownerReference to a TwilioApiKey (written by earlier versions of the operator).
pub fn claimed_owner(secret: &Secret) -> Option<String> {
    secret.annotations().get(OWNER_ANNOTATION).cloned().or_else(|| {
        secret
            .owner_references()
            .iter()
            .find(|r| r.kind == "TwilioApiKey" && r.api_version.starts_with(&format!("{GROUP}/")))
            .map(|r| r.name.clone())
    })
}

/// Whose the Secret is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No mark of the operator at all.
    NotManaged,
    /// It names a key but no owner: released by a resource deleted with `deletionPolicy: Orphan`.
    HandedOver,
    /// It names an owner that does not exist.
    Orphaned { owner: String },
    /// It names an owner that exists, but with another UID: not that resource's.
    Foreign { owner: String, owner_uid: Option<String> },
    /// The owner exists and its UID matches.
    Owned { owner: String, state: KeyState },
}

/// Where the key an owned Secret holds stands in its resource's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// The key the resource delivers now, in the Secret it delivers into.
    Current,
    /// A replaced key in its grace period, deleted in Twilio after `delete_after`.
    Retiring { delete_after: String },
    /// Anything else, and why.
    Stale(String),
}

/// Whose the Secret is, given the resource its annotations name (None: not found, or none named).
pub fn ownership(secret: &Secret, owner: Option<&TwilioApiKey>) -> Ownership {
    let Some(claimed) = claimed_owner(secret) else {
        return match secret.annotations().get(KEY_SID_ANNOTATION) {
            Some(_) => Ownership::HandedOver,
            None => Ownership::NotManaged,
        };
    };
    let Some(resource) = owner.filter(|r| r.name_any() == claimed) else {
        return Ownership::Orphaned { owner: claimed };
    };
    if !is_owned(resource, secret) {
        return Ownership::Foreign { owner: claimed, owner_uid: resource.uid() };
    }
    Ownership::Owned { owner: claimed, state: key_state(secret, resource) }
}

fn key_state(secret: &Secret, resource: &TwilioApiKey) -> KeyState {
    let status = resource.status.clone().unwrap_or_default();
    let name = secret.name_any();
    if status.stale_secret_name.as_deref() == Some(name.as_str()) {
        return KeyState::Stale("left under an earlier spec.secret.name; the operator deletes it".into());
    }
    if resource.spec.revoked {
        return KeyState::Stale("its resource is revoked; the operator deletes its keys and this Secret".into());
    }
    let Some(sid) = secret.annotations().get(KEY_SID_ANNOTATION) else {
        return KeyState::Stale(format!("it names no key (no {KEY_SID_ANNOTATION} annotation)"));
    };
    if status.key_sid.as_ref() == Some(sid) {
        let delivering = status.secret_name.clone().unwrap_or_else(|| resource.desired_secret_name());
        return if delivering == name {
            KeyState::Current
        } else {
            KeyState::Stale(format!("it holds the current key, but the resource delivers into Secret {delivering}"))
        };
    }
    if let Some(retiring) = status.retiring_keys.iter().find(|k| &k.sid == sid) {
        return KeyState::Retiring { delete_after: retiring.delete_after.clone() };
    }
    let current = status.key_sid.as_deref().unwrap_or("none yet");
    KeyState::Stale(format!(
        "its key is neither the resource's current key ({current}) nor a retiring one; it is likely deleted in Twilio already"
    ))
}

/// The data keys present, sorted (names only), and those the operator wrote but are missing.
fn data_keys(secret: &Secret) -> (Vec<String>, Vec<String>, Vec<String>) {
    let present: Vec<String> = secret.data.iter().flatten().map(|(k, _)| k.clone()).collect();
    let written: Vec<String> = secret
        .annotations()
        .get(DATA_KEYS_ANNOTATION)
        .map(|names| names.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let missing = written.iter().filter(|k| !present.contains(k)).cloned().collect();
    let others = present.iter().filter(|k| !written.is_empty() && !written.contains(k)).cloned().collect();
    (present, missing, others)
}

/// The `inspect secret` screen.
pub fn render_secret(secret: &Secret, owner: Option<&TwilioApiKey>, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Secret {}/{}", secret.namespace().unwrap_or_default(), secret.name_any());
    let claimed_uid = secret.annotations().get(OWNER_UID_ANNOTATION).map_or("none", String::as_str);
    let key_sid = secret.annotations().get(KEY_SID_ANNOTATION);
    let ownership = ownership(secret, owner);
    match &ownership {
        Ownership::NotManaged => {
            field(&mut out, "Owner", "none: not a Secret of twilio-operator (no twilio-operator.dev/owner annotation)");
        }
        Ownership::HandedOver => field(
            &mut out,
            "Owner",
            "none: handed over (its TwilioApiKey was deleted with deletionPolicy: Orphan); \
             the operator no longer rotates or deletes it or its key",
        ),
        Ownership::Orphaned { owner } => field(
            &mut out,
            "Owner",
            &format!(
                "TwilioApiKey {owner} (uid {claimed_uid}), which does not exist: orphaned. Its resource is gone \
                 (a finalizer removed by hand?) or the Secret was copied or restored; nothing rotates or deletes it"
            ),
        ),
        Ownership::Foreign { owner, owner_uid } => field(
            &mut out,
            "Owner",
            &format!(
                "claims TwilioApiKey {owner} (uid {claimed_uid}), but that resource has uid {}: foreign. \
                 It was written for an earlier resource of that name, or copied or edited; \
                 the operator never writes into it or deletes it",
                owner_uid.as_deref().unwrap_or("none")
            ),
        ),
        Ownership::Owned { owner, .. } => {
            let uid = owner_uid_shown(secret, claimed_uid);
            field(
                &mut out,
                "Owner",
                &format!("TwilioApiKey {owner} (uid {uid}; verified: it exists and the uid matches)"),
            );
        }
    }

    let sid = key_sid.map_or("none", String::as_str);
    let key_line = match &ownership {
        Ownership::Owned { state: KeyState::Current, .. } => {
            format!("{sid}: current, the key its resource delivers now")
        }
        Ownership::Owned { state: KeyState::Retiring { delete_after }, .. } => format!(
            "{sid}: retiring, replaced by a newer key; valid until it is deleted in Twilio after {}",
            stamp(delete_after, now)
        ),
        Ownership::Owned { state: KeyState::Stale(why), .. } => format!("{sid}: stale: {why}"),
        Ownership::NotManaged if key_sid.is_none() => "-".into(),
        _ if key_sid.is_some() => format!("{sid} (not tracked by the operator: it may still be valid in Twilio)"),
        _ => "-".into(),
    };
    field(&mut out, "Key", &key_line);

    if let (Ownership::Owned { state: KeyState::Current, .. }, Some(resource)) = (&ownership, owner) {
        let account_sid = resource.status.as_ref().and_then(|s| s.account_sid.clone()).unwrap_or_default();
        let data = match observe(resource, Some(secret), &account_sid) {
            ObservedSecret::Owned { delivered: Some(delivered), current_template } if Some(&delivered) == key_sid => {
                if current_template {
                    "intact: as the operator wrote it".to_string()
                } else {
                    "intact; the operator rewrites it to follow spec.secret".to_string()
                }
            }
            _ => "altered or incomplete: the operator replaces the key with a new one".into(),
        };
        field(&mut out, "Data", &data);
    }

    let (present, missing, others) = data_keys(secret);
    let mut keys = if present.is_empty() { "none".to_string() } else { present.join(", ") };
    if !others.is_empty() {
        let _ = write!(keys, " (not written by the operator: {})", others.join(", "));
    }
    if !missing.is_empty() {
        let _ = write!(keys, " (missing: {})", missing.join(", "));
    }
    keys.push_str(" (names only: values are never shown)");
    field(&mut out, "Data keys", &keys);
    out
}

fn owner_uid_shown<'a>(secret: &'a Secret, claimed_uid: &'a str) -> &'a str {
    if claimed_uid != "none" {
        return claimed_uid;
    }
    // An ownerReference written by an earlier version.
    secret.owner_references().iter().find(|r| r.kind == "TwilioApiKey").map_or("none", |r| r.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::json;
    use twilio_operator::keys::secret::desired;
    use twilio_operator::twilio::{AccountConnection, Credentials, SecretString};

    const CURRENT: &str = "SK0000000000000000000000000000000a";
    const OLD: &str = "SK0000000000000000000000000000000b";
    const ACCOUNT: &str = "AC00000000000000000000000000000001";
    const VALUE: &str = "tOpS3cretValue-never-shown";

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn resource() -> TwilioApiKey {
        serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team", "uid": "u1", "generation": 1},
            "spec": {"accountRef": {"name": "main"}},
            "status": {
                "keySid": CURRENT, "accountSid": ACCOUNT, "secretName": "app", "friendlyName": "team/app",
                "retiringKeys": [{"sid": OLD, "deleteAfter": "2026-01-01T01:05:00Z"}],
            },
        }))
        .unwrap()
    }

    fn delivered(key_sid: &str) -> Secret {
        let connection = AccountConnection {
            tenant: String::new(),
            account_sid: ACCOUNT.into(),
            region: "us1".into(),
            edge: None,
            base_url: "https://iam.twilio.com".into(),
            credentials: Credentials { username: ACCOUNT.into(), password: SecretString::from("token") },
        };
        let mut secret = desired(&resource(), &connection, ACCOUNT, key_sid, &SecretString::from(VALUE)).unwrap();
        secret.data.as_mut().unwrap().insert("EXTRA".into(), ByteString(b"extra-value-hidden".to_vec()));
        secret
    }

    fn squeeze(text: &str) -> String {
        text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
    }

    fn assert_no_values(text: &str) {
        for value in [VALUE, "extra-value-hidden", "bytes"] {
            assert!(!text.contains(value), "{value:?} appears in\n{text}");
        }
        // Not even a length: no number of the values' sizes appears.
        for len in [VALUE.len(), "extra-value-hidden".len()] {
            assert!(!text.contains(&format!(" {len}")), "a length ({len}) appears in\n{text}");
        }
    }

    #[test]
    fn the_current_secret_names_its_verified_owner_and_its_data_keys_but_no_value() {
        let resource = resource();
        let secret = delivered(CURRENT);
        assert_eq!(
            ownership(&secret, Some(&resource)),
            Ownership::Owned { owner: "app".into(), state: KeyState::Current }
        );
        let text = squeeze(&render_secret(&secret, Some(&resource), now()));
        for expected in [
            "Secret team/app",
            "Owner: TwilioApiKey app (uid u1; verified",
            &format!("Key: {CURRENT}: current"),
            "Data: intact: as the operator wrote it",
            "Data keys: EXTRA, TWILIO_ACCOUNT_SID, TWILIO_API_KEY, TWILIO_API_SECRET (not written by the operator: EXTRA)",
            "(names only: values are never shown)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_no_values(&text);
    }

    #[test]
    fn altered_data_is_reported_without_showing_it() {
        let resource = resource();
        let mut secret = delivered(CURRENT);
        secret.data.as_mut().unwrap().remove("TWILIO_API_SECRET");
        let text = squeeze(&render_secret(&secret, Some(&resource), now()));
        assert!(text.contains("Data: altered or incomplete"), "{text}");
        assert!(text.contains("(missing: TWILIO_API_SECRET)"), "{text}");
        assert_no_values(&text);
    }

    #[test]
    fn retiring_and_stale_keys_are_told_apart() {
        let resource = resource();
        let retiring = delivered(OLD);
        let text = squeeze(&render_secret(&retiring, Some(&resource), now()));
        assert!(text.contains(&format!("Key: {OLD}: retiring")), "{text}");
        assert!(text.contains("after 2026-01-01T01:05:00Z (in 5m)"), "{text}");
        assert_no_values(&text);

        let stale = delivered("SK0000000000000000000000000000000c");
        assert!(matches!(ownership(&stale, Some(&resource)), Ownership::Owned { state: KeyState::Stale(_), .. }));
        let text = render_secret(&stale, Some(&resource), now());
        assert!(text.contains("stale: its key is neither the resource's current key"), "{text}");

        let mut moved = resource.clone();
        moved.status.as_mut().unwrap().secret_name = Some("elsewhere".into());
        let text = render_secret(&delivered(CURRENT), Some(&moved), now());
        assert!(text.contains("the resource delivers into Secret elsewhere"), "{text}");

        let mut revoked = resource.clone();
        revoked.spec.revoked = true;
        assert!(render_secret(&delivered(CURRENT), Some(&revoked), now()).contains("revoked"));
    }

    #[test]
    fn orphaned_foreign_handed_over_and_unmanaged_secrets_are_named_so() {
        let resource = resource();
        let secret = delivered(CURRENT);

        assert_eq!(ownership(&secret, None), Ownership::Orphaned { owner: "app".into() });
        let text = render_secret(&secret, None, now());
        assert!(text.contains("which does not exist: orphaned"), "{text}");
        assert!(text.contains("not tracked by the operator"), "{text}");
        assert_no_values(&text);

        let mut successor = resource.clone();
        successor.metadata.uid = Some("u2".into());
        assert_eq!(
            ownership(&secret, Some(&successor)),
            Ownership::Foreign { owner: "app".into(), owner_uid: Some("u2".into()) }
        );
        let text = render_secret(&secret, Some(&successor), now());
        assert!(text.contains("but that resource has uid u2: foreign"), "{text}");
        assert!(!text.contains("Data:"), "no verdict on the data of someone else's Secret:\n{text}");

        let mut released = secret.clone();
        for annotation in [OWNER_ANNOTATION, OWNER_UID_ANNOTATION] {
            released.annotations_mut().remove(annotation);
        }
        assert_eq!(ownership(&released, Some(&resource)), Ownership::HandedOver);
        assert!(render_secret(&released, None, now()).contains("handed over"));

        let mut plain = Secret::default();
        plain.metadata.name = Some("db".into());
        plain.data = Some([("password".to_string(), ByteString(VALUE.as_bytes().to_vec()))].into());
        assert_eq!(ownership(&plain, None), Ownership::NotManaged);
        let text = render_secret(&plain, None, now());
        assert!(text.contains("not a Secret of twilio-operator"), "{text}");
        assert!(text.contains("password"), "{text}");
        assert_no_values(&text);
    }

    #[test]
    fn an_owner_reference_of_earlier_versions_counts_as_the_claim() {
        let resource = resource();
        let mut legacy = delivered(CURRENT);
        for annotation in [OWNER_ANNOTATION, OWNER_UID_ANNOTATION] {
            legacy.annotations_mut().remove(annotation);
        }
        legacy.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "twilio-operator.dev/v1alpha1".into(),
            kind: "TwilioApiKey".into(),
            name: "app".into(),
            uid: "u1".into(),
            ..Default::default()
        }]);
        assert_eq!(claimed_owner(&legacy).as_deref(), Some("app"));
        assert_eq!(
            ownership(&legacy, Some(&resource)),
            Ownership::Owned { owner: "app".into(), state: KeyState::Current }
        );
        assert!(render_secret(&legacy, Some(&resource), now()).contains("(uid u1; verified"));
    }
}
