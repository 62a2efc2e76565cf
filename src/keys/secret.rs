//! The Secret a key is delivered into: what it should hold, and what the operator finds there.
//!
//! Besides the data, the operator records on the Secret which resource it belongs to, which key
//! it delivered, under which data keys, and a fingerprint of `spec.secret`: so it can tell its own
//! writing from someone's edit, rewrite the Secret when the template changes, and never create a
//! second key for a delivery whose status write was lost. All of that is tenant-writable: it
//! says what the Secret claims, never what the operator may do in Twilio.
//!
//! The Secret has no ownerReference: with one, a foreground deletion of the resource lets the
//! garbage collector delete the Secret before cleanup runs, and with `deletionPolicy: Orphan` the
//! only copy of a valid key's secret would be gone. The operator deletes the Secret itself.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::{
    DATA_KEYS_ANNOTATION, KEY_SID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TEMPLATE_ANNOTATION, TwilioApiKey,
};

use crate::api::ownership::{
    APPLIED_METADATA_ANNOTATION, OWNER_ANNOTATION, OWNER_UID_ANNOTATION, data_keys_annotation,
    has_legacy_owner_reference, is_owned, template_fingerprint, written_keys,
};
use crate::error::AdoptionRefusal;
use crate::twilio::{AccountConnection, ExposeSecret, SecretString};

/// The Secret's type when the spec sets none.
pub const DEFAULT_TYPE: &str = "Opaque";

/// The type the spec asks for.
pub fn desired_type(resource: &TwilioApiKey) -> &str {
    resource.spec.secret.secret_type.as_deref().unwrap_or(DEFAULT_TYPE)
}

/// The full Secret for a key of account `account_sid`, marked as the resource's: the three
/// entries of `spec.secret.keys`, and those `spec.secret.template` renders (with the region and
/// edge of `connection`). Fails only if the template does (see [`crate::keys::template`]).
pub fn desired(
    resource: &TwilioApiKey,
    connection: &AccountConnection,
    account_sid: &str,
    key_sid: &str,
    key_secret: &SecretString,
) -> Result<Secret, String> {
    let friendly_name = resource.desired_friendly_name();
    let values = crate::keys::template::Values {
        account_sid,
        api_key_sid: key_sid,
        api_key_secret: key_secret,
        region: &connection.region,
        edge: connection.edge.as_deref(),
        friendly_name: &friendly_name,
    };
    let rendered = crate::keys::template::render(resource, &values)?;
    let template = &resource.spec.secret;
    let mut labels = template.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = template.annotations.clone();
    let applied = serde_json::json!({
        "labels": template.labels.keys().collect::<Vec<_>>(),
        "annotations": template.annotations.keys().collect::<Vec<_>>(),
    });
    annotations.insert(APPLIED_METADATA_ANNOTATION.into(), applied.to_string());
    annotations.insert(OWNER_ANNOTATION.into(), resource.name_any());
    annotations.insert(OWNER_UID_ANNOTATION.into(), resource.uid().unwrap_or_default());
    annotations.insert(KEY_SID_ANNOTATION.into(), key_sid.into());
    annotations.insert(DATA_KEYS_ANNOTATION.into(), data_keys_annotation(&template.keys));
    annotations.insert(TEMPLATE_ANNOTATION.into(), template_fingerprint(resource));
    let data: BTreeMap<String, ByteString> = rendered
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .chain([
            (template.keys.account_sid.clone(), account_sid.as_bytes().to_vec()),
            (template.keys.api_key_sid.clone(), key_sid.as_bytes().to_vec()),
            (template.keys.api_key_secret.clone(), key_secret.expose_secret().as_bytes().to_vec()),
        ])
        .map(|(k, v)| (k, ByteString(v)))
        .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(resource.desired_secret_name()),
            namespace: resource.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(desired_type(resource).into()),
        data: Some(data),
        ..Default::default()
    })
}

/// The Secret to delete once the key is delivered under the desired name: the one that
/// delivered it before, if this resource wrote it under another name (or one still waiting to be
/// deleted from an earlier move).
pub fn stale_after_delivery(resource: &TwilioApiKey, delivering_secret: Option<&Secret>) -> Option<String> {
    delivering_secret
        .filter(|s| s.name_any() != resource.desired_secret_name() && is_owned(resource, s))
        .map(|s| s.name_any())
        .or_else(|| resource.status.as_ref().and_then(|s| s.stale_secret_name.clone()))
}

/// A merge patch that turns `existing` (a Secret of this resource) into `desired`: data entries,
/// labels and annotations the operator wrote before and no longer wants are removed, other
/// writers' labels and annotations stay, and this resource's ownerReference (written by earlier
/// versions) goes. The resourceVersion makes the write fail rather than overwrite a change made
/// since `existing` was read.
pub fn update_patch(resource: &TwilioApiKey, existing: &Secret, desired: &Secret) -> serde_json::Value {
    use serde_json::{Map, Value};
    let desired_data = desired.data.clone().unwrap_or_default();
    let mut data = Map::new();
    for stale in existing.data.iter().flatten().map(|(k, _)| k).filter(|k| !desired_data.contains_key(*k)) {
        data.insert(stale.clone(), Value::Null);
    }
    for (k, v) in &desired_data {
        data.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    let previously_applied: Value = existing
        .annotations()
        .get(APPLIED_METADATA_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let merge = |kind: &str, existing: &BTreeMap<String, String>, desired: &BTreeMap<String, String>| {
        let mut merged = Map::new();
        let applied = previously_applied[kind].as_array().cloned().unwrap_or_default();
        for stale in applied.iter().filter_map(Value::as_str).filter(|k| existing.contains_key(*k)) {
            if !desired.contains_key(stale) {
                merged.insert(stale.to_string(), Value::Null);
            }
        }
        for (k, v) in desired {
            merged.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(merged)
    };
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), existing.resource_version().into());
    metadata.insert("labels".into(), merge("labels", existing.labels(), desired.labels()));
    metadata.insert("annotations".into(), merge("annotations", existing.annotations(), desired.annotations()));
    if has_legacy_owner_reference(resource, existing) {
        let uid = resource.uid();
        let others: Vec<_> = existing.owner_references().iter().filter(|r| Some(&r.uid) != uid.as_ref()).collect();
        metadata.insert("ownerReferences".into(), serde_json::to_value(others).unwrap_or(Value::Null));
    }
    serde_json::json!({"metadata": metadata, "data": data})
}

/// A merge patch that hands the Secret over (`deletionPolicy: Orphan`): the marks that make it
/// this resource's go, so that nothing of the operator's treats it as its own any more.
pub fn release_patch(resource: &TwilioApiKey, existing: &Secret) -> serde_json::Value {
    let uid = resource.uid();
    let others: Vec<_> = existing.owner_references().iter().filter(|r| Some(&r.uid) != uid.as_ref()).collect();
    serde_json::json!({
        "metadata": {
            "resourceVersion": existing.resource_version(),
            "ownerReferences": others,
            "labels": {MANAGED_BY_LABEL: null},
            "annotations": {
                OWNER_ANNOTATION: null,
                OWNER_UID_ANNOTATION: null,
                APPLIED_METADATA_ANNOTATION: null,
                TEMPLATE_ANNOTATION: null,
            },
        }
    })
}

/// What a Secret offered for adoption claims: a key SID and its secret. A claim only: the
/// operator adopts the key once Twilio accepts this very pair (see `adopt` in the executor).
pub struct AdoptionClaim {
    pub sid: String,
    pub secret: SecretString,
}

/// The claim of a Secret that this resource may adopt (`spec.secret.adopt`), or why not: it
/// belongs to another resource or object, it lacks a key SID and secret under the spec's data
/// keys, the SID is not one, or it names another account than `account_sid`.
pub fn adoption_claim(
    resource: &TwilioApiKey,
    secret: &Secret,
    account_sid: &str,
) -> Result<AdoptionClaim, AdoptionRefusal> {
    if let Some(owner) = secret.annotations().get(OWNER_ANNOTATION).filter(|owner| **owner != resource.name_any()) {
        return Err(AdoptionRefusal::OwnedByAnother(owner.clone()));
    }
    if let Some(owner) = secret.owner_references().first() {
        return Err(AdoptionRefusal::OwnedByAnother(format!("{} {} (ownerReference)", owner.kind, owner.name)));
    }
    let keys = &resource.spec.secret.keys;
    let data = secret.data.clone().unwrap_or_default();
    let text = |data_key: &str| {
        data.get(data_key).and_then(|v| String::from_utf8(v.0.clone()).ok()).map(|s| s.trim().to_string())
    };
    let (Some(sid), Some(key_secret)) = (text(&keys.api_key_sid), text(&keys.api_key_secret)) else {
        return Err(AdoptionRefusal::NoPair {
            sid_key: keys.api_key_sid.clone(),
            secret_key: keys.api_key_secret.clone(),
        });
    };
    if sid.is_empty() || key_secret.is_empty() {
        return Err(AdoptionRefusal::NoPair {
            sid_key: keys.api_key_sid.clone(),
            secret_key: keys.api_key_secret.clone(),
        });
    }
    if !crate::api::is_key_sid(&sid) {
        return Err(AdoptionRefusal::NotAKeySid { sid_key: keys.api_key_sid.clone() });
    }
    if let Some(found) = text(&keys.account_sid).filter(|found| !found.is_empty() && found != account_sid) {
        let found = crate::api::text::shorten(&found, 40);
        return Err(AdoptionRefusal::OtherAccount { found, expected: account_sid.to_string() });
    }
    Ok(AdoptionClaim { sid, secret: SecretString::from(key_secret) })
}

/// The merge patch that makes an adopted Secret this resource's: as [`update_patch`], except that
/// data entries the operator does not write stay (they were someone's, not the operator's).
pub fn adoption_patch(resource: &TwilioApiKey, existing: &Secret, desired: &Secret) -> serde_json::Value {
    let mut patch = update_patch(resource, existing, desired);
    if let Some(data) = patch.get_mut("data").and_then(serde_json::Value::as_object_mut) {
        data.retain(|_, value| !value.is_null());
    }
    patch
}

/// The key secret a Secret of this resource delivers, to carry it into a rewritten Secret.
pub fn delivered_secret(resource: &TwilioApiKey, secret: &Secret) -> Option<SecretString> {
    let keys = written_keys(resource, secret);
    secret
        .data
        .as_ref()?
        .get(&keys.api_key_secret)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TwilioApiKeyStatus;
    use crate::api::ownership::{ObservedSecret, observe};

    fn resource() -> TwilioApiKey {
        let mut resource: TwilioApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "twilio-operator.dev/v1alpha1",
            "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team", "uid": "u1"},
            "spec": {"accountRef": {"name": "main"}},
        }))
        .unwrap();
        resource.status = Some(TwilioApiKeyStatus::default());
        resource
    }

    fn connection() -> AccountConnection {
        AccountConnection {
            tenant: String::new(),
            account_sid: "AC1".into(),
            region: "us1".into(),
            edge: None,
            base_url: "https://iam.twilio.com".into(),
            credentials: crate::twilio::Credentials { username: "AC1".into(), password: SecretString::from("t") },
        }
    }

    fn delivered_by(resource: &TwilioApiKey) -> Secret {
        desired(resource, &connection(), "AC1", "SK1", &SecretString::from("s3cret")).unwrap()
    }

    #[test]
    fn what_a_secret_holds_is_read_back_as_written_or_as_altered() {
        let resource = resource();
        let intact = delivered_by(&resource);
        let mut wrong_account = intact.clone();
        wrong_account.data.as_mut().unwrap().insert("TWILIO_ACCOUNT_SID".into(), ByteString(b"AC2".to_vec()));
        let mut emptied = intact.clone();
        emptied.data.as_mut().unwrap().insert("TWILIO_API_SECRET".into(), ByteString(vec![]));
        let mut other_sid = intact.clone();
        other_sid.data.as_mut().unwrap().insert("TWILIO_API_KEY".into(), ByteString(b"SK2".to_vec()));
        let mut foreign = intact.clone();
        foreign.annotations_mut().insert(OWNER_UID_ANNOTATION.into(), "u2".into());
        let mut old_template = intact.clone();
        old_template.annotations_mut().insert(TEMPLATE_ANNOTATION.into(), "0".into());
        let owned = |delivered: Option<&str>, current_template| ObservedSecret::Owned {
            delivered: delivered.map(Into::into),
            current_template,
        };
        let cases = [
            (None, ObservedSecret::Missing),
            (Some(&foreign), ObservedSecret::Foreign),
            (Some(&intact), owned(Some("SK1"), true)),
            (Some(&wrong_account), owned(None, true)),
            (Some(&emptied), owned(None, true)),
            (Some(&other_sid), owned(None, true)),
            (Some(&old_template), owned(Some("SK1"), false)),
        ];
        for (secret, expected) in cases {
            assert_eq!(observe(&resource, secret, "AC1"), expected, "{:?}", secret.map(|s| s.annotations()));
        }
        assert_eq!(
            delivered_secret(&resource, &intact).map(|s| s.expose_secret().to_string()).as_deref(),
            Some("s3cret")
        );
        assert!(delivered_secret(&resource, &emptied).is_none());
    }

    #[test]
    fn a_secret_under_an_earlier_name_is_stale_once_the_key_moved() {
        let resource = resource();
        let mut elsewhere = delivered_by(&resource);
        elsewhere.metadata.name = Some("old-name".into());
        let mut foreign = elsewhere.clone();
        foreign.annotations_mut().insert(OWNER_UID_ANNOTATION.into(), "u2".into());
        assert_eq!(stale_after_delivery(&resource, Some(&elsewhere)).as_deref(), Some("old-name"));
        assert_eq!(stale_after_delivery(&resource, Some(&delivered_by(&resource))), None, "same name: nothing moved");
        assert_eq!(stale_after_delivery(&resource, Some(&foreign)), None, "someone else's Secret is never stale");
        assert_eq!(stale_after_delivery(&resource, None), None);
        let mut waiting = resource.clone();
        waiting.status.as_mut().unwrap().stale_secret_name = Some("older".into());
        assert_eq!(stale_after_delivery(&waiting, None).as_deref(), Some("older"), "an earlier move still pending");
    }

    #[test]
    fn releasing_removes_only_the_operators_marks() {
        let resource = resource();
        let mut secret = delivered_by(&resource);
        secret.metadata.resource_version = Some("9".into());
        let patch = release_patch(&resource, &secret);
        assert_eq!(patch["metadata"]["resourceVersion"], "9", "a change made meanwhile makes it fail");
        assert!(patch["metadata"]["annotations"][OWNER_UID_ANNOTATION].is_null());
        assert!(patch["metadata"]["labels"][MANAGED_BY_LABEL].is_null());
        assert!(patch["metadata"]["annotations"].get(KEY_SID_ANNOTATION).is_none(), "which key it holds stays");
        assert!(patch.get("data").is_none(), "the data stays");
    }

    #[test]
    fn an_adoption_claim_is_read_from_the_spec_data_keys_and_refused_when_it_cannot_be_one() {
        let resource = resource();
        let sid = "SK0123456789abcdef0123456789abcdef";
        let offered = |data: &[(&str, &str)], owner: Option<&str>| {
            let mut secret = Secret {
                metadata: ObjectMeta { name: Some("app".into()), namespace: Some("team".into()), ..Default::default() },
                data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
                ..Default::default()
            };
            if let Some(owner) = owner {
                secret.annotations_mut().insert(OWNER_ANNOTATION.into(), owner.into());
            }
            secret
        };
        let pair = [("TWILIO_API_KEY", sid), ("TWILIO_API_SECRET", "s3cret")];
        let claim = adoption_claim(&resource, &offered(&pair, None), "AC1").expect("a claim");
        assert_eq!((claim.sid.as_str(), claim.secret.expose_secret()), (sid, "s3cret"));
        let same_name = adoption_claim(&resource, &offered(&pair, Some("app")), "AC1");
        assert!(same_name.is_ok(), "a copy of this resource's Secret from elsewhere");
        let no_pair =
            AdoptionRefusal::NoPair { sid_key: "TWILIO_API_KEY".into(), secret_key: "TWILIO_API_SECRET".into() };
        let cases = [
            (offered(&pair, Some("other")), AdoptionRefusal::OwnedByAnother("other".into())),
            (offered(&[("TWILIO_API_KEY", sid)], None), no_pair.clone()),
            (offered(&[("TWILIO_API_KEY", sid), ("TWILIO_API_SECRET", " ")], None), no_pair),
            (
                offered(&[("TWILIO_API_KEY", "../Accounts"), ("TWILIO_API_SECRET", "s")], None),
                AdoptionRefusal::NotAKeySid { sid_key: "TWILIO_API_KEY".into() },
            ),
            (
                offered(&[("TWILIO_API_KEY", sid), ("TWILIO_API_SECRET", "s"), ("TWILIO_ACCOUNT_SID", "AC2")], None),
                AdoptionRefusal::OtherAccount { found: "AC2".into(), expected: "AC1".into() },
            ),
        ];
        for (secret, refusal) in cases {
            assert_eq!(adoption_claim(&resource, &secret, "AC1").err(), Some(refusal));
        }
        let mut referenced = offered(&pair, None);
        referenced.metadata.owner_references =
            Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: "ExternalSecret".into(),
                name: "app".into(),
                ..Default::default()
            }]);
        assert_eq!(
            adoption_claim(&resource, &referenced, "AC1").err(),
            Some(AdoptionRefusal::OwnedByAnother("ExternalSecret app (ownerReference)".into()))
        );
    }

    #[test]
    fn adopting_a_secret_keeps_the_entries_the_operator_does_not_write() {
        let resource = resource();
        let mut existing = Secret {
            metadata: ObjectMeta { name: Some("app".into()), resource_version: Some("7".into()), ..Default::default() },
            ..Default::default()
        };
        existing.data = Some(
            [("TWILIO_API_KEY", "SK1"), ("TWILIO_API_SECRET", "s3cret"), ("EXTRA", "kept")]
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        let patch = adoption_patch(&resource, &existing, &delivered_by(&resource));
        assert!(patch["data"].get("EXTRA").is_none(), "not removed: {patch}");
        assert!(patch["data"]["TWILIO_ACCOUNT_SID"].is_string());
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["metadata"]["annotations"][OWNER_UID_ANNOTATION], "u1");
    }
}
