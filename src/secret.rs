//! The Secret a key is delivered into: what it should hold, and what the operator finds there.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{KEY_SID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TwilioApiKey};
use crate::plan::ObservedSecret;
use crate::secret_string::SecretString;

/// The full Secret for a key, owned by the resource so that it is garbage-collected with it.
pub fn desired(key: &TwilioApiKey, account_sid: &str, key_sid: &str, key_secret: &SecretString) -> Secret {
    let template = &key.spec.secret;
    let mut labels = template.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = template.annotations.clone();
    annotations.insert(KEY_SID_ANNOTATION.into(), key_sid.into());
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

/// Whether the Secret belongs to this resource, and which key of `account_sid` it delivers if
/// its data is as the operator wrote it.
pub fn observe(key: &TwilioApiKey, secret: Option<&Secret>, account_sid: &str) -> ObservedSecret {
    let Some(secret) = secret else {
        return ObservedSecret::Missing;
    };
    let uid = key.uid();
    let owned = secret.owner_references().iter().any(|r| Some(&r.uid) == uid.as_ref());
    if !owned {
        return ObservedSecret::Foreign;
    }
    let keys = &key.spec.secret.keys;
    let data = secret.data.clone().unwrap_or_default();
    let text = |data_key: &str| data.get(data_key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let written_sid = secret.annotations().get(KEY_SID_ANNOTATION);
    let delivered = text(&keys.api_key_sid).filter(|sid| {
        Some(sid) == written_sid
            && text(&keys.account_sid).as_deref() == Some(account_sid)
            && text(&keys.api_key_secret).is_some_and(|s| !s.is_empty())
    });
    ObservedSecret::Owned { delivered }
}
