//! Adoption (`spec.secret.adopt`): a key found in an existing Secret is taken over only once
//! Twilio accepts its very SID and secret in the resource's account; anything else is refused and
//! nothing is deleted. And migration: a key orphaned by one cluster is adopted by another, with
//! exactly one key in Twilio throughout.

use twilio_operator_testkit as support;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{ACCOUNT_SID, AUTH_TOKEN, Operator, TestEnv, create_key, create_secret, setup_namespace, wait_until};
use twilio_operator::api::TwilioApiKey;

const OTHER_ACCOUNT: &str = "AC99999999999999999999999999999999";

/// A key made by hand in Twilio, and its secret.
fn hand_made_key(env: &TestEnv, account: &str, name: &str) -> (String, String) {
    let sid = env.fake.create_key_directly(account, name);
    let secret = env.fake.key(&sid).expect("the key exists").secret;
    (sid, secret)
}

fn create_calls(env: &TestEnv) -> u64 {
    env.fake.request_counts().get("create_key 201").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_proven_key_is_adopted_without_a_new_key_and_then_managed_as_its_own() {
    let env = TestEnv::with_operator("adopt").await;
    let (sid, secret) = hand_made_key(&env, ACCOUNT_SID, "made by hand");
    env.create_secret("app", &[("TWILIO_API_KEY", &sid), ("TWILIO_API_SECRET", &secret), ("EXTRA", "kept")]).await;
    env.create_key("app", json!({"secret": {"adopt": true}, "friendlyName": "payments"})).await;

    let adopted = env.wait_ready("app").await.status.unwrap();
    assert_eq!(adopted.key_sid.as_deref(), Some(sid.as_str()), "the Secret's key is recorded");
    env.wait_for_event("app", "KeyAdopted").await;
    wait_until("the adopted key renamed as the spec asks", || async {
        (env.fake.friendly_name(&sid).as_deref() == Some("payments")).then_some(())
    })
    .await;
    assert_eq!(create_calls(&env), 0, "no key was created");
    assert_eq!(env.fake.keys().len(), 1);
    let (account, delivered, delivered_secret) = env.delivered_pair("app").await;
    assert_eq!(
        (account.as_str(), delivered.as_str(), delivered_secret.as_str()),
        (ACCOUNT_SID, sid.as_str(), secret.as_str())
    );
    let data = env.secrets().get("app").await.unwrap().data.unwrap();
    assert_eq!(data["EXTRA"].0, b"kept", "entries the operator does not write stay");

    // Managed as if created here: deleting the resource deletes the key.
    env.delete_key("app").await;
    env.wait_gone("app").await;
    assert!(env.fake.key(&sid).is_none(), "the adopted key is deleted with its resource");
}

#[tokio::test]
async fn an_unproven_foreign_or_taken_pair_is_refused_and_nothing_is_deleted() {
    let env = TestEnv::with_operator("adoptrefused").await;
    // Another resource's key, its pair copied from that resource's Secret.
    env.create_key("victim", json!({})).await;
    let victim = env.wait_ready("victim").await.status.unwrap().key_sid.unwrap();
    let (_, _, victim_secret) = env.delivered_pair("victim").await;
    // A key of another account, with its real secret.
    env.fake.add_account(OTHER_ACCOUNT, "other-token");
    let (foreign, foreign_secret) = hand_made_key(&env, OTHER_ACCOUNT, "elsewhere");
    // A key of this account, with a wrong secret.
    let (guessed, _) = hand_made_key(&env, ACCOUNT_SID, "guessed");

    let cases = [
        ("wrong", guessed.clone(), "not-its-secret".to_string(), "does not authenticate"),
        // Proven first: a key of another account does not authenticate in this one.
        ("foreign", foreign.clone(), foreign_secret, "does not authenticate"),
        ("taken", victim.clone(), victim_secret, "is the key of TwilioApiKey"),
        ("notasid", "SK../../Accounts".to_string(), "secret-of-notasid".to_string(), "is not a key SID"),
    ];
    let before = env.fake.keys().len();
    for (name, sid, secret, _) in &cases {
        env.create_secret(name, &[("TWILIO_API_KEY", sid), ("TWILIO_API_SECRET", secret)]).await;
        env.create_key(name, json!({"secret": {"adopt": true}})).await;
    }
    for (name, sid, secret, why) in &cases {
        let refused = env.wait_for_condition(name, "False", "AdoptionRefused").await;
        let message =
            refused.status.unwrap().conditions.iter().map(|c| c.message.clone()).collect::<Vec<_>>().join(" ");
        assert!(message.contains(why), "{name}: {message}");
        assert!(!message.contains(secret.as_str()), "{name}: the secret is never shown");
        let data = env.secrets().get(name).await.unwrap().data.unwrap();
        assert_eq!(data["TWILIO_API_KEY"].0, sid.as_bytes(), "{name}: the Secret is left as it was");
        assert!(!data.contains_key("TWILIO_ACCOUNT_SID"), "{name}: nothing was written into it");
    }
    for sid in [&victim, &foreign, &guessed] {
        assert!(env.fake.key(sid).is_some(), "key {sid} is not deleted");
    }
    assert_eq!(env.fake.keys().len(), before, "no key was created or deleted");
    assert_eq!(env.wait_ready("victim").await.status.unwrap().key_sid.as_deref(), Some(victim.as_str()));
}

/// `deletionPolicy: Orphan` in cluster A, the same manifests in cluster B with the Secret copied
/// over: B adopts the key, and Twilio holds exactly one key throughout.
#[tokio::test]
async fn a_key_orphaned_by_one_cluster_is_adopted_by_another_with_one_key_throughout() {
    let mut env = TestEnv::new("migrate").await;
    env.start_operator(&[]);
    let spec = json!({"deletionPolicy": "Orphan", "secret": {"adopt": true}});
    env.create_key("app", spec.clone()).await;
    let sid = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    let one_key = |moment: &str| {
        let sids: Vec<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
        assert_eq!(sids, std::slice::from_ref(&sid), "{moment}: exactly the one key");
    };
    one_key("cluster A Ready");

    env.delete_key("app").await;
    env.wait_gone("app").await;
    one_key("cluster A let go of the resource");
    let (_, _, secret) = env.delivered_pair("app").await;

    let second =
        support::start_control_plane(&format!("{}-migrate", std::process::id())).expect("second control plane");
    let client = second.client().await.expect("a client of the second control plane");
    setup_namespace(&client, &env.namespace, ACCOUNT_SID, AUTH_TOKEN).await.expect("set up the namespace");
    // The Secret copied over as data only, as `kubectl get secret -o yaml` edited by hand would.
    create_secret(
        &client,
        &env.namespace,
        "app",
        &[("TWILIO_ACCOUNT_SID", ACCOUNT_SID), ("TWILIO_API_KEY", &sid), ("TWILIO_API_SECRET", &secret)],
    )
    .await
    .expect("copy the Secret");
    create_key(&client, &env.namespace, "app", spec).await.expect("the same manifest");
    let kubeconfig = second.kubeconfig.to_string_lossy().to_string();
    let _operator_b = Operator::spawn(
        &format!("{}-cluster-b", env.namespace),
        &env.fake.url(),
        &["--watch-namespace", &env.namespace],
        "info,twilio_operator=debug",
        &[("KUBECONFIG", &kubeconfig)],
    );
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), &env.namespace);
    let adopted = wait_until("cluster B to adopt the key", || async {
        let key = keys.get("app").await.ok()?;
        support::ready_sid(&key).map(str::to_owned)
    })
    .await;
    assert_eq!(adopted, sid, "cluster B delivers the same key");
    one_key("cluster B Ready");
    assert_eq!(create_calls(&env), 1, "one key was ever created, by cluster A");
    let secrets: Api<Secret> = Api::namespaced(client, &env.namespace);
    let data = secrets.get("app").await.unwrap().data.unwrap();
    assert_eq!(data["TWILIO_API_SECRET"].0, secret.as_bytes(), "the secret delivered in B is the one A made");
    assert!(env.twilio_accepts(ACCOUNT_SID, &sid, &secret).await);
}

/// The state an adoption leaves when it stops between marking the Secret as the resource's and
/// recording the key: the next pass proves the key again and records it, without a new key.
#[tokio::test]
async fn an_adoption_interrupted_after_marking_the_secret_is_finished_from_the_secret() {
    let mut env = TestEnv::new("adoptresume").await;
    let resource = env.create_key("app", json!({"secret": {"adopt": true}})).await;
    let (sid, secret) = hand_made_key(&env, ACCOUNT_SID, "made by hand");
    env.create_secret(
        "app",
        &[("TWILIO_ACCOUNT_SID", ACCOUNT_SID), ("TWILIO_API_KEY", &sid), ("TWILIO_API_SECRET", &secret)],
    )
    .await;
    let marks = json!({"metadata": {"annotations": {
        "twilio-operator.dev/owner": "app",
        "twilio-operator.dev/owner-uid": resource.metadata.uid.clone().unwrap(),
        "twilio-operator.dev/key-sid": sid,
    }}});
    env.secrets().patch("app", &PatchParams::default(), &Patch::Merge(&marks)).await.unwrap();
    env.start_operator(&[]);
    let recorded = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    assert_eq!(recorded, sid, "the key the Secret holds is recorded");
    env.wait_for_event("app", "KeyAdopted").await;
    assert_eq!(create_calls(&env), 0, "no key was created");
}

/// A resource that has a key never swaps it for one its Secret names, adopt or not, even a key
/// whose secret the tenant holds: the Secret counts as altered and the resource gets a new key of
/// its own; the other key is not touched.
#[tokio::test]
async fn a_resource_with_a_key_never_adopts_another_from_its_secret() {
    let env = TestEnv::with_operator("adoptswap").await;
    env.create_key("app", json!({"secret": {"adopt": true}})).await;
    let first = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    let (possessed, possessed_secret) = hand_made_key(&env, ACCOUNT_SID, "the tenant's own");
    let forged = json!({
        "metadata": {"annotations": {"twilio-operator.dev/key-sid": possessed}},
        "stringData": {"TWILIO_API_KEY": possessed, "TWILIO_API_SECRET": possessed_secret},
    });
    env.secrets().patch("app", &PatchParams::default(), &Patch::Merge(&forged)).await.unwrap();
    let replaced = env.wait_new_key("app", &first).await.status.unwrap();
    let current = replaced.key_sid.unwrap();
    assert_ne!(current, possessed, "the possessed key is not taken over");
    assert!(replaced.retiring_keys.iter().all(|k| k.sid != possessed));
    env.wait_for_event("app", "SecretClaimRejected").await;
    assert_eq!(env.fake.friendly_name(&possessed).as_deref(), Some("the tenant's own"), "untouched");
}
