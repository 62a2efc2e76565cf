//! The CEL rules in the committed CRDs (`x-kubernetes-validations`), evaluated client-side: the
//! local 1.20 API server drops them, real clusters (1.25+) enforce them at admission.

use kube::core::cel::Validator;
use serde_json::{Value, json};

fn key_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/twilioapikeys.twilio-operator.dev.yaml");
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A TwilioApiKey as the API server sees it after defaulting, with `spec` merged in.
fn key(spec: Value) -> Value {
    let mut full = json!({
        "accountRef": {"name": "prod", "kind": "TwilioAccount"},
        "keyType": "Standard",
        "secret": {"keys": {"accountSid": "TWILIO_ACCOUNT_SID", "apiKeySid": "TWILIO_API_KEY", "apiKeySecret": "TWILIO_API_SECRET"}},
        "revoked": false, "suspend": false, "deletionPolicy": "Delete",
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey", "metadata": {"name": "k"}, "spec": full})
}

fn rejection(object: Value) -> Option<String> {
    Validator::new().validate(&key_schema(), &object, None).err().map(|e| format!("{e:?}"))
}

#[test]
fn policy_is_required_for_restricted_keys_and_forbidden_otherwise() {
    assert_eq!(rejection(key(json!({}))), None, "a plain Standard key is admitted");
    let restricted = key(json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create"]}}));
    assert_eq!(rejection(restricted), None);
    let missing = rejection(key(json!({"keyType": "Restricted"}))).expect("Restricted without policy is rejected");
    assert!(missing.contains("spec.policy is required"), "{missing}");
    let forbidden =
        rejection(key(json!({"policy": {"allow": ["/twilio/x"]}}))).expect("Standard with policy is rejected");
    assert!(forbidden.contains("spec.policy"), "{forbidden}");
}

#[test]
fn secret_data_keys_must_differ() {
    let same = key(json!({"secret": {"keys": {"accountSid": "X", "apiKeySid": "X", "apiKeySecret": "Y"}}}));
    let message = rejection(same).expect("duplicate data keys are rejected");
    assert!(message.contains("three different data keys"), "{message}");
}

fn rotation(rotation: Value) -> Option<String> {
    rejection(key(json!({"rotation": rotation})))
}

fn refused_with(object: Value, message: &str) {
    let rejection = rejection(object.clone()).unwrap_or_else(|| panic!("{object} is admitted"));
    assert!(rejection.contains(message), "{object}: {rejection}");
}

#[test]
fn grace_periods_are_at_most_720h() {
    for good in ["0s", "10m", "720h", "719h60m", "1.5h"] {
        assert_eq!(rotation(json!({"gracePeriod": good})), None, "{good}");
    }
    assert_eq!(rotation(json!({})), None, "the default grace period");
    for bad in ["720h1ms", "721h", "100000000h"] {
        refused_with(key(json!({"rotation": {"gracePeriod": bad}})), "spec.rotation.gracePeriod must be at most 720h");
    }
}

#[test]
fn intervals_are_between_a_minute_and_ten_years_and_at_least_the_grace_period() {
    for (interval, grace) in [("10m", "10m"), ("1m", "0s"), ("1m", "1m"), ("720h", "720h"), ("87600h", "10m")] {
        assert_eq!(rotation(json!({"interval": interval, "gracePeriod": grace})), None, "{interval} {grace}");
    }
    assert_eq!(rotation(json!({"interval": "10m"})), None, "the default 10m grace period");
    for interval in ["0s", "1s", "59.999s", "87600h1s", "100000000h"] {
        let object = key(json!({"rotation": {"interval": interval, "gracePeriod": "0s"}}));
        refused_with(object, "spec.rotation.interval must be between 1m and 87600h");
    }
    let shorter = "spec.rotation.interval must be at least spec.rotation.gracePeriod";
    refused_with(key(json!({"rotation": {"interval": "5m", "gracePeriod": "10m"}})), shorter);
    refused_with(key(json!({"rotation": {"interval": "24h", "gracePeriod": "720h"}})), shorter);
    refused_with(key(json!({"rotation": {"interval": "9m"}})), shorter);
}

/// The CEL rules and `plan::validate` (which the operator applies where CEL is not enforced)
/// draw the same lines.
#[test]
fn duration_rules_agree_with_the_operators_validation() {
    let samples =
        ["0s", "1ms", "59s", "1m", "9m59s", "10m", "1h", "1.5h", "720h", "720h1ms", "721h", "87600h", "87601h"];
    for interval in samples.iter().map(Some).chain([None]) {
        for grace in samples {
            let mut rotation = json!({"gracePeriod": grace});
            if let Some(interval) = interval {
                rotation["interval"] = json!(interval);
            }
            rotation_rules_agree(rotation);
        }
    }
}

/// The operator's validation and the CRD's CEL rules accept and refuse this spec.rotation alike.
fn rotation_rules_agree(rotation: Value) {
    let spec = key(json!({"rotation": rotation}))["spec"].clone();
    let spec: twilio_operator::api::TwilioApiKeySpec = serde_json::from_value(spec).unwrap();
    let mut resource = twilio_operator::api::TwilioApiKey::new("k", spec);
    resource.metadata.namespace = Some("ns".into());
    let operator = twilio_operator::keys::validate::validate(&resource);
    let cel = rejection(key(json!({"rotation": rotation})));
    assert_eq!(operator.is_ok(), cel.is_none(), "{rotation}: operator {operator:?}, CEL {cel:?}");
}

#[test]
fn max_grace_period_rules_agree_with_the_operators_validation() {
    let samples = ["0s", "1m", "9m59s", "10m", "1h", "24h", "720h", "720h1ms", "721h"];
    for max in samples {
        for grace in samples.iter().map(Some).chain([None]) {
            let mut rotation = json!({"maxGracePeriod": max});
            if let Some(grace) = grace {
                rotation["gracePeriod"] = json!(grace);
            }
            rotation_rules_agree(rotation);
        }
    }
}

#[test]
fn the_pending_friendly_name_prefix_is_reserved() {
    let prefix = twilio_operator::api::PENDING_FRIENDLY_NAME_PREFIX;
    refused_with(key(json!({"friendlyName": format!("{prefix}0b5e")})), "spec.friendlyName must not start with");
    assert_eq!(rejection(key(json!({"friendlyName": format!("mine {prefix}")}))), None);
    assert_eq!(rejection(key(json!({"friendlyName": "twilio-operator:pending"}))), None);
}

#[test]
fn the_operators_secret_labels_and_annotations_are_reserved() {
    let secret = |labels: Value, annotations: Value| {
        key(json!({"secret": {
            "keys": {"accountSid": "TWILIO_ACCOUNT_SID", "apiKeySid": "TWILIO_API_KEY", "apiKeySecret": "TWILIO_API_SECRET"},
            "labels": labels,
            "annotations": annotations,
        }}))
    };
    let labels_message = "spec.secret.labels must not set";
    assert_eq!(rejection(secret(json!({"team": "payments", "sub.twilio-operator.dev/x": "y"}), json!({}))), None);
    refused_with(secret(json!({"app.kubernetes.io/managed-by": "me"}), json!({})), labels_message);
    refused_with(secret(json!({"team": "a", "twilio-operator.dev/key-sid": "SK1"}), json!({})), labels_message);
    let annotations_message = "spec.secret.annotations must not set";
    assert_eq!(
        rejection(secret(json!({}), json!({"app.kubernetes.io/managed-by": "only the label is reserved"}))),
        None
    );
    refused_with(secret(json!({}), json!({"twilio-operator.dev/template": "x"})), annotations_message);
}

/// What an API server enforces without CEL (the local 1.20 one): lengths and patterns.
#[test]
fn the_schema_bounds_what_a_1_20_api_server_enforces() {
    let schema = key_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let rotation = &spec["rotation"]["properties"];
    for field in ["interval", "gracePeriod"] {
        assert_eq!(rotation[field]["maxLength"], 32, "{field}");
    }
    assert_eq!(rotation["trigger"]["maxLength"], 253);
    assert_eq!(spec["policy"]["properties"]["allow"]["items"]["maxLength"], 256);
    let secret = &spec["secret"]["properties"];
    assert_eq!(secret["labels"]["maxProperties"], 64);
    assert_eq!(secret["annotations"]["maxProperties"], 64);
    assert_eq!(secret["labels"]["additionalProperties"]["maxLength"], 63);

    let matches = |pattern: &Value, text: &str| regex::Regex::new(pattern.as_str().unwrap()).unwrap().is_match(text);
    let name = &secret["name"]["pattern"];
    for good in ["a", "payments-twilio", "a.b-c.d0"] {
        assert!(matches(name, good), "{good}");
    }
    for bad in ["Payments", "-a", "a-", "a..b", ".a", "a_b", "a/b"] {
        assert!(!matches(name, bad), "{bad}");
    }
    let value = &secret["labels"]["additionalProperties"]["pattern"];
    for good in ["", "a", "A-b_c.9"] {
        assert!(matches(value, good), "{good:?}");
    }
    for bad in ["-a", "a-", "a b", "é"] {
        assert!(!matches(value, bad), "{bad}");
    }
}
