//! Pure decisions: whether a spec is valid, and what the next step for a key is, from the spec,
//! the status and what was observed. No I/O here, so every rule is unit-tested without a cluster.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{KeyType, ROTATE_ANNOTATION, TwilioApiKey, TwilioApiKeyStatus};
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

/// What the operator observed for one key.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The Secret that delivers the current key (at status.secretName, or the desired name).
    pub delivering: ObservedSecret,
    /// The Secret at the desired name, when that differs from the delivering one.
    pub target: Option<ObservedSecret>,
    /// The SID of the account the key's accountRef resolves to now.
    pub account_sid: String,
    /// That account's Twilio Region (credentials and keys are per Region).
    pub region: String,
    pub now: Timestamp,
}

/// Why a key is replaced by a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationCause {
    KeyTypeChanged,
    AccountChanged,
    TriggerChanged,
    RotateAnnotation,
    IntervalElapsed,
    /// The Secret is gone or altered, and a secret cannot be read back from Twilio.
    SecretDrift,
    /// The key was deleted in Twilio by someone else.
    KeyMissing,
}

impl RotationCause {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            RotationCause::KeyTypeChanged => "key_type_changed",
            RotationCause::AccountChanged => "account_changed",
            RotationCause::TriggerChanged => "trigger_changed",
            RotationCause::RotateAnnotation => "rotate_annotation",
            RotationCause::IntervalElapsed => "interval_elapsed",
            RotationCause::SecretDrift => "secret_drift",
            RotationCause::KeyMissing => "key_missing",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RotationCause::KeyTypeChanged => "spec.keyType changed",
            RotationCause::AccountChanged => "the key's account changed",
            RotationCause::TriggerChanged => "spec.rotation.trigger changed",
            RotationCause::RotateAnnotation => "the twilio-operator.dev/rotate annotation changed",
            RotationCause::IntervalElapsed => "spec.rotation.interval elapsed",
            RotationCause::SecretDrift => "the Secret is missing or no longer holds the key as written",
            RotationCause::KeyMissing => "the key no longer exists in Twilio",
        }
    }
}

/// The next thing to do for a live (not deleted, not suspended, valid) key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A Secret of the desired name belongs to someone else: never overwrite it.
    Conflict,
    /// revoked: delete every key of the resource and its Secret.
    Revoke,
    /// revoked, and nothing is left to delete.
    StayRevoked,
    /// No key yet: create one and deliver it.
    Create,
    /// The Secret delivers a key the status does not record (the status write after a delivery
    /// was lost): record it rather than create another.
    Record(String),
    /// Issue a new key, deliver it, and retire the current one for the grace period.
    Rotate(RotationCause),
    /// Rename the key or replace its policy in Twilio; the secret stays.
    UpdateInPlace,
    /// Write the Secret anew (new name, data keys, labels or annotations); the key stays.
    RewriteSecret,
    /// Everything is delivered.
    UpToDate,
}

pub fn next_step(key: &TwilioApiKey, observed: &Observed) -> Step {
    let status = key.status.clone().unwrap_or_default();
    let current = status.key_sid.as_ref();
    if key.spec.revoked {
        let owns_secret = matches!(observed.delivering, ObservedSecret::Owned { .. })
            || matches!(observed.target, Some(ObservedSecret::Owned { .. }));
        return if current.is_some() || !status.retiring_keys.is_empty() || owns_secret {
            Step::Revoke
        } else {
            Step::StayRevoked
        };
    }
    if observed.target.as_ref().unwrap_or(&observed.delivering) == &ObservedSecret::Foreign {
        return Step::Conflict;
    }
    let current_template = match &observed.delivering {
        ObservedSecret::Owned { delivered: Some(sid), current_template } if Some(sid) == current => *current_template,
        ObservedSecret::Owned { delivered: Some(sid), .. } => return Step::Record(sid.clone()),
        _ if current.is_some() => return Step::Rotate(RotationCause::SecretDrift),
        _ => return Step::Create,
    };
    if let Some(cause) = rotation_cause(key, observed) {
        return Step::Rotate(cause);
    }
    let restricted_policy_differs =
        key.spec.key_type == KeyType::Restricted && status.policy.as_ref() != key.spec.policy.as_ref();
    if status.friendly_name.as_deref() != Some(key.desired_friendly_name().as_str()) || restricted_policy_differs {
        return Step::UpdateInPlace;
    }
    if !current_template || observed.target.is_some() {
        return Step::RewriteSecret;
    }
    Step::UpToDate
}

/// Why the current key must be replaced, if it must.
pub fn rotation_cause(key: &TwilioApiKey, observed: &Observed) -> Option<RotationCause> {
    let status = key.status.clone().unwrap_or_default();
    if status.key_type.is_some_and(|t| t != key.spec.key_type) {
        return Some(RotationCause::KeyTypeChanged);
    }
    if status.account_sid.as_deref().is_some_and(|a| a != observed.account_sid)
        || status.region.as_deref().is_some_and(|r| r != observed.region)
        || status.account_ref.as_ref().is_some_and(|r| r != &key.spec.account_ref)
    {
        return Some(RotationCause::AccountChanged);
    }
    let trigger = key.spec.rotation.as_ref().and_then(|r| r.trigger.as_ref());
    if trigger.is_some() && trigger != status.last_rotation_trigger.as_ref() {
        return Some(RotationCause::TriggerChanged);
    }
    let annotation = key.metadata.annotations.as_ref().and_then(|a| a.get(ROTATE_ANNOTATION));
    if annotation.is_some() && annotation != status.last_rotate_annotation.as_ref() {
        return Some(RotationCause::RotateAnnotation);
    }
    if next_rotation_at(key, &status).is_some_and(|due| due <= observed.now) {
        return Some(RotationCause::IntervalElapsed);
    }
    None
}

/// When the current key is due for rotation by spec.rotation.interval.
pub fn next_rotation_at(key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Option<Timestamp> {
    let interval = key.spec.rotation.as_ref()?.interval.as_ref()?;
    let interval = SignedDuration::try_from(duration::parse(interval).ok()?).ok()?;
    let created: Timestamp = status.key_created_at.as_ref()?.parse().ok()?;
    created.checked_add(interval).ok()
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

    fn observed(delivering: ObservedSecret) -> Observed {
        Observed {
            delivering,
            target: None,
            account_sid: "AC1".into(),
            region: "us1".into(),
            now: "2026-11-26T12:00:00Z".parse().unwrap(),
        }
    }

    fn delivering(sid: &str) -> ObservedSecret {
        ObservedSecret::Owned { delivered: Some(sid.into()), current_template: true }
    }

    /// A key whose SK1 is delivered as the spec asks.
    fn issued() -> TwilioApiKey {
        let mut key = standard();
        key.status = Some(TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            key_type: Some(KeyType::Standard),
            account_sid: Some("AC1".into()),
            account_ref: Some(key.spec.account_ref.clone()),
            friendly_name: Some(key.desired_friendly_name()),
            key_created_at: Some("2026-11-26T00:00:00Z".into()),
            ..Default::default()
        });
        key
    }

    #[test]
    fn a_new_key_is_created_once_and_a_delivered_one_recorded() {
        let altered = ObservedSecret::Owned { delivered: None, current_template: true };
        let fresh = standard();
        assert_eq!(next_step(&fresh, &observed(ObservedSecret::Missing)), Step::Create);
        assert_eq!(next_step(&fresh, &observed(ObservedSecret::Foreign)), Step::Conflict);
        assert_eq!(next_step(&fresh, &observed(altered.clone())), Step::Create);
        assert_eq!(next_step(&fresh, &observed(delivering("SK1"))), Step::Record("SK1".into()));
        let issued = issued();
        assert_eq!(next_step(&issued, &observed(delivering("SK1"))), Step::UpToDate);
        assert_eq!(next_step(&issued, &observed(delivering("SK2"))), Step::Record("SK2".into()));
        assert_eq!(next_step(&issued, &observed(ObservedSecret::Missing)), Step::Rotate(RotationCause::SecretDrift));
        assert_eq!(next_step(&issued, &observed(altered)), Step::Rotate(RotationCause::SecretDrift));
        assert_eq!(next_step(&issued, &observed(ObservedSecret::Foreign)), Step::Conflict);
    }

    #[test]
    fn names_and_policies_change_in_place_but_types_and_accounts_rotate() {
        let mut renamed = issued();
        renamed.spec.friendly_name = Some("new name".into());
        assert_eq!(next_step(&renamed, &observed(delivering("SK1"))), Step::UpdateInPlace);

        let mut retyped = issued();
        retyped.spec.key_type = KeyType::Restricted;
        retyped.spec.policy = Some(KeyPolicy { allow: vec!["/twilio/x".into()] });
        assert_eq!(next_step(&retyped, &observed(delivering("SK1"))), Step::Rotate(RotationCause::KeyTypeChanged));

        let mut repolicied = retyped.clone();
        repolicied.status.as_mut().unwrap().key_type = Some(KeyType::Restricted);
        assert_eq!(next_step(&repolicied, &observed(delivering("SK1"))), Step::UpdateInPlace);

        let mut moved = observed(delivering("SK1"));
        moved.account_sid = "AC2".into();
        assert_eq!(next_step(&issued(), &moved), Step::Rotate(RotationCause::AccountChanged));
        let mut regional = issued();
        regional.status.as_mut().unwrap().region = Some("us1".into());
        let mut moved_region = observed(delivering("SK1"));
        moved_region.region = "ie1".into();
        assert_eq!(next_step(&regional, &moved_region), Step::Rotate(RotationCause::AccountChanged));
        let mut other_account = issued();
        other_account.spec.account_ref.name = "other".into();
        assert_eq!(
            next_step(&other_account, &observed(delivering("SK1"))),
            Step::Rotate(RotationCause::AccountChanged)
        );
    }

    #[test]
    fn triggers_annotations_and_intervals_rotate_once() {
        let mut triggered = issued();
        triggered.spec.rotation = Some(serde_json::from_value(serde_json::json!({"trigger": "2026-11-26"})).unwrap());
        assert_eq!(next_step(&triggered, &observed(delivering("SK1"))), Step::Rotate(RotationCause::TriggerChanged));
        triggered.status.as_mut().unwrap().last_rotation_trigger = Some("2026-11-26".into());
        assert_eq!(next_step(&triggered, &observed(delivering("SK1"))), Step::UpToDate);

        let mut annotated = issued();
        annotated.metadata.annotations = Some([(ROTATE_ANNOTATION.to_string(), "1".to_string())].into());
        assert_eq!(next_step(&annotated, &observed(delivering("SK1"))), Step::Rotate(RotationCause::RotateAnnotation));
        annotated.status.as_mut().unwrap().last_rotate_annotation = Some("1".into());
        assert_eq!(next_step(&annotated, &observed(delivering("SK1"))), Step::UpToDate);

        let mut aging = issued();
        aging.spec.rotation = Some(serde_json::from_value(serde_json::json!({"interval": "24h"})).unwrap());
        let created = observed(delivering("SK1"));
        assert_eq!(next_step(&aging, &created), Step::UpToDate, "12h old");
        let mut later = created.clone();
        later.now = "2026-11-27T00:00:00Z".parse().unwrap();
        assert_eq!(next_step(&aging, &later), Step::Rotate(RotationCause::IntervalElapsed));
    }

    #[test]
    fn secret_changes_rewrite_without_a_new_key() {
        let stale = ObservedSecret::Owned { delivered: Some("SK1".into()), current_template: false };
        assert_eq!(next_step(&issued(), &observed(stale)), Step::RewriteSecret);
        let mut moving = observed(delivering("SK1"));
        moving.target = Some(ObservedSecret::Missing);
        assert_eq!(next_step(&issued(), &moving), Step::RewriteSecret);
        moving.target = Some(ObservedSecret::Foreign);
        assert_eq!(next_step(&issued(), &moving), Step::Conflict);
    }

    #[test]
    fn revocation_deletes_once_then_stays_revoked() {
        let mut revoked = issued();
        revoked.spec.revoked = true;
        assert_eq!(next_step(&revoked, &observed(delivering("SK1"))), Step::Revoke);
        revoked.status = Some(TwilioApiKeyStatus::default());
        assert_eq!(next_step(&revoked, &observed(ObservedSecret::Missing)), Step::StayRevoked);
        assert_eq!(next_step(&revoked, &observed(ObservedSecret::Foreign)), Step::StayRevoked);
    }
}
