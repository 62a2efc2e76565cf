//! The account's own credentials, on the real control plane with the fake Twilio: the auth token
//! rotates step by step (and under SIGKILLs at random instants) to end with exactly one valid
//! token, held by the credentials Secret and delivered to the consumers' Secrets; a subaccount is
//! made, used by the TwilioAccount it gets to issue a key, and on deletion suspended or closed as
//! its policy says. (The zero-downtime proof with consumer Pods is in tests/consumers.rs.)

use twilio_operator_testkit as support;

use std::time::Duration;

use fake_twilio::Faults;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::json;
use support::{ACCOUNT_SID, AUTH_TOKEN, TestEnv, is_ready, wait_up_to};
use twilio_operator::api::{TwilioAccount, TwilioSubaccount};

/// The value of `key` in Secret `name`, if both exist.
async fn secret_value(env: &TestEnv, name: &str, key: &str) -> Option<String> {
    let secret = env.secrets().get_opt(name).await.expect("read Secret")?;
    let data = secret.data.unwrap_or_default();
    data.get(key).map(|v| String::from_utf8(v.0.clone()).expect("UTF-8"))
}

async fn patch_account(env: &TestEnv, name: &str, spec: serde_json::Value) {
    env.accounts()
        .patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec})))
        .await
        .expect("patch the account");
}

/// status.credentialRotation of account "main": (rotations, phase, trigger).
async fn rotation_state(env: &TestEnv) -> (u32, Option<String>, Option<String>) {
    let account = env.accounts().get("main").await.expect("the account");
    let rotation = account.status.and_then(|s| s.credential_rotation).unwrap_or_default();
    (rotation.rotations, rotation.phase.map(|p| format!("{p:?}")), rotation.trigger)
}

/// Waits until the rotation asked for by `trigger` has finished (grace period included).
async fn wait_rotated(env: &TestEnv, trigger: &str, timeout: Duration) -> u32 {
    wait_up_to(timeout, &format!("the rotation for trigger {trigger:?} finished"), || async {
        let (rotations, phase, seen) = rotation_state(env).await;
        (phase.is_none() && seen.as_deref() == Some(trigger) && rotations > 0).then_some(rotations)
    })
    .await
}

/// Exactly one token works and everyone holds it: Twilio has no secondary, the token the
/// credentials Secret holds is the primary, no `_NEXT` is left, the deliverTo Secret delivers it
/// without a `_PREVIOUS`, and `old` no longer authenticates.
async fn one_valid_token_everywhere(env: &TestEnv, old: &str) -> String {
    let primary = env.fake.auth_token(ACCOUNT_SID).expect("the account");
    assert_eq!(env.fake.secondary_auth_token(ACCOUNT_SID), None, "no secondary token is left");
    assert_ne!(primary, old, "the token was replaced");
    assert_eq!(secret_value(env, "twilio-credentials", "TWILIO_AUTH_TOKEN").await.as_deref(), Some(primary.as_str()));
    assert_eq!(secret_value(env, "twilio-credentials", "TWILIO_AUTH_TOKEN_NEXT").await, None);
    assert_eq!(secret_value(env, "app-twilio", "TWILIO_AUTH_TOKEN").await.as_deref(), Some(primary.as_str()));
    assert_eq!(secret_value(env, "app-twilio", "TWILIO_ACCOUNT_SID").await.as_deref(), Some(ACCOUNT_SID));
    assert_eq!(secret_value(env, "app-twilio", "TWILIO_AUTH_TOKEN_PREVIOUS").await, None);
    assert!(env.twilio_accepts(ACCOUNT_SID, ACCOUNT_SID, &primary).await, "the new token works");
    assert!(!env.twilio_accepts(ACCOUNT_SID, ACCOUNT_SID, old).await, "the old token no longer works");
    primary
}

#[tokio::test]
async fn the_auth_token_rotates_in_recorded_steps_and_every_holder_gets_the_new_one() {
    let mut env = TestEnv::new("tokenrotate").await;
    env.start_operator(&["--resync-interval", "5s"]);
    env.create_key("app", json!({})).await;
    let key = env.wait_ready("app").await;
    patch_account(
        &env,
        "main",
        json!({"credentialRotation": {"gracePeriod": "3s", "trigger": "initial", "deliverTo": [{"secretName": "app-twilio"}]}}),
    )
    .await;
    // First sight: the current token is delivered, and the trigger as it was asks for nothing.
    wait_up_to(Duration::from_secs(30), "app-twilio delivers the current token", || async {
        (secret_value(&env, "app-twilio", "TWILIO_AUTH_TOKEN").await.as_deref() == Some(AUTH_TOKEN)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.fake.auth_token(ACCOUNT_SID).as_deref(), Some(AUTH_TOKEN), "first sight rotates nothing");
    assert_eq!(rotation_state(&env).await.0, 0);

    // During the rotation the previous token is delivered next to the new one.
    patch_account(&env, "main", json!({"credentialRotation": {"trigger": "first"}})).await;
    wait_up_to(Duration::from_secs(30), "app-twilio delivers the previous token during the rotation", || async {
        (secret_value(&env, "app-twilio", "TWILIO_AUTH_TOKEN_PREVIOUS").await.as_deref() == Some(AUTH_TOKEN))
            .then_some(())
    })
    .await;
    assert_eq!(wait_rotated(&env, "first", Duration::from_secs(60)).await, 1);
    let first = one_valid_token_everywhere(&env, AUTH_TOKEN).await;
    patch_account(&env, "main", json!({"credentialRotation": {"trigger": "second"}})).await;
    assert_eq!(wait_rotated(&env, "second", Duration::from_secs(60)).await, 2);
    let second = one_valid_token_everywhere(&env, &first).await;

    // The operator went on acting with each new token: the key it manages is still verified,
    // and Twilio refused none of its calls.
    env.request_rotation("app", "after-token-rotation").await;
    let old_sid = support::ready_sid(&key).unwrap().to_string();
    let rotated = env.wait_new_key("app", &old_sid).await;
    assert!(support::ready_sid(&rotated).is_some());
    let calls = env.fake.authentications();
    let account_calls = calls.get(ACCOUNT_SID).cloned().unwrap_or_default();
    println!("calls made with the account's tokens: {account_calls:?}");
    // The only refused calls are the test's own check that each old token fails.
    assert_eq!(account_calls.refused, 2, "Twilio refused a call made with a token");
    let reasons = env.event_reasons("main").await;
    println!("account Events: {reasons:?}");
    for reason in ["CredentialRotationStarted", "AuthTokenPromoted", "CredentialRotationFinished"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} Event: {reasons:?}");
    }
    let status = env.accounts().get("main").await.unwrap().status.unwrap();
    let rotation = status.credential_rotation.unwrap();
    assert!(rotation.token_since.is_some() && rotation.message.is_none(), "{rotation:?}");
    assert_ne!(second, first);
}

#[tokio::test]
async fn sigkilled_at_random_instants_an_auth_token_rotation_ends_with_one_valid_token_everywhere() {
    const KILLS: usize = 30;
    let mut env = TestEnv::new("tokencrash").await;
    env.create_key("app", json!({})).await;
    patch_account(
        &env,
        "main",
        json!({"credentialRotation": {"gracePeriod": "1s", "deliverTo": [{"secretName": "app-twilio"}]}}),
    )
    .await;
    env.fake.set_faults(Faults { error_rate: 0.1, latency_ms: 20, response_delay_ms: 150 });
    for kill in 0..KILLS {
        env.start_operator(&["--resync-interval", "5s"]);
        let (rotate, pause) = {
            let mut rng = rand::rng();
            (rng.random_bool(0.4), rng.random_range(100..2000))
        };
        if rotate {
            patch_account(&env, "main", json!({"credentialRotation": {"trigger": format!("kill-{kill}")}})).await;
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
        env.stop_operator(); // SIGKILL
    }
    env.fake.set_faults(Faults::default());
    env.start_operator(&["--resync-interval", "3s"]);
    patch_account(&env, "main", json!({"credentialRotation": {"trigger": "final"}})).await;
    let rotations = wait_rotated(&env, "final", Duration::from_secs(120)).await;
    println!("{rotations} rotations finished across {KILLS} SIGKILLs");
    one_valid_token_everywhere(&env, AUTH_TOKEN).await;
    // The key's resource still works with the account's credential.
    let key = env.wait_ready("app").await;
    assert!(support::ready_sid(&key).is_some());
}

async fn create_subaccount(env: &TestEnv, name: &str, policy: &str) {
    let sub: TwilioSubaccount = serde_json::from_value(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1",
        "kind": "TwilioSubaccount",
        "metadata": {"name": name},
        "spec": {"parentAccountRef": {"name": "main"}, "deletionPolicy": policy},
    }))
    .unwrap();
    Api::<TwilioSubaccount>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &sub)
        .await
        .expect("create the TwilioSubaccount");
}

/// A subaccount's status in the fake Twilio: active, suspended or closed.
fn state(env: &TestEnv, sid: &str) -> Option<String> {
    env.fake.account_status(sid).map(|(status, _)| status)
}

async fn subaccount_sid(env: &TestEnv, name: &str) -> String {
    let api: Api<TwilioSubaccount> = Api::namespaced(env.client.clone(), &env.namespace);
    wait_up_to(Duration::from_secs(60), &format!("TwilioSubaccount {name} Ready"), || async {
        let sub = api.get(name).await.ok()?;
        let status = sub.status?;
        is_ready(&status.conditions).then_some(status.account_sid?)
    })
    .await
}

#[tokio::test]
async fn a_subaccount_is_made_issues_keys_through_its_account_and_is_suspended_or_closed_as_its_policy_says() {
    let mut env = TestEnv::new("subaccounts").await;
    env.start_operator(&["--resync-interval", "5s"]);
    create_subaccount(&env, "team-a", "Suspend").await;
    create_subaccount(&env, "team-b", "Close").await;
    let a = subaccount_sid(&env, "team-a").await;
    let b = subaccount_sid(&env, "team-b").await;
    assert_ne!(a, b);
    for (name, sid) in [("team-a", &a), ("team-b", &b)] {
        assert_eq!(env.fake.account_status(sid), Some(("active".into(), ACCOUNT_SID.into())), "{name}");
        assert_eq!(secret_value(&env, name, "TWILIO_ACCOUNT_SID").await.as_deref(), Some(sid.as_str()));
        let token = secret_value(&env, name, "TWILIO_AUTH_TOKEN").await.expect("the subaccount's token");
        assert!(env.twilio_accepts(sid, sid, &token).await, "{name}: the delivered token works");
        // Its TwilioAccount, made for it, verifies the subaccount's credential ...
        env.wait_for_account_condition(name, "True", "CredentialsVerified").await;
        // ... and issues keys in the subaccount.
        env.create_key(&format!("{name}-key"), json!({"accountRef": {"name": name}})).await;
        let key = env.wait_ready(&format!("{name}-key")).await;
        let (account, key_sid, secret) = env.delivered_pair(&format!("{name}-key")).await;
        assert_eq!(&account, sid);
        assert_eq!(support::ready_sid(&key), Some(key_sid.as_str()));
        assert!(env.twilio_accepts(sid, &key_sid, &secret).await, "{name}: the key works in the subaccount");
    }
    assert_eq!(state(&env, &a).as_deref(), Some("active"));

    // A Secret is tenant-writable: one written (before the operator made anything) to name
    // team-a's subaccount, with a token that is not its, is a claim that fails, and the thief's
    // deletion with Close closes nothing.
    env.stop_operator();
    create_subaccount(&env, "thief", "Close").await;
    let subs: Api<TwilioSubaccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let thief_uid = subs.get("thief").await.unwrap().metadata.uid.unwrap();
    let forged: Secret = serde_json::from_value(json!({
        "metadata": {"name": "thief", "annotations": {"twilio-operator.dev/subaccount": thief_uid}},
        "stringData": {"TWILIO_ACCOUNT_SID": a, "TWILIO_AUTH_TOKEN": "a guess"},
    }))
    .unwrap();
    env.secrets().create(&PostParams::default(), &forged).await.expect("create the forged Secret");
    env.start_operator(&["--resync-interval", "5s"]);
    wait_up_to(Duration::from_secs(60), "thief: Stalled, SecretConflict", || async {
        let status = subs.get("thief").await.ok()?.status?;
        let stalled = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "SecretConflict");
        (stalled && status.account_sid.is_none()).then_some(())
    })
    .await;
    subs.delete("thief", &DeleteParams::default()).await.expect("delete thief");
    wait_up_to(Duration::from_secs(60), "thief gone", || async {
        subs.get_opt("thief").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(state(&env, &a).as_deref(), Some("active"), "the claimed subaccount was not touched");

    // Deletion: the TwilioAccount goes first, and it waits for the keys that use it, as any
    // account does; the subaccount is left as it is meanwhile.
    for name in ["team-a", "team-b"] {
        subs.delete(name, &DeleteParams::default()).await.expect("delete the TwilioSubaccount");
    }
    env.wait_for_account_condition("team-a", "False", "InUse").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(subs.get_opt("team-a").await.unwrap().is_some(), "it waits for its account's keys");
    assert_eq!(state(&env, &a).as_deref(), Some("active"), "untouched while its keys exist");
    let issued: Vec<String> =
        env.fake.keys().into_iter().filter(|k| k.account_sid == a || k.account_sid == b).map(|k| k.sid).collect();
    assert_eq!(issued.len(), 2, "one key in each subaccount");
    for name in ["team-a", "team-b"] {
        env.delete_key(&format!("{name}-key")).await;
    }
    for name in ["team-a", "team-b"] {
        wait_up_to(Duration::from_secs(90), &format!("TwilioSubaccount {name} gone"), || async {
            subs.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
        let accounts: Api<TwilioAccount> = env.accounts();
        assert!(accounts.get_opt(name).await.unwrap().is_none(), "{name}: its TwilioAccount was deleted");
    }
    for sid in &issued {
        assert!(env.fake.key(sid).is_none(), "key {sid} was deleted in Twilio before its subaccount went");
    }
    assert_eq!(state(&env, &a).as_deref(), Some("suspended"), "Suspend (the default) suspends");
    assert_eq!(state(&env, &b).as_deref(), Some("closed"), "Close closes");
    let kept: Option<Secret> = env.secrets().get_opt("team-a").await.unwrap();
    let kept = kept.expect("a suspended subaccount's Secret is kept (reactivated, its token works again)");
    assert!(
        !kept.metadata.annotations.unwrap_or_default().contains_key("twilio-operator.dev/subaccount"),
        "handed over"
    );
    assert!(env.secrets().get_opt("team-b").await.unwrap().is_none(), "a closed subaccount's Secret is deleted");
}

/// A namespace deleted whole, with its parent account, a TwilioSubaccount and a key in the
/// subaccount: every object goes, in the order that lets each do its part (the key deleted in
/// Twilio with the subaccount's token, the subaccount suspended with the parent's).
#[tokio::test]
async fn deleting_a_namespace_with_a_subaccount_deletes_its_keys_suspends_it_and_finishes() {
    let mut env = TestEnv::new("subnamespace").await;
    env.start_operator(&["--resync-interval", "5s"]);
    create_subaccount(&env, "team", "Suspend").await;
    let sid = subaccount_sid(&env, "team").await;
    env.wait_for_account_condition("team", "True", "CredentialsVerified").await;
    env.create_key("in-sub", json!({"accountRef": {"name": "team"}})).await;
    env.wait_ready("in-sub").await;
    let key_sid = env.fake.keys().into_iter().find(|k| k.account_sid == sid).expect("a key in the subaccount").sid;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    namespaces.delete(&env.namespace, &DeleteParams::default()).await.expect("delete the namespace");
    wait_up_to(Duration::from_secs(120), "the namespace to be gone", || async {
        namespaces.get_opt(&env.namespace).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(env.fake.key(&key_sid).is_none(), "the key was deleted in Twilio");
    assert_eq!(env.fake.account_status(&sid).map(|(status, _)| status).as_deref(), Some("suspended"));
}
