//! The Secret in the form apps want (`spec.secret.type`, `spec.secret.template.data`): entries
//! rendered from the key on the real control plane, rewritten without a new key when the template
//! changes, and a bad template refused before any call to Twilio.

use twilio_operator_testkit as support;

use serde_json::json;
use support::{ACCOUNT_SID, TestEnv, wait_until};

fn text(data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>, key: &str) -> String {
    String::from_utf8(data.get(key).unwrap_or_else(|| panic!("no {key}")).0.clone()).unwrap()
}

#[tokio::test]
async fn templated_entries_are_rendered_from_the_key_and_follow_the_template() {
    let env = TestEnv::with_operator("templates").await;
    let template = json!({
        "TWILIO_ENV": "TWILIO_ACCOUNT_SID={{ accountSid }}\nTWILIO_API_KEY={{ apiKeySid }}\nTWILIO_API_SECRET={{ apiKeySecret }}\n",
        "twilio.json": "{\"accountSid\": {{ accountSid | tojson }}, \"keySid\": {{ apiKeySid | tojson }}, \"secret\": {{ apiKeySecret | tojson }}, \"name\": {{ friendlyName | tojson }}}",
        "TWILIO_URL": "twilio://{{ apiKeySid }}:{{ apiKeySecret | urlencode }}@{{ region }}/{{ accountSid }}",
    });
    let spec =
        json!({"friendlyName": "payments", "secret": {"type": "example.com/twilio", "template": {"data": template}}});
    env.create_key("app", spec).await;
    let sid = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    let (_, _, secret) = env.delivered_pair("app").await;
    let written = env.secrets().get("app").await.unwrap();
    assert_eq!(written.type_.as_deref(), Some("example.com/twilio"));
    let data = written.data.unwrap();
    assert_eq!(
        text(&data, "TWILIO_ENV"),
        format!("TWILIO_ACCOUNT_SID={ACCOUNT_SID}\nTWILIO_API_KEY={sid}\nTWILIO_API_SECRET={secret}\n")
    );
    let document: serde_json::Value = serde_json::from_str(&text(&data, "twilio.json")).expect("a JSON document");
    assert_eq!(document, json!({"accountSid": ACCOUNT_SID, "keySid": sid, "secret": secret, "name": "payments"}));
    assert_eq!(text(&data, "TWILIO_URL"), format!("twilio://{sid}:{secret}@us1/{ACCOUNT_SID}"));
    let events = env.events().await;
    assert!(
        events.iter().all(|e| !e.note.as_deref().unwrap_or_default().contains(&secret)),
        "no Event shows the secret"
    );

    // A new template rewrites the Secret; the key stays.
    // (A merge patch: entries set to null go.)
    let data = json!({"TWILIO_ENV": "KEY={{ apiKeySid }}", "twilio.json": null, "TWILIO_URL": null});
    let changed = json!({"secret": {"template": {"data": data}}});
    env.patch_spec("app", changed).await;
    wait_until("the Secret rewritten from the new template", || async {
        let data = env.secrets().get("app").await.ok()?.data?;
        (data.get("TWILIO_ENV").map(|v| v.0.clone()) == Some(format!("KEY={sid}").into_bytes())
            && !data.contains_key("twilio.json"))
        .then_some(())
    })
    .await;
    assert_eq!(env.wait_ready("app").await.status.unwrap().key_sid.as_deref(), Some(sid.as_str()), "same key");
    assert_eq!(env.fake.keys().len(), 1);
}

#[tokio::test]
async fn a_bad_template_or_a_changed_type_is_refused_before_anything_is_done() {
    let env = TestEnv::with_operator("badtemplates").await;
    env.create_key("undefined", json!({"secret": {"template": {"data": {"A": "{{ password }}"}}}})).await;
    env.create_key("syntax", json!({"secret": {"template": {"data": {"A": "{{ apiKeySid "}}}})).await;
    for name in ["undefined", "syntax"] {
        let stalled = env.wait_for_condition(name, "False", "InvalidSpec").await;
        let message = stalled.status.unwrap().conditions[0].message.clone();
        assert!(message.contains("spec.secret.template.data.A"), "{name}: {message}");
    }
    assert!(env.fake.keys().is_empty(), "no key was created for a template that cannot render");
    assert_eq!(env.fake.request_counts().get("create_key 201"), None);

    env.create_key("typed", json!({})).await;
    let sid = env.wait_ready("typed").await.status.unwrap().key_sid.unwrap();
    env.patch_spec("typed", json!({"secret": {"type": "kubernetes.io/basic-auth"}})).await;
    let refused = env.wait_for_condition("typed", "False", "SecretRejected").await;
    let message = refused.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("cannot change"), "{message}");
    assert_eq!(
        env.secrets().get("typed").await.unwrap().type_.as_deref(),
        Some("Opaque"),
        "the Secret is left as it was"
    );
    assert!(env.fake.key(&sid).is_some(), "and so is the key");
}
