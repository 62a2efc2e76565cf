//! "Trust nothing a tenant writes": no value of a TwilioApiKey field crashes or wedges the
//! operator. What the API server refuses at admission (the schema's lengths and patterns, and
//! the CRD's CEL rules) never reaches it; what the API server admits but the operator cannot
//! honour (on a cluster where the CRD lost its rules, or what no rule covers, such as label
//! keys) ends Stalled with reason InvalidSpec before any call to Twilio.

use twilio_operator_testkit as support;

use serde_json::{Value, json};
use support::TestEnv;
use twilio_operator::api::TwilioApiKey;

/// Waits until the key is Stalled with reason InvalidSpec, and returns the condition's message.
async fn invalid_spec_message(env: &TestEnv, name: &str) -> String {
    let key = env.wait_for_condition(name, "False", "InvalidSpec").await;
    let status = key.status.unwrap();
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").expect("a Stalled condition");
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "InvalidSpec"));
    assert_eq!(status.key_sid, None, "{name} has no key");
    stalled.message.clone()
}

/// Creates a plain key after the others and waits until it is Ready: the operator is alive and
/// had every chance to act on the keys created before. Returns its key SID.
async fn a_later_key_becomes_ready(env: &TestEnv) -> String {
    env.create_key("after", json!({})).await;
    let key = env.wait_ready("after").await;
    key.status.unwrap().key_sid.expect("status.keySid")
}

/// Whether the API server admitted the key; a refusal must be a 422 that says `why` (the CRD's
/// CEL rules refuse at admission what the operator would stall on, with the same words).
fn admitted(result: Result<TwilioApiKey, kube::Error>, why: &str) -> bool {
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 422 => {
            println!("refused at admission: {}", status.message);
            assert!(status.message.contains(why), "the refusal names {why:?}: {}", status.message);
            false
        }
        Err(error) => panic!("create TwilioApiKey: {error:?}"),
    }
}

/// Twilio holds exactly this key, and the operator asked it to create no other (a key created for
/// an invalid spec and deleted again would show here).
fn assert_only_key_in_twilio(env: &TestEnv, sid: &str) {
    let sids: Vec<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    assert_eq!(sids, vec![sid.to_string()], "Twilio holds the valid key only");
    let creations: u64 =
        env.fake.request_counts().iter().filter(|(op, _)| op.starts_with("create_key")).map(|(_, n)| n).sum();
    assert_eq!(creations, 1, "one key creation, for the valid key: {:?}", env.fake.request_counts());
}

fn assert_no_panic(env: &TestEnv) {
    let log = env.operator.as_ref().expect("the operator runs").output();
    assert!(!log.contains("panicked"), "the operator panicked:\n{log}");
}

#[tokio::test]
async fn values_the_schema_bounds_are_refused_at_admission() {
    let env = TestEnv::new("bounds-admission").await;
    let labels: serde_json::Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (what, spec) in [
        (
            "a gracePeriod that overflowed the parser",
            json!({"rotation": {"gracePeriod": "10000000000000000000s10000000000000000000s"}}),
        ),
        ("an interval of 33 characters", json!({"rotation": {"interval": format!("{}h", "1".repeat(32))}})),
        ("a trigger of 254 characters", json!({"rotation": {"trigger": "t".repeat(254)}})),
        ("a Secret name that is no DNS subdomain", json!({"secret": {"name": "Payments_Twilio"}})),
        ("an invalid label value", json!({"secret": {"labels": {"team": "a b"}}})),
        ("65 labels", json!({"secret": {"labels": labels}})),
        ("a permission of 257 characters", json!({"keyType": "Restricted", "policy": {"allow": ["p".repeat(257)]}})),
    ] {
        match env.try_create_key("refused", spec).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{what}: {status:?}"),
            other => panic!("{what} should be refused with 422, got {other:?}"),
        }
    }
    assert!(env.keys().get_opt("refused").await.unwrap().is_none());
}

#[tokio::test]
async fn a_grace_period_beyond_720h_stalls_the_key_and_not_the_operator() {
    let env = TestEnv::with_operator("bounds-grace").await;
    // Passes the schema (a well-formed duration of 10 characters); the CEL rule refuses it at
    // admission, which is as good; without the rule the operator stalls it.
    let spec = json!({"rotation": {"gracePeriod": "100000000h"}});
    if !admitted(env.try_create_key("huge-grace", spec).await, "spec.rotation.gracePeriod must be at most 720h") {
        return;
    }
    let message = invalid_spec_message(&env, "huge-grace").await;
    assert!(message.contains("spec.rotation.gracePeriod") && message.contains("720h"), "{message}");

    let sid = a_later_key_becomes_ready(&env).await;
    assert_only_key_in_twilio(&env, &sid);
    assert!(invalid_spec_message(&env, "huge-grace").await.contains("gracePeriod"), "still Stalled");
    assert_no_panic(&env);
}

#[tokio::test]
async fn intervals_under_a_minute_stall_without_a_key() {
    let env = TestEnv::with_operator("bounds-interval").await;
    for (name, interval) in [("zero", "0s"), ("one-second", "1s")] {
        let spec = json!({"rotation": {"interval": interval, "gracePeriod": "0s"}});
        if !admitted(env.try_create_key(name, spec).await, "spec.rotation.interval must be between 1m and 87600h") {
            continue;
        }
        let message = invalid_spec_message(&env, name).await;
        assert!(message.contains("spec.rotation.interval") && message.contains("1m"), "{name}: {message}");
    }
    let sid = a_later_key_becomes_ready(&env).await;
    assert_only_key_in_twilio(&env, &sid);
    assert_no_panic(&env);
}

#[tokio::test]
async fn an_invalid_or_reserved_label_key_stalls_before_a_key_is_created() {
    let env = TestEnv::with_operator("bounds-labels").await;
    // Label keys are not in the schema (the CEL rule reserves the operator's, but checks no syntax);
    // without this check the Secret write got a 422 after the Twilio key had been created.
    for (name, labels) in [
        ("bad-label", json!({"bad key!": "x"})),
        ("reserved-label", json!({"twilio-operator.dev/key-sid": "SK0"})),
        ("managed-by", json!({"app.kubernetes.io/managed-by": "someone-else"})),
    ] {
        let spec = json!({"secret": {"labels": labels}});
        if !admitted(env.try_create_key(name, spec).await, "spec.secret.labels must not set") {
            continue;
        }
        let message = invalid_spec_message(&env, name).await;
        assert!(message.contains("spec.secret.labels"), "{name}: {message}");
        assert!(env.secrets().get_opt(name).await.unwrap().is_none(), "no Secret {name}");
    }
    let sid = a_later_key_becomes_ready(&env).await;
    assert_only_key_in_twilio(&env, &sid);
    assert_no_panic(&env);
}
