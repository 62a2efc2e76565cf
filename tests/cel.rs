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
