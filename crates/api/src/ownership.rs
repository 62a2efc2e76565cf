//! The marks that make a Secret a TwilioApiKey's, and what they say: which resource it belongs
//! to, which key it delivers under which data keys, and whether it follows the current
//! `spec.secret`. The operator writes them ([`crate`]'s users: the operator's executor and the
//! kubectl plugin read them). All of it is tenant-writable: it says what the Secret claims,
//! never what the operator may do in Twilio.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::{DATA_KEYS_ANNOTATION, KEY_SID_ANNOTATION, SecretKeys, TEMPLATE_ANNOTATION, TwilioApiKey};

/// On a delivered Secret: the name of the TwilioApiKey it belongs to (in the same namespace).
pub const OWNER_ANNOTATION: &str = "twilio-operator.dev/owner";
/// On a delivered Secret: the UID of the TwilioApiKey it belongs to.
pub const OWNER_UID_ANNOTATION: &str = "twilio-operator.dev/owner-uid";
/// On a delivered Secret: the label and annotation keys the operator added from spec.secret, so
/// that a key removed from the spec is removed from the Secret while other writers' keys stay.
pub const APPLIED_METADATA_ANNOTATION: &str = "twilio-operator.dev/applied-metadata";

/// What a Secret of the resource holds, as far as the plan needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedSecret {
    Missing,
    /// Exists but belongs to someone else.
    Foreign,
    /// Owned by this resource. `delivered` is the SID of the key it holds when its data is
    /// intact (the key SID the operator wrote, the account's SID and a secret); None when someone
    /// altered it. `current_template` tells whether it follows the current spec.secret.
    Owned {
        delivered: Option<String>,
        current_template: bool,
    },
}

/// Whether the Secret is marked as this resource's (a claim anyone with write access to the
/// Secret can make; it decides only what the operator writes into or deletes of that Secret).
pub fn is_owned(resource: &TwilioApiKey, secret: &Secret) -> bool {
    let Some(uid) = resource.uid() else {
        return false;
    };
    secret.annotations().get(OWNER_UID_ANNOTATION) == Some(&uid) || has_legacy_owner_reference(resource, secret)
}

/// Earlier versions made the resource the Secret's owner; the next write removes that reference.
pub fn has_legacy_owner_reference(resource: &TwilioApiKey, secret: &Secret) -> bool {
    let uid = resource.uid();
    secret.owner_references().iter().any(|r| Some(&r.uid) == uid.as_ref())
}

pub fn data_keys_annotation(keys: &SecretKeys) -> String {
    format!("{},{},{}", keys.account_sid, keys.api_key_sid, keys.api_key_secret)
}

/// A fingerprint of `spec.secret`'s keys, labels, annotations, type and template (FNV-1a over their
/// JSON, which is stable across builds, unlike std's hasher). Fields a spec does not set add
/// nothing, so that Secrets written before they existed still match.
pub fn template_fingerprint(resource: &TwilioApiKey) -> String {
    let template = &resource.spec.secret;
    let mut json =
        serde_json::to_string(&(&template.keys, &template.labels, &template.annotations)).unwrap_or_default();
    if template.secret_type.is_some() || template.template.is_some() {
        json.push_str(&serde_json::to_string(&(&template.secret_type, &template.template)).unwrap_or_default());
    }
    let hash = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The data keys the operator wrote into this Secret (from its annotation; the spec's when absent).
pub fn written_keys(resource: &TwilioApiKey, secret: &Secret) -> SecretKeys {
    secret
        .annotations()
        .get(DATA_KEYS_ANNOTATION)
        .and_then(|names| {
            let mut parts = names.splitn(3, ',').map(str::to_string);
            Some(SecretKeys { account_sid: parts.next()?, api_key_sid: parts.next()?, api_key_secret: parts.next()? })
        })
        .unwrap_or_else(|| resource.spec.secret.keys.clone())
}

/// Whether the Secret belongs to this resource, which key of `account_sid` it delivers if its
/// data is as the operator wrote it, and whether it follows the current `spec.secret`.
pub fn observe(resource: &TwilioApiKey, secret: Option<&Secret>, account_sid: &str) -> ObservedSecret {
    let Some(secret) = secret else {
        return ObservedSecret::Missing;
    };
    if !is_owned(resource, secret) {
        return ObservedSecret::Foreign;
    }
    let keys = written_keys(resource, secret);
    let data = secret.data.clone().unwrap_or_default();
    let text = |data_key: &str| data.get(data_key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let written_sid = secret.annotations().get(KEY_SID_ANNOTATION);
    let delivered = text(&keys.api_key_sid).filter(|sid| {
        Some(sid) == written_sid
            && text(&keys.account_sid).as_deref() == Some(account_sid)
            && text(&keys.api_key_secret).is_some_and(|s| !s.is_empty())
    });
    let current_template = secret.annotations().get(TEMPLATE_ANNOTATION) == Some(&template_fingerprint(resource))
        && secret.name_any() == resource.desired_secret_name()
        && secret.annotations().get(OWNER_UID_ANNOTATION).is_some()
        && !has_legacy_owner_reference(resource, secret);
    ObservedSecret::Owned { delivered, current_template }
}
