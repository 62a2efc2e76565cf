//! Whether a TwilioApiKey's spec is valid: what the CRD schema cannot say (or what an old API
//! server does not enforce), each violation naming its field. Pure, unit- and property-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{GROUP, KeyType, MANAGED_BY_LABEL, PENDING_FRIENDLY_NAME_PREFIX, RolloutRestartTarget, TwilioApiKey};

/// A field value for a message, at most 80 characters.
fn shorten_field(text: &str) -> String {
    crate::api::text::shorten(text, 80)
}

/// The longest spec.rotation.gracePeriod: 720h (30 days).
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(720 * 3600);
/// The shortest spec.rotation.interval: 1m.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest spec.rotation.interval: 87600h (10 years).
pub const MAX_INTERVAL: Duration = Duration::from_secs(87_600 * 3600);
/// The most labels, and the most annotations, spec.secret may carry (the CRD's maxProperties).
pub const MAX_SECRET_METADATA_ENTRIES: usize = 64;
/// The most bytes the annotations of an object may hold in all (keys and values), as Kubernetes
/// counts them.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The longest spec.policy.allow entry.
pub const MAX_PERMISSION_LEN: usize = 256;
/// The most workloads spec.rolloutRestartTargets may name.
const MAX_ROLLOUT_TARGETS: usize = 32;
/// The longest spec.rotation.trigger.
pub const MAX_TRIGGER_LEN: usize = 253;

/// Checks what the CRD schema cannot (or what an old API server does not enforce), naming the
/// field at fault. Any spec a tenant can write yields Ok or Err here, never a panic, and an Ok
/// spec keeps every later step (time arithmetic, the Secret write) within bounds.
pub fn validate(resource: &TwilioApiKey) -> Result<(), String> {
    let spec = &resource.spec;
    let friendly_name = resource.desired_friendly_name();
    if friendly_name.chars().count() > 64 {
        return Err(format!(
            "spec.friendlyName {:?} is {} characters; Twilio allows at most 64 (set spec.friendlyName when <namespace>/<name> is longer)",
            shorten_field(&friendly_name),
            friendly_name.chars().count()
        ));
    }
    if friendly_name.starts_with(PENDING_FRIENDLY_NAME_PREFIX) {
        return Err(format!(
            "spec.friendlyName must not start with {PENDING_FRIENDLY_NAME_PREFIX:?}, which the operator reserves for keys it has not recorded yet"
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
        (KeyType::Restricted, Some(policy)) => {
            if let Some(entry) = policy.allow.iter().find(|p| p.is_empty() || p.chars().count() > MAX_PERMISSION_LEN) {
                return Err(format!(
                    "spec.policy.allow entry {:?} is {} characters; each must be 1 to {MAX_PERMISSION_LEN}",
                    shorten_field(entry),
                    entry.chars().count()
                ));
            }
        }
        _ => {}
    }
    if let Some(rotation) = &spec.rotation {
        validate_rotation(rotation)?;
    }
    validate_rollout_targets(&spec.rollout_restart_targets)?;
    if let Some(name) = &spec.secret.name
        && let Err(why) = dns_subdomain(name)
    {
        return Err(format!("spec.secret.name {:?} is not a valid Secret name: {why}", shorten_field(name)));
    }
    validate_labels(&spec.secret.labels)?;
    validate_annotations(&spec.secret.annotations)?;
    let keys = &spec.secret.keys;
    for (field, value) in
        [("accountSid", &keys.account_sid), ("apiKeySid", &keys.api_key_sid), ("apiKeySecret", &keys.api_key_secret)]
    {
        let valid = !value.is_empty()
            && value.len() <= 253
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!("spec.secret.keys.{field} {:?} is not a valid Secret data key", shorten_field(value)));
        }
    }
    if keys.account_sid == keys.api_key_sid
        || keys.account_sid == keys.api_key_secret
        || keys.api_key_sid == keys.api_key_secret
    {
        return Err("spec.secret.keys must name three different data keys".into());
    }
    if let Some(secret_type) = &spec.secret.secret_type {
        let valid = !secret_type.is_empty()
            && secret_type.len() <= 253
            && secret_type.starts_with(|c: char| c.is_ascii_alphanumeric())
            && secret_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !valid {
            return Err(format!("spec.secret.type {:?} is not a valid Secret type", shorten_field(secret_type)));
        }
    }
    crate::keys::template::check(resource)
}

fn validate_rotation(rotation: &crate::api::RotationSpec) -> Result<(), String> {
    if rotation.windows.len() > MAX_ROTATION_WINDOWS {
        return Err(format!(
            "spec.rotation.windows has {} entries; at most {MAX_ROTATION_WINDOWS} are allowed",
            rotation.windows.len()
        ));
    }
    crate::keys::window::Schedule::parse(&rotation.windows)?;
    if let Some(limit) = rotation.history_limit.filter(|l| usize::from(*l) > MAX_HISTORY_LIMIT) {
        return Err(format!("spec.rotation.historyLimit {limit} is more than {MAX_HISTORY_LIMIT}"));
    }
    let grace = duration::parse(&rotation.grace_period).map_err(|e| format!("spec.rotation.gracePeriod: {e}"))?;
    if grace > MAX_GRACE_PERIOD {
        return Err(format!(
            "spec.rotation.gracePeriod {:?} is longer than 720h (30 days), the longest an old key may stay valid",
            rotation.grace_period
        ));
    }
    if let Some(text) = &rotation.interval {
        let interval = duration::parse(text).map_err(|e| format!("spec.rotation.interval: {e}"))?;
        if interval < MIN_INTERVAL {
            return Err(format!("spec.rotation.interval {text:?} is shorter than 1m, the shortest rotation interval"));
        }
        if interval > MAX_INTERVAL {
            return Err(format!(
                "spec.rotation.interval {text:?} is longer than 87600h (10 years), the longest rotation interval"
            ));
        }
        if interval < grace {
            return Err(format!(
                "spec.rotation.interval {text:?} is shorter than spec.rotation.gracePeriod {:?}; a key must not be replaced while the one before it is still retiring",
                rotation.grace_period
            ));
        }
    }
    if let Some(trigger) = &rotation.trigger {
        let len = trigger.chars().count();
        if len > MAX_TRIGGER_LEN {
            return Err(format!("spec.rotation.trigger is {len} characters; at most {MAX_TRIGGER_LEN} are allowed"));
        }
    }
    if let Some(text) = &rotation.max_grace_period {
        let max = duration::parse(text).map_err(|e| format!("spec.rotation.maxGracePeriod: {e}"))?;
        if max > MAX_GRACE_PERIOD {
            return Err(format!(
                "spec.rotation.maxGracePeriod {text:?} is longer than 720h (30 days), the longest an old key may stay valid"
            ));
        }
        if max < grace {
            return Err(format!(
                "spec.rotation.maxGracePeriod {text:?} is shorter than spec.rotation.gracePeriod {:?}",
                rotation.grace_period
            ));
        }
    }
    Ok(())
}

/// The most rotation windows a spec may list (as the schema says).
const MAX_ROTATION_WINDOWS: usize = 16;
/// The most keys status.history may list (as the schema says).
const MAX_HISTORY_LIMIT: usize = 20;

fn validate_rollout_targets(targets: &[RolloutRestartTarget]) -> Result<(), String> {
    if targets.len() > MAX_ROLLOUT_TARGETS {
        return Err(format!(
            "spec.rolloutRestartTargets has {} entries; at most {MAX_ROLLOUT_TARGETS} are allowed",
            targets.len()
        ));
    }
    for (i, target) in targets.iter().enumerate() {
        match (&target.name, &target.selector) {
            (Some(name), None) => {
                if let Err(why) = dns_subdomain(name) {
                    return Err(format!(
                        "spec.rolloutRestartTargets[{i}].name {:?} is not a valid {} name: {why}",
                        shorten_field(name),
                        target.kind
                    ));
                }
            }
            (None, Some(selector)) => {
                validate_selector(selector).map_err(|why| format!("spec.rolloutRestartTargets[{i}].selector: {why}"))?
            }
            _ => {
                return Err(format!(
                    "spec.rolloutRestartTargets[{i}] must set either name (one workload) or selector (the workloads whose labels match), not both"
                ));
            }
        }
        if targets[..i].contains(target) {
            let what = target.name.clone().unwrap_or_else(|| "selector".into());
            return Err(format!("spec.rolloutRestartTargets lists {} {} twice", target.kind, shorten_field(&what)));
        }
    }
    Ok(())
}

/// A label selector the API server takes: label keys and values as for labels, operators it
/// knows, each with the values it needs.
fn validate_selector(selector: &LabelSelector) -> Result<(), String> {
    let labels = selector.match_labels.iter().flatten();
    let keys = labels.clone().map(|(k, _)| k).chain(selector.match_expressions.iter().flatten().map(|e| &e.key));
    for key in keys {
        qualified_name(key).map_err(|why| format!("label key {:?} is not valid: {why}", shorten_field(key)))?;
    }
    let values = labels
        .map(|(_, v)| v)
        .chain(selector.match_expressions.iter().flatten().flat_map(|e| e.values.iter().flatten()));
    for value in values.filter(|v| !v.is_empty()) {
        name_part(value).map_err(|why| format!("label value {:?} is not valid: {why}", shorten_field(value)))?;
    }
    match crate::keys::rollout::selector_problem(selector) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_SECRET_METADATA_ENTRIES {
        return Err(format!(
            "spec.secret.labels has {} entries; at most {MAX_SECRET_METADATA_ENTRIES} are allowed",
            labels.len()
        ));
    }
    for (key, value) in labels {
        if let Err(why) = qualified_name(key) {
            return Err(format!("spec.secret.labels key {:?} is not a valid label key: {why}", shorten_field(key)));
        }
        if key == MANAGED_BY_LABEL || reserved(key) {
            return Err(format!(
                "spec.secret.labels must not set {key:?}: {MANAGED_BY_LABEL} and keys under {GROUP}/ are written by the operator"
            ));
        }
        if !value.is_empty()
            && let Err(why) = name_part(value)
        {
            return Err(format!(
                "spec.secret.labels value {:?} of {key:?} is not a valid label value: {why}",
                shorten_field(value)
            ));
        }
    }
    Ok(())
}

fn validate_annotations(annotations: &BTreeMap<String, String>) -> Result<(), String> {
    if annotations.len() > MAX_SECRET_METADATA_ENTRIES {
        return Err(format!(
            "spec.secret.annotations has {} entries; at most {MAX_SECRET_METADATA_ENTRIES} are allowed",
            annotations.len()
        ));
    }
    for key in annotations.keys() {
        // As Kubernetes does, annotation keys are checked in lower case.
        if let Err(why) = qualified_name(&key.to_lowercase()) {
            return Err(format!(
                "spec.secret.annotations key {:?} is not a valid annotation key: {why}",
                shorten_field(key)
            ));
        }
        if reserved(key) {
            return Err(format!(
                "spec.secret.annotations must not set {key:?}: keys under {GROUP}/ are written by the operator"
            ));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS_BYTES {
        return Err(format!("spec.secret.annotations hold {size} bytes; Kubernetes allows at most 256 KiB in all"));
    }
    Ok(())
}

/// Whether a label or annotation key is one the operator writes on the Secret itself.
fn reserved(key: &str) -> bool {
    key.strip_prefix(GROUP).is_some_and(|rest| rest.starts_with('/'))
}

/// A Kubernetes qualified name (label and annotation keys): an optional DNS subdomain prefix and
/// '/', then a name part.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|why| format!("its prefix {why}"))?;
    }
    if name.is_empty() {
        return Err("the name after the prefix is empty".into());
    }
    name_part(name).map_err(|why| format!("its name {why}"))
}

/// The name part of a qualified name, and a non-empty label value: at most 63 characters,
/// letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
fn name_part(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len > 63 {
        return Err(format!("is {len} characters, more than 63"));
    }
    let edges = |c: char| c.is_ascii_alphanumeric();
    let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(edges)
        && name.ends_with(edges);
    if !valid {
        return Err("must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated parts of lowercase letters, digits
/// and '-' that start and end with a letter or digit.
fn dns_subdomain(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > 253 {
        return Err(format!("is {len} characters; it must be 1 to 253"));
    }
    let edges = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = name.split('.').all(|part| {
        part.starts_with(edges)
            && part.ends_with(edges)
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if !valid {
        return Err(
            "must be lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Restricted keys exist only in Twilio's US1 region: a Restricted key whose account is in
/// another Region is refused before any call to Twilio (the account's Region is known only once
/// its account is resolved, so this is checked then; the chart's admission policy refuses it
/// at admission where it can).
pub fn key_type_in_region(resource: &TwilioApiKey, region: &str, account_sid: &str) -> Result<(), String> {
    if resource.spec.key_type != KeyType::Restricted || region == "us1" {
        return Ok(());
    }
    Err(format!(
        "spec.keyType Restricted: Restricted keys exist only in Twilio's US1 region, and account {account_sid} ({} {}) is in region {region}; use a Standard key, or an account in us1",
        match resource.spec.account_ref.kind {
            crate::api::AccountKind::TwilioAccount => "TwilioAccount",
            crate::api::AccountKind::ClusterTwilioAccount => "ClusterTwilioAccount",
        },
        resource.spec.account_ref.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountRef, KeyPolicy};
    use crate::keys::fixtures::{resource, standard};

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
    fn restricted_keys_exist_only_in_us1() {
        let mut k = standard();
        assert!(key_type_in_region(&k, "ie1", "AC1").is_ok(), "Standard keys exist in every Region");
        k.spec.key_type = KeyType::Restricted;
        assert!(key_type_in_region(&k, "us1", "AC1").is_ok());
        let refused = key_type_in_region(&k, "ie1", "AC1").unwrap_err();
        assert!(
            refused.contains("only in Twilio's US1 region")
                && refused.contains("TwilioAccount prod")
                && refused.contains("region ie1"),
            "{refused}"
        );
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
        let k = resource(serde_json::json!({"accountRef": {"name": "prod"}, "rotation": {"gracePeriod": "soon"}}));
        assert!(validate(&k).unwrap_err().contains("spec.rotation.gracePeriod"));
    }

    fn rotation(rotation: serde_json::Value) -> Result<(), String> {
        validate(&resource(serde_json::json!({"accountRef": {"name": "prod"}, "rotation": rotation})))
    }

    #[test]
    fn grace_periods_are_bounded() {
        for good in ["0s", "10m", "720h", "719h60m"] {
            assert_eq!(rotation(serde_json::json!({"gracePeriod": good})), Ok(()), "{good}");
        }
        for bad in ["720h1ms", "100000000h", "10000000000000000000s10000000000000000000s", "99999999999999999999h"] {
            let message = rotation(serde_json::json!({"gracePeriod": bad})).unwrap_err();
            assert!(message.contains("spec.rotation.gracePeriod"), "{bad}: {message}");
        }
    }

    #[test]
    fn intervals_are_bounded_below_by_a_minute_and_the_grace_period_and_above_by_ten_years() {
        for (interval, grace) in [("10m", "10m"), ("1m", "0s"), ("1m", "1m"), ("720h", "720h"), ("87600h", "10m")] {
            assert_eq!(rotation(serde_json::json!({"interval": interval, "gracePeriod": grace})), Ok(()), "{interval}");
        }
        assert_eq!(rotation(serde_json::json!({"interval": "10m"})), Ok(()), "the default grace period is 10m");
        for (interval, grace, says) in [
            ("0s", "0s", "shorter than 1m"),
            ("1s", "0s", "shorter than 1m"),
            ("59.999s", "0s", "shorter than 1m"),
            ("87600h1s", "10m", "longer than 87600h"),
            ("100000000h", "10m", "longer than 87600h"),
            ("5m", "10m", "shorter than spec.rotation.gracePeriod"),
            ("24h", "720h", "shorter than spec.rotation.gracePeriod"),
        ] {
            let message = rotation(serde_json::json!({"interval": interval, "gracePeriod": grace})).unwrap_err();
            assert!(message.contains("spec.rotation.interval") && message.contains(says), "{interval}: {message}");
        }
        let message = rotation(serde_json::json!({"interval": "9m"})).unwrap_err();
        assert!(message.contains("gracePeriod"), "the default 10m grace period counts: {message}");
    }

    #[test]
    fn max_grace_periods_lie_between_the_grace_period_and_720h() {
        for (max, grace) in [("24h", "10m"), ("10m", "10m"), ("720h", "720h"), ("1s", "0s")] {
            assert_eq!(rotation(serde_json::json!({"maxGracePeriod": max, "gracePeriod": grace})), Ok(()), "{max}");
        }
        for (max, grace, says) in [
            ("5m", "10m", "shorter than spec.rotation.gracePeriod"),
            ("9m", "10m", "shorter than spec.rotation.gracePeriod"),
            ("720h1s", "10m", "longer than 720h"),
            ("forever", "10m", "spec.rotation.maxGracePeriod"),
        ] {
            let message = rotation(serde_json::json!({"maxGracePeriod": max, "gracePeriod": grace})).unwrap_err();
            assert!(message.contains("spec.rotation.maxGracePeriod") && message.contains(says), "{max}: {message}");
        }
        let message = rotation(serde_json::json!({"maxGracePeriod": "9m"})).unwrap_err();
        assert!(message.contains("gracePeriod"), "the default 10m grace period counts: {message}");
    }

    #[test]
    fn rollout_targets_are_valid_distinct_names_and_at_most_32() {
        let targets = |targets: serde_json::Value| {
            validate(&resource(serde_json::json!({"accountRef": {"name": "prod"}, "rolloutRestartTargets": targets})))
        };
        let target = |kind: &str, name: &str| serde_json::json!({"kind": kind, "name": name});
        assert_eq!(targets(serde_json::json!([target("Deployment", "api"), target("StatefulSet", "api")])), Ok(()));
        let message = targets(serde_json::json!([target("Deployment", "Api_1")])).unwrap_err();
        assert!(message.contains("spec.rolloutRestartTargets[0].name"), "{message}");
        let message = targets(serde_json::json!([target("DaemonSet", "a"), target("DaemonSet", "a")])).unwrap_err();
        assert!(message.contains("DaemonSet a twice"), "{message}");
        let many: Vec<_> = (0..33).map(|i| target("Deployment", &format!("d{i}"))).collect();
        assert!(targets(serde_json::json!(many)).unwrap_err().contains("at most 32"));
    }

    #[test]
    fn triggers_and_permissions_are_bounded() {
        assert_eq!(rotation(serde_json::json!({"trigger": "x".repeat(253)})), Ok(()));
        assert!(
            rotation(serde_json::json!({"trigger": "x".repeat(254)})).unwrap_err().contains("spec.rotation.trigger")
        );
        let mut k = standard();
        k.spec.key_type = KeyType::Restricted;
        k.spec.policy = Some(KeyPolicy { allow: vec!["/x".into(), "p".repeat(256)] });
        assert_eq!(validate(&k), Ok(()));
        k.spec.policy = Some(KeyPolicy { allow: vec!["/x".into(), "p".repeat(257)] });
        assert!(validate(&k).unwrap_err().contains("spec.policy.allow entry"));
        k.spec.policy = Some(KeyPolicy { allow: vec![String::new()] });
        assert!(validate(&k).unwrap_err().contains("spec.policy.allow entry"));
    }

    #[test]
    fn the_pending_prefix_is_the_operators() {
        let mut k = standard();
        k.spec.friendly_name = Some(format!("{PENDING_FRIENDLY_NAME_PREFIX}1234"));
        assert!(validate(&k).unwrap_err().contains("spec.friendlyName must not start with"));
        k.spec.friendly_name = Some("my twilio-operator:pending: key".into());
        assert_eq!(validate(&k), Ok(()));
    }

    #[test]
    fn secret_names_are_dns_subdomains() {
        let mut k = standard();
        for good in ["a", "payments-twilio", "a.b-c.d0", &"a".repeat(253)] {
            k.spec.secret.name = Some(good.to_string());
            assert_eq!(validate(&k), Ok(()), "{good}");
        }
        for bad in ["", "Payments", "-a", "a-", "a..b", ".a", "a_b", "a/b", "é", &"a".repeat(254)] {
            k.spec.secret.name = Some(bad.to_string());
            assert!(validate(&k).unwrap_err().contains("spec.secret.name"), "{bad:?}");
        }
    }

    fn with_metadata(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Result<(), String> {
        let mut k = standard();
        k.spec.secret.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        k.spec.secret.annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        validate(&k)
    }

    #[test]
    fn labels_follow_kubernetes_rules() {
        for (key, value) in [
            ("team", "payments"),
            ("app.kubernetes.io/name", "twilio"),
            ("example.com/Tier_1.x", ""),
            ("a", "A-b_c.9"),
            (&"k".repeat(63), &"v".repeat(63)),
        ] {
            assert_eq!(with_metadata(&[(key, value)], &[]), Ok(()), "{key}={value}");
        }
        for key in ["", "bad key!", "/name", "prefix/", "a/b/c", "Example.com/x", "-a", "a-", &"k".repeat(64)] {
            let message = with_metadata(&[(key, "v")], &[]).unwrap_err();
            assert!(message.contains("spec.secret.labels key"), "{key:?}: {message}");
        }
        for value in ["-a", "a b", "é", &"v".repeat(64)] {
            let message = with_metadata(&[("team", value)], &[]).unwrap_err();
            assert!(message.contains("spec.secret.labels value"), "{value:?}: {message}");
        }
        for key in [MANAGED_BY_LABEL, "twilio-operator.dev/key-sid", "twilio-operator.dev/anything"] {
            let message = with_metadata(&[(key, "x")], &[]).unwrap_err();
            assert!(message.contains("written by the operator"), "{key}: {message}");
        }
        assert_eq!(with_metadata(&[("sub.twilio-operator.dev/x", "y")], &[]), Ok(()), "another domain");
        let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(with_metadata(&many, &[]).unwrap_err().contains("65 entries"));
        assert_eq!(with_metadata(&many[..64], &[]), Ok(()));
    }

    #[test]
    fn annotations_follow_kubernetes_rules() {
        assert_eq!(with_metadata(&[], &[("example.com/Note", "any text at all: é ✓ \n")]), Ok(()));
        assert_eq!(with_metadata(&[], &[("Example.com/x", "keys are checked in lower case")]), Ok(()));
        for key in ["", "bad key!", "a/b/c", "x/"] {
            let message = with_metadata(&[], &[(key, "v")]).unwrap_err();
            assert!(message.contains("spec.secret.annotations key"), "{key:?}: {message}");
        }
        let message = with_metadata(&[], &[("twilio-operator.dev/key-sid", "SK1")]).unwrap_err();
        assert!(message.contains("written by the operator"), "{message}");
        assert_eq!(with_metadata(&[], &[(MANAGED_BY_LABEL, "x")]), Ok(()), "only the label is reserved");
        let big = "v".repeat(MAX_ANNOTATIONS_BYTES / 2);
        assert_eq!(with_metadata(&[], &[("a", &big[..big.len() - 2])]), Ok(()));
        let message = with_metadata(&[], &[("a", &big), ("b", &big)]).unwrap_err();
        assert!(message.contains("256 KiB"), "{message}");
    }
}
