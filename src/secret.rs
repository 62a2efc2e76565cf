//! The Secret a key is delivered into: what it should hold, and what the operator finds there.
//!
//! Besides the data, the operator records on the Secret which key it delivered, under which data
//! keys, and a fingerprint of `spec.secret`: so it can tell its own writing from someone's edit,
//! rewrite the Secret when the template changes, and never create a second key for a delivery
//! whose status write was lost.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{
    DATA_KEYS_ANNOTATION, KEY_SID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretKeys, TEMPLATE_ANNOTATION,
    TwilioApiKey,
};
use crate::plan::ObservedSecret;
use crate::secret_string::SecretString;

/// The full Secret for a key, owned by the resource so that it is garbage-collected with it.
pub fn desired(key: &TwilioApiKey, account_sid: &str, key_sid: &str, key_secret: &SecretString) -> Secret {
    let template = &key.spec.secret;
    let mut labels = template.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = template.annotations.clone();
    annotations.insert(KEY_SID_ANNOTATION.into(), key_sid.into());
    annotations.insert(DATA_KEYS_ANNOTATION.into(), data_keys_annotation(&template.keys));
    annotations.insert(TEMPLATE_ANNOTATION.into(), template_fingerprint(key));
    let data: BTreeMap<String, ByteString> = [
        (template.keys.account_sid.clone(), account_sid.as_bytes().to_vec()),
        (template.keys.api_key_sid.clone(), key_sid.as_bytes().to_vec()),
        (template.keys.api_key_secret.clone(), key_secret.expose().as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k, ByteString(v)))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(key.desired_secret_name()),
            namespace: key.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: key.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn data_keys_annotation(keys: &SecretKeys) -> String {
    format!("{},{},{}", keys.account_sid, keys.api_key_sid, keys.api_key_secret)
}

/// A fingerprint of `spec.secret`'s keys, labels and annotations (FNV-1a over their JSON, which
/// is stable across builds, unlike std's hasher).
fn template_fingerprint(key: &TwilioApiKey) -> String {
    let template = &key.spec.secret;
    let json = serde_json::to_string(&(&template.keys, &template.labels, &template.annotations)).unwrap_or_default();
    let hash = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The data keys the operator wrote into this Secret (from its annotation; the spec's when absent).
fn written_keys(key: &TwilioApiKey, secret: &Secret) -> SecretKeys {
    secret
        .annotations()
        .get(DATA_KEYS_ANNOTATION)
        .and_then(|names| {
            let mut parts = names.splitn(3, ',').map(str::to_string);
            Some(SecretKeys { account_sid: parts.next()?, api_key_sid: parts.next()?, api_key_secret: parts.next()? })
        })
        .unwrap_or_else(|| key.spec.secret.keys.clone())
}

pub fn is_owned(key: &TwilioApiKey, secret: &Secret) -> bool {
    let uid = key.uid();
    secret.owner_references().iter().any(|r| Some(&r.uid) == uid.as_ref())
}

/// Whether the Secret belongs to this resource, which key of `account_sid` it delivers if its
/// data is as the operator wrote it, and whether it follows the current `spec.secret`.
pub fn observe(key: &TwilioApiKey, secret: Option<&Secret>, account_sid: &str) -> ObservedSecret {
    let Some(secret) = secret else {
        return ObservedSecret::Missing;
    };
    if !is_owned(key, secret) {
        return ObservedSecret::Foreign;
    }
    let keys = written_keys(key, secret);
    let data = secret.data.clone().unwrap_or_default();
    let text = |data_key: &str| data.get(data_key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let written_sid = secret.annotations().get(KEY_SID_ANNOTATION);
    let delivered = text(&keys.api_key_sid).filter(|sid| {
        Some(sid) == written_sid
            && text(&keys.account_sid).as_deref() == Some(account_sid)
            && text(&keys.api_key_secret).is_some_and(|s| !s.is_empty())
    });
    let current_template = secret.annotations().get(TEMPLATE_ANNOTATION) == Some(&template_fingerprint(key))
        && secret.name_any() == key.desired_secret_name();
    ObservedSecret::Owned { delivered, current_template }
}

/// The key secret a Secret of this resource delivers, to carry it into a rewritten Secret.
pub fn delivered_secret(key: &TwilioApiKey, secret: &Secret) -> Option<SecretString> {
    let keys = written_keys(key, secret);
    secret
        .data
        .as_ref()?
        .get(&keys.api_key_secret)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.is_empty())
        .map(SecretString::new)
}
