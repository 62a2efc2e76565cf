//! Pure decisions: whether a spec is valid, and what the next step for a key is, from the spec,
//! the status and what was observed. No I/O here, so every rule is unit-tested without a cluster.

use crate::crd::{KeyType, TwilioApiKey};
use crate::duration;

/// Checks what the CRD schema cannot (or what an old API server does not enforce), naming the
/// field at fault.
pub fn validate(key: &TwilioApiKey) -> Result<(), String> {
    let spec = &key.spec;
    let friendly_name = key.desired_friendly_name();
    if friendly_name.chars().count() > 64 {
        return Err(format!(
            "spec.friendlyName {friendly_name:?} is {} characters; Twilio allows at most 64 (set spec.friendlyName when <namespace>/<name> is longer)",
            friendly_name.chars().count()
        ));
    }
    match (spec.key_type, &spec.policy) {
        (KeyType::Restricted, None) => {
            return Err("spec.policy is required when spec.keyType is Restricted".into());
        }
        (KeyType::Standard, Some(_)) => {
            return Err("spec.policy is only allowed when spec.keyType is Restricted".into());
        }
        (KeyType::Restricted, Some(policy)) if policy.allow.is_empty() || policy.allow.len() > 100 => {
            return Err(format!("spec.policy.allow has {} entries; Twilio allows 1 to 100", policy.allow.len()));
        }
        _ => {}
    }
    if let Some(rotation) = &spec.rotation {
        duration::parse(&rotation.grace_period).map_err(|e| format!("spec.rotation.gracePeriod: {e}"))?;
        if let Some(interval) = &rotation.interval {
            duration::parse(interval).map_err(|e| format!("spec.rotation.interval: {e}"))?;
        }
    }
    let keys = &spec.secret.keys;
    for (field, value) in
        [("accountSid", &keys.account_sid), ("apiKeySid", &keys.api_key_sid), ("apiKeySecret", &keys.api_key_secret)]
    {
        let valid = !value.is_empty()
            && value.len() <= 253
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!("spec.secret.keys.{field} {value:?} is not a valid Secret data key"));
        }
    }
    if keys.account_sid == keys.api_key_sid
        || keys.account_sid == keys.api_key_secret
        || keys.api_key_sid == keys.api_key_secret
    {
        return Err("spec.secret.keys must name three different data keys".into());
    }
    Ok(())
}

/// What the Secret currently holds, as far as the plan needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedSecret {
    Missing,
    /// Exists but belongs to someone else.
    Foreign,
    /// Owned by this resource. `delivered` is the SID of the key it holds when its data is
    /// intact (the key SID the operator wrote, the account's SID and a secret); None when someone
    /// altered it.
    Owned {
        delivered: Option<String>,
    },
}

/// The next thing to do for a live (not deleted, not suspended, valid) key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A Secret of that name belongs to someone else: never overwrite it.
    Conflict,
    /// No key yet: create one and deliver it.
    Create,
    /// The Secret delivers a key the status does not record (the status write after a delivery
    /// was lost): record it rather than create another.
    Record(String),
    /// The delivered secret is gone or altered and cannot be read back from Twilio: issue a new
    /// key, deliver it, retire the old one.
    Replace,
    /// Everything is delivered.
    UpToDate,
}

pub fn next_step(key: &TwilioApiKey, secret: &ObservedSecret) -> Step {
    let current = key.status.as_ref().and_then(|s| s.key_sid.as_ref());
    match secret {
        ObservedSecret::Foreign => Step::Conflict,
        ObservedSecret::Owned { delivered: Some(sid) } if Some(sid) == current => Step::UpToDate,
        ObservedSecret::Owned { delivered: Some(sid) } => Step::Record(sid.clone()),
        ObservedSecret::Missing | ObservedSecret::Owned { delivered: None } => match current {
            Some(_) => Step::Replace,
            None => Step::Create,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccountRef, KeyPolicy, TwilioApiKeySpec, TwilioApiKeyStatus};

    fn key(spec_json: serde_json::Value) -> TwilioApiKey {
        let spec: TwilioApiKeySpec = serde_json::from_value(spec_json).unwrap();
        let mut key = TwilioApiKey::new("payments", spec);
        key.metadata.namespace = Some("team-a".into());
        key
    }

    fn standard() -> TwilioApiKey {
        key(serde_json::json!({"accountRef": {"name": "prod"}}))
    }

    #[test]
    fn defaults_match_the_contract() {
        let k = standard();
        assert_eq!(k.spec.account_ref, AccountRef { name: "prod".into(), kind: Default::default() });
        assert_eq!(k.desired_friendly_name(), "team-a/payments");
        assert_eq!(k.desired_secret_name(), "payments");
        assert_eq!(k.spec.secret.keys.api_key_secret, "TWILIO_API_SECRET");
        assert!(validate(&k).is_ok());
    }

    #[test]
    fn restricted_needs_a_policy_and_standard_forbids_one() {
        let mut k = standard();
        k.spec.key_type = KeyType::Restricted;
        assert!(validate(&k).unwrap_err().contains("spec.policy is required"));
        k.spec.policy = Some(KeyPolicy { allow: vec!["/twilio/messaging/messages/create".into()] });
        assert!(validate(&k).is_ok());
        k.spec.key_type = KeyType::Standard;
        assert!(validate(&k).unwrap_err().contains("only allowed"));
    }

    #[test]
    fn policy_size_and_name_length_are_bounded() {
        let mut k = standard();
        k.spec.key_type = KeyType::Restricted;
        k.spec.policy = Some(KeyPolicy { allow: vec!["/x".into(); 101] });
        assert!(validate(&k).unwrap_err().contains("spec.policy.allow"));
        let mut k = standard();
        k.spec.friendly_name = Some("x".repeat(65));
        assert!(validate(&k).unwrap_err().contains("spec.friendlyName"));
    }

    #[test]
    fn secret_keys_must_be_distinct_valid_data_keys() {
        let mut k = standard();
        k.spec.secret.keys.api_key_sid = "TWILIO_ACCOUNT_SID".into();
        assert!(validate(&k).unwrap_err().contains("three different"));
        k.spec.secret.keys.api_key_sid = "bad key!".into();
        assert!(validate(&k).unwrap_err().contains("spec.secret.keys.apiKeySid"));
    }

    #[test]
    fn bad_durations_name_their_field() {
        let k = key(serde_json::json!({"accountRef": {"name": "prod"}, "rotation": {"gracePeriod": "soon"}}));
        assert!(validate(&k).unwrap_err().contains("spec.rotation.gracePeriod"));
    }

    #[test]
    fn steps_follow_from_key_and_secret() {
        let delivering = |sid: &str| ObservedSecret::Owned { delivered: Some(sid.into()) };
        let altered = ObservedSecret::Owned { delivered: None };
        let fresh = standard();
        assert_eq!(next_step(&fresh, &ObservedSecret::Missing), Step::Create);
        assert_eq!(next_step(&fresh, &ObservedSecret::Foreign), Step::Conflict);
        assert_eq!(next_step(&fresh, &altered), Step::Create);
        assert_eq!(
            next_step(&fresh, &delivering("SK1")),
            Step::Record("SK1".into()),
            "a delivered key is never created twice"
        );
        let mut issued = standard();
        issued.status = Some(TwilioApiKeyStatus { key_sid: Some("SK1".into()), ..Default::default() });
        assert_eq!(next_step(&issued, &delivering("SK1")), Step::UpToDate);
        assert_eq!(next_step(&issued, &delivering("SK2")), Step::Record("SK2".into()));
        assert_eq!(next_step(&issued, &ObservedSecret::Missing), Step::Replace);
        assert_eq!(next_step(&issued, &altered), Step::Replace);
        assert_eq!(next_step(&issued, &ObservedSecret::Foreign), Step::Conflict);
    }
}
