//! Scenarios on a real API server with the real operator binary and the fake Twilio:
//! create, deliver, delete, orphan, and refused credentials.

use twilio_operator_testkit as support;

use std::time::Duration;

use fake_twilio::FakeKeyType;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{ACCOUNT_SID, TestEnv, wait_until};
use twilio_operator::api::ClusterTwilioAccount;

#[tokio::test]
async fn standard_and_restricted_keys_are_created_and_delivered_as_valid_pairs() {
    let env = TestEnv::with_operator("create").await;
    env.create_key("web", json!({})).await;
    env.create_key(
        "sms-sender",
        json!({
            "keyType": "Restricted",
            "friendlyName": "sms sender",
            "policy": {"allow": ["/twilio/messaging/messages/create"]},
            "secret": {"name": "sms-credentials", "labels": {"team": "a"}},
        }),
    )
    .await;

    for (name, secret_name, key_type, friendly_name) in [
        ("web", "web", FakeKeyType::Standard, format!("{}/web", env.namespace)),
        ("sms-sender", "sms-credentials", FakeKeyType::Restricted, "sms sender".to_string()),
    ] {
        let key = env.wait_ready(name).await;
        let status = key.status.clone().unwrap();
        let sid = status.key_sid.clone().expect("status.keySid is set");
        assert_eq!(status.account_sid.as_deref(), Some(ACCOUNT_SID));
        assert_eq!(status.secret_name.as_deref(), Some(secret_name));
        assert_eq!(status.observed_generation, key.metadata.generation);

        let (account, delivered_sid, secret) = env.delivered_pair(secret_name).await;
        assert_eq!((account.as_str(), delivered_sid.as_str()), (ACCOUNT_SID, sid.as_str()));
        assert!(env.twilio_accepts(&account, &delivered_sid, &secret).await, "the delivered pair authenticates");

        let in_twilio = env.fake.key(&sid).expect("the key exists in Twilio");
        assert_eq!(in_twilio.key_type, key_type);
        assert_eq!(in_twilio.friendly_name, friendly_name);

        // The Secret names its resource but has no ownerReference: the garbage collector must
        // never delete the only copy of a valid key's secret (foreground deletion would).
        let delivered = env.secrets().get(secret_name).await.unwrap();
        assert!(delivered.owner_references().is_empty());
        assert_eq!(delivered.annotations().get("twilio-operator.dev/owner").map(String::as_str), Some(name));
        assert_eq!(delivered.annotations().get("twilio-operator.dev/owner-uid"), key.uid().as_ref());
        env.wait_for_event(name, "KeyCreated").await;
    }
    let restricted = env.fake.keys().into_iter().find(|k| k.key_type == FakeKeyType::Restricted).unwrap();
    assert_eq!(restricted.policy, Some(json!({"allow": ["/twilio/messaging/messages/create"]})));
    let secret = env.secrets().get("sms-credentials").await.unwrap();
    assert_eq!(secret.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(env.fake.keys().len(), 2, "exactly one Twilio key per resource");

    let log = env.operator.as_ref().unwrap().output();
    assert!(log.contains("created Twilio key"), "the operator log is captured");
    for key in env.fake.keys() {
        assert!(!log.contains(&key.secret), "a key secret appears in the operator log");
    }
    assert!(!log.contains(support::AUTH_TOKEN), "the auth token appears in the operator log");
}

#[tokio::test]
async fn deleting_a_key_removes_it_from_twilio_and_its_secret_from_the_cluster() {
    let env = TestEnv::with_operator("delete").await;
    env.create_key("doomed", json!({})).await;
    let sid = env.wait_ready("doomed").await.status.unwrap().key_sid.unwrap();
    assert!(env.fake.key(&sid).is_some());

    env.delete_key("doomed").await;
    env.wait_gone("doomed").await;
    assert!(env.fake.key(&sid).is_none(), "the key is deleted in Twilio before the finalizer goes");
    env.wait_secret_gone("doomed").await;
    env.wait_for_event("doomed", "KeyDeleted").await;
}

#[tokio::test]
async fn orphan_deletion_policy_keeps_the_key_and_the_secret() {
    let env = TestEnv::with_operator("orphan").await;
    env.create_key("kept", json!({"deletionPolicy": "Orphan"})).await;
    let sid = env.wait_ready("kept").await.status.unwrap().key_sid.unwrap();

    env.delete_key("kept").await;
    env.wait_gone("kept").await;
    // Give the garbage collector time to act on a wrongly kept ownerReference.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secret: Secret = env.secrets().get("kept").await.expect("the Secret is kept");
    assert!(secret.owner_references().is_empty(), "the ownerReference is removed");
    let (account, key_sid, key_secret) = env.delivered_pair("kept").await;
    assert_eq!(key_sid, sid);
    assert!(env.fake.key(&sid).is_some(), "the key is kept in Twilio");
    assert!(env.twilio_accepts(&account, &key_sid, &key_secret).await, "and still works");
}

#[tokio::test]
async fn refused_credentials_stall_with_twilio_auth_failed_and_no_retry_storm() {
    let mut env = TestEnv::new("badcreds").await;
    env.create_refused_account("wrong", "wrong-credentials").await;
    env.start_operator(&[]);
    env.create_key("refused", json!({"accountRef": {"name": "wrong"}})).await;

    let key = env.wait_for_condition("refused", "False", "TwilioAuthFailed").await;
    let stalled = key.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains("401"), "the message says what Twilio answered: {}", stalled.message);
    env.wait_for_event("refused", "TwilioAuthFailed").await;

    env.wait_for_account_condition("wrong", "False", "TwilioAuthFailed").await;

    // A refused credential is not retried until something changes or the resync interval (30s
    // here) passes: over the next seconds Twilio sees no further request from the operator.
    let refused =
        || env.fake.request_counts().iter().filter(|(k, _)| k.ends_with(" 401")).map(|(_, v)| *v).sum::<u64>();
    let before = refused();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(before >= 1, "Twilio refused the credential");
    assert_eq!(refused(), before, "no retries while stalled");
    assert!(env.fake.keys().is_empty());
}

#[tokio::test]
async fn accounts_report_verified_credentials_and_main_keys_work_too() {
    let env = TestEnv::with_operator("accounts").await;
    env.wait_for_account_condition("main", "True", "CredentialsVerified").await;

    let (main_sid, main_secret) = env.fake.add_main_key(ACCOUNT_SID);
    env.create_secret("main-key", &[("TWILIO_API_KEY", &main_sid), ("TWILIO_API_SECRET", &main_secret)]).await;
    env.create_account("by-main-key", "main-key").await;
    env.create_key("via-main-key", json!({"accountRef": {"name": "by-main-key"}})).await;
    let key = env.wait_ready("via-main-key").await;
    let (account, sid, secret) = env.delivered_pair("via-main-key").await;
    assert_eq!(Some(sid.clone()), key.status.unwrap().key_sid);
    assert!(env.twilio_accepts(&account, &sid, &secret).await);
}

#[tokio::test]
async fn invalid_spec_is_stalled_with_the_field_named_and_no_twilio_call() {
    let env = TestEnv::with_operator("invalid").await;
    // What a CEL rule covers is refused at admission, with the rule's message.
    match env.try_create_key("no-policy", json!({"keyType": "Restricted"})).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("spec.policy is required"), "{status:?}"),
        other => panic!("a Restricted key without a policy is refused at admission: {other:?}"),
    }
    // What no rule covers (a label key a Secret cannot carry) the operator stalls on.
    env.create_key("bad-label", json!({"secret": {"labels": {"bad key!": "x"}}})).await;
    let key = env.wait_for_condition("bad-label", "False", "InvalidSpec").await;
    let ready = key.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("spec.secret.labels"), "{}", ready.message);
    assert_eq!(env.fake.request_counts().keys().filter(|k| k.starts_with("create_key")).count(), 0);
}

/// Events about a ClusterTwilioAccount (cluster-scoped) land in `default`, regarding the account,
/// where `kubectl events` and `kubectl describe` find them.
#[tokio::test]
async fn events_about_cluster_accounts_land() {
    let env = TestEnv::with_operator("ctaevents").await;
    let name = env.create_cluster_account(json!({"namespaces": [env.namespace]})).await;
    let accounts: Api<ClusterTwilioAccount> = Api::all(env.client.clone());
    let uid = accounts.get(&name).await.unwrap().metadata.uid.unwrap();
    // A refused credential stalls the account, with a Warning Event.
    let refused = json!({"stringData": {"TWILIO_AUTH_TOKEN": "not-the-token"}});
    env.secrets().patch("twilio-credentials", &PatchParams::default(), &Patch::Merge(&refused)).await.unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let event = wait_until("a TwilioAuthFailed Event about the ClusterTwilioAccount", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str())
                && e.reason.as_deref() == Some("TwilioAuthFailed")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.regarding.unwrap().kind.as_deref(), Some("ClusterTwilioAccount"));
    let log = env.operator.as_ref().unwrap().output();
    assert!(!log.contains("could not record Event"), "an Event was refused:\n{log}");
    accounts.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_until("the ClusterTwilioAccount gone", || async {
        accounts.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
}
