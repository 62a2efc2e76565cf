//! Every row of docs/behaviour.md's "Behaviour on each change" and "Drift and faults" tables, on a real API
//! server with the real operator binary and the fake Twilio: which keys exist in Twilio (SIDs,
//! names, policies), what the Secret delivers, and what status and Events say.

use twilio_operator_testkit as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{TestEnv, wait_until};
use twilio_operator::api::ClusterTwilioAccount;

async fn current_sid(env: &TestEnv, name: &str) -> String {
    env.keys().get(name).await.unwrap().status.unwrap().key_sid.unwrap()
}

async fn wait_key_gone_in_twilio(env: &TestEnv, sid: &str) {
    wait_until(&format!("key {sid} to be deleted in Twilio"), || async { env.fake.key(sid).is_none().then_some(()) })
        .await;
}

/// The pair in the Secret authenticates, and it is the status' key.
async fn assert_delivers(env: &TestEnv, secret: &str, sid: &str) {
    let (account, delivered, value) = env.delivered_pair(secret).await;
    assert_eq!(delivered, sid, "Secret {secret} delivers the current key");
    assert!(env.twilio_accepts(&account, &delivered, &value).await, "the delivered pair authenticates");
}

#[tokio::test]
async fn friendly_name_and_policy_change_in_place_without_a_new_secret() {
    let env = TestEnv::with_operator("inplace").await;
    env.create_key("k", json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create"]}}))
        .await;
    let sid = current_sid(&env, &env.wait_ready("k").await.name_any()).await;
    let before = env.delivered_pair("k").await;

    env.patch_spec("k", json!({"friendlyName": "renamed", "policy": {"allow": ["/twilio/messaging/messages/read"]}}))
        .await;
    wait_until("the key renamed and re-scoped in Twilio", || async {
        let key = env.fake.key(&sid)?;
        (key.friendly_name == "renamed" && key.policy == Some(json!({"allow": ["/twilio/messaging/messages/read"]})))
            .then_some(())
    })
    .await;
    let key = env.wait_ready("k").await;
    assert_eq!(key.status.unwrap().key_sid.as_deref(), Some(sid.as_str()), "same key");
    assert_eq!(env.delivered_pair("k").await, before, "same secret");
    assert_eq!(env.fake.keys().len(), 1);
    env.wait_for_event("k", "KeyUpdated").await;
}

#[tokio::test]
async fn a_key_type_change_rotates_with_both_keys_valid_during_the_grace_period() {
    let env = TestEnv::with_operator("keytype").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "4s"}})).await;
    env.wait_ready("k").await;
    let old = current_sid(&env, "k").await;
    let old_pair = env.delivered_pair("k").await;

    env.patch_spec("k", json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/voice/calls/read"]}})).await;
    let key = env.wait_new_key("k", &old).await;
    let status = key.status.unwrap();
    let new = status.key_sid.clone().unwrap();
    assert_eq!(status.retiring_keys.iter().map(|r| r.sid.as_str()).collect::<Vec<_>>(), vec![old.as_str()]);
    assert_delivers(&env, "k", &new).await;
    assert!(
        env.twilio_accepts(&old_pair.0, &old_pair.1, &old_pair.2).await,
        "during the grace period the old pair still works (zero downtime)"
    );
    assert_eq!(env.fake.key(&new).unwrap().key_type, fake_twilio::FakeKeyType::Restricted);

    wait_key_gone_in_twilio(&env, &old).await;
    assert!(!env.twilio_accepts(&old_pair.0, &old_pair.1, &old_pair.2).await, "after it, only the new pair works");
    assert_delivers(&env, "k", &new).await;
    let keys = env.keys();
    wait_until("retiringKeys to empty", || async {
        keys.get("k").await.ok()?.status?.retiring_keys.is_empty().then_some(())
    })
    .await;
    env.wait_for_event("k", "KeyRotated").await;
}

#[tokio::test]
async fn an_account_change_rotates_into_the_new_account() {
    let env = TestEnv::with_operator("acctchange").await;
    let second_account = "AC00000000000000000000000000000002";
    env.fake.add_account(second_account, "second-token");
    env.create_secret("second-credentials", &[("TWILIO_AUTH_TOKEN", "second-token")]).await;
    env.create_account_for("second", second_account, "second-credentials").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "1s"}})).await;
    env.wait_ready("k").await;
    let old = current_sid(&env, "k").await;

    env.patch_spec("k", json!({"accountRef": {"name": "second"}})).await;
    let key = env.wait_new_key("k", &old).await;
    let new = key.status.unwrap().key_sid.unwrap();
    assert_eq!(env.fake.key(&new).unwrap().account_sid, second_account);
    let (account, _, _) = env.delivered_pair("k").await;
    assert_eq!(account, second_account);
    assert_delivers(&env, "k", &new).await;
    wait_key_gone_in_twilio(&env, &old).await;
}

#[tokio::test]
async fn a_trigger_change_and_the_rotate_annotation_each_rotate_once() {
    let env = TestEnv::with_operator("trigger").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "1s", "trigger": "v1"}})).await;
    env.wait_ready("k").await;
    let first = current_sid(&env, "k").await;

    env.patch_spec("k", json!({"rotation": {"trigger": "v2"}})).await;
    let second = env.wait_new_key("k", &first).await.status.unwrap();
    assert_eq!(second.last_rotation_trigger.as_deref(), Some("v2"));
    let second = second.key_sid.unwrap();
    wait_key_gone_in_twilio(&env, &first).await;

    env.request_rotation("k", "now").await;
    let third = env.wait_new_key("k", &second).await.status.unwrap().key_sid.unwrap();
    wait_key_gone_in_twilio(&env, &second).await;
    assert_delivers(&env, "k", &third).await;

    // Once handled, neither causes another rotation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(current_sid(&env, "k").await, third);
    assert_eq!(env.fake.keys().len(), 1);
}

#[tokio::test]
async fn an_elapsed_interval_rotates_and_next_rotation_is_announced() {
    let env = TestEnv::with_operator("interval").await;
    // 1m is the shortest interval the operator accepts.
    env.create_key("k", json!({"rotation": {"interval": "1m", "gracePeriod": "1s"}})).await;
    let key = env.wait_ready("k").await;
    let status = key.status.unwrap();
    let created: k8s_openapi::jiff::Timestamp = status.key_created_at.unwrap().parse().unwrap();
    let next: k8s_openapi::jiff::Timestamp = status.next_rotation_at.expect("nextRotationAt is set").parse().unwrap();
    assert_eq!(next.duration_since(created).as_secs(), 60);
    let first = status.key_sid.unwrap();
    let second = support::wait_up_to(Duration::from_secs(150), "the interval rotation", || async {
        let key = env.keys().get("k").await.ok()?;
        let sid = key.status?.key_sid?;
        (sid != first).then_some(sid)
    })
    .await;
    wait_key_gone_in_twilio(&env, &first).await;
    assert_delivers(&env, "k", &second).await;
}

#[tokio::test]
async fn secret_name_keys_and_labels_rewrite_the_secret_without_a_new_key() {
    let env = TestEnv::with_operator("secretmove").await;
    env.create_key("k", json!({})).await;
    env.wait_ready("k").await;
    let sid = current_sid(&env, "k").await;
    let (_, _, value) = env.delivered_pair("k").await;

    env.patch_spec("k", json!({"secret": {"name": "moved"}})).await;
    env.wait_secret_gone("k").await;
    assert_eq!(env.delivered_pair("moved").await.2, value, "the same secret moved");
    assert_eq!(env.wait_ready("k").await.status.unwrap().secret_name.as_deref(), Some("moved"));

    env.patch_spec("k", json!({"secret": {"keys": {"apiKeySecret": "SECRET"}, "labels": {"tier": "gold"}}})).await;
    let secrets = env.secrets();
    let secret: Secret = wait_until("the Secret rewritten with new data keys and labels", || async {
        let s = secrets.get("moved").await.ok()?;
        let data = s.data.clone()?;
        (data.contains_key("SECRET") && !data.contains_key("TWILIO_API_SECRET") && s.labels().get("tier").is_some())
            .then_some(s)
    })
    .await;
    assert_eq!(secret.data.unwrap()["SECRET"].0, value.as_bytes());
    assert_eq!(current_sid(&env, "k").await, sid, "no new key");
    assert_eq!(env.fake.keys().len(), 1);
}

#[tokio::test]
async fn revoking_deletes_every_key_and_the_secret_and_unrevoking_issues_a_new_one() {
    let env = TestEnv::with_operator("revoke").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "1h"}})).await;
    env.wait_ready("k").await;
    let first = current_sid(&env, "k").await;
    env.patch_spec("k", json!({"rotation": {"trigger": "rotate-once"}})).await;
    let second = env.wait_new_key("k", &first).await.status.unwrap().key_sid.unwrap();
    assert!(env.fake.key(&first).is_some(), "the first key is retiring for an hour");

    env.patch_spec("k", json!({"revoked": true})).await;
    let key = env.wait_for_condition("k", "False", "Revoked").await;
    assert!(env.fake.key(&first).is_none() && env.fake.key(&second).is_none(), "all keys deleted at once, no grace");
    assert!(env.secrets().get_opt("k").await.unwrap().is_none(), "Secret deleted");
    let status = key.status.unwrap();
    assert!(status.key_sid.is_none() && status.retiring_keys.is_empty());
    env.wait_for_event("k", "KeyRevoked").await;

    env.patch_spec("k", json!({"revoked": false})).await;
    let third = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    assert!(third != first && third != second);
    assert_delivers(&env, "k", &third).await;
}

#[tokio::test]
async fn suspend_stops_all_twilio_calls_but_deletion_still_cleans_up() {
    let env = TestEnv::with_operator("suspend").await;
    env.create_key("k", json!({})).await;
    env.wait_ready("k").await;
    let sid = current_sid(&env, "k").await;
    env.patch_spec("k", json!({"suspend": true})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Account verification (a list) is the account's own business; the key makes no calls.
    let key_calls =
        || env.fake.request_counts().into_iter().filter(|(op, _)| !op.starts_with("list_keys")).collect::<Vec<_>>();
    let calls_before = key_calls();
    env.patch_spec("k", json!({"friendlyName": "while suspended"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(key_calls(), calls_before, "no Twilio calls for the key while suspended");
    assert_ne!(env.fake.key(&sid).unwrap().friendly_name, "while suspended");

    env.delete_key("k").await;
    env.wait_gone("k").await;
    assert!(env.fake.key(&sid).is_none(), "deletion cleans up even when suspended");
}

#[tokio::test]
async fn a_deleted_or_altered_secret_is_healed_by_rotation() {
    let env = TestEnv::with_operator("secretdrift").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "1s"}})).await;
    env.wait_ready("k").await;
    let first = current_sid(&env, "k").await;

    env.secrets().delete("k", &DeleteParams::default()).await.unwrap();
    let second = env.wait_new_key("k", &first).await.status.unwrap().key_sid.unwrap();
    assert_delivers(&env, "k", &second).await;
    wait_key_gone_in_twilio(&env, &first).await;
    env.wait_for_event("k", "KeyRotated").await;

    let altered = json!({"stringData": {"TWILIO_API_KEY": "SK00000000000000000000000000000bad"}});
    env.secrets().patch("k", &PatchParams::default(), &Patch::Merge(&altered)).await.unwrap();
    let third = env.wait_new_key("k", &second).await.status.unwrap().key_sid.unwrap();
    assert_delivers(&env, "k", &third).await;
    wait_key_gone_in_twilio(&env, &second).await;
}

#[tokio::test]
async fn a_key_deleted_in_twilio_is_reissued_by_the_periodic_drift_check() {
    let mut env = TestEnv::new("keydrift").await;
    env.start_operator(&["--resync-interval", "2s"]);
    env.create_key("k", json!({})).await;
    env.wait_ready("k").await;
    let first = current_sid(&env, "k").await;
    assert!(env.fake.delete_key(&first));
    let second = env.wait_new_key("k", &first).await.status.unwrap().key_sid.unwrap();
    assert_delivers(&env, "k", &second).await;
    let counts = env.fake.request_counts();
    let lists = counts.get("list_keys 200").copied().unwrap_or(0);
    let confirmations = counts.get("fetch_key 404").copied().unwrap_or(0);
    let other_fetches = counts.iter().filter(|(k, _)| k.starts_with("fetch_key") && *k != "fetch_key 404").count();
    assert!(lists >= 1, "drift is found by listing, not by fetching each key");
    assert!(
        confirmations >= 1 && other_fetches == 0,
        "the listing's miss is confirmed by fetching that key: {counts:?}"
    );
}

#[tokio::test]
async fn a_key_renamed_in_twilio_gets_its_name_back_from_the_drift_check() {
    let mut env = TestEnv::new("namedrift").await;
    env.start_operator(&["--resync-interval", "2s"]);
    env.create_key("k", json!({"friendlyName": "payments"})).await;
    env.wait_ready("k").await;
    let sid = current_sid(&env, "k").await;
    assert_eq!(env.fake.friendly_name(&sid).as_deref(), Some("payments"), "renamed from its pending name");
    assert!(env.fake.rename_key(&sid, "renamed in the console"));
    wait_until("the key's name to be set back", || async {
        (env.fake.friendly_name(&sid).as_deref() == Some("payments")).then_some(())
    })
    .await;
    assert_eq!(current_sid(&env, "k").await, sid, "renamed in place: the key and its secret stay");
    assert_delivers(&env, "k", &sid).await;
}

#[tokio::test]
async fn a_secret_owned_by_someone_else_is_never_touched() {
    let env = TestEnv::with_operator("conflict").await;
    env.create_secret("taken", &[("TWILIO_API_SECRET", "someone else's")]).await;
    env.create_key("k", json!({"secret": {"name": "taken"}})).await;
    env.wait_for_condition("k", "False", "SecretConflict").await;
    let secret = env.secrets().get("taken").await.unwrap();
    assert_eq!(secret.data.as_ref().unwrap()["TWILIO_API_SECRET"].0, b"someone else's");
    assert!(secret.owner_references().is_empty());
    assert!(env.fake.keys().is_empty(), "no key is created for a Secret that cannot be written");
}

#[tokio::test]
async fn tenants_use_only_accounts_their_namespace_may_use() {
    let env = TestEnv::with_operator("tenants").await;
    let other = TestEnv::new("tenants-other").await;
    // A TwilioAccount of another namespace is out of reach: accountRef has no namespace.
    env.create_key("k", json!({"accountRef": {"name": "absent"}})).await;
    env.wait_for_condition("k", "False", "AccountNotFound").await;
    drop(other);

    let account_name = env.create_cluster_account(json!({"namespaces": ["somebody-else"]})).await;
    let cluster_accounts: Api<ClusterTwilioAccount> = Api::all(env.client.clone());
    env.create_key("shared", json!({"accountRef": {"name": account_name, "kind": "ClusterTwilioAccount"}})).await;
    let key = env.wait_for_condition("shared", "False", "AccountNotAllowed").await;
    assert!(key.status.unwrap().conditions[0].message.contains("allowedNamespaces"));
    assert!(env.fake.request_counts().keys().all(|k| !k.starts_with("create_key")), "no Twilio call");

    // Allowing the namespace (by label) re-reconciles the key that uses the account.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    let label = json!({"metadata": {"labels": {"twilio": "allowed"}}});
    namespaces.patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    let allow = json!({"spec": {"allowedNamespaces": {"namespaceSelector": {"matchLabels": {"twilio": "allowed"}}}}});
    cluster_accounts.patch(&account_name, &PatchParams::default(), &Patch::Merge(&allow)).await.unwrap();
    env.wait_ready("shared").await;
    cluster_accounts.delete(&account_name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn a_key_waiting_for_its_account_proceeds_when_the_account_appears() {
    let env = TestEnv::with_operator("lateaccount").await;
    env.create_key("k", json!({"accountRef": {"name": "late"}})).await;
    env.wait_for_condition("k", "False", "AccountNotFound").await;
    env.create_account("late", "twilio-credentials").await;
    env.wait_ready("k").await;
}

#[tokio::test]
async fn repairing_a_refused_credential_recovers_the_keys_that_use_it() {
    let mut env = TestEnv::new("repair").await;
    env.create_refused_account("flaky", "flaky-credentials").await;
    env.start_operator(&[]);
    env.create_key("k", json!({"accountRef": {"name": "flaky"}})).await;
    env.wait_for_condition("k", "False", "TwilioAuthFailed").await;

    // The credentials Secret is watched: fixing it re-verifies the account, whose readiness wakes
    // the key well before the 30s resync would.
    let fix = json!({"stringData": {"TWILIO_AUTH_TOKEN": support::AUTH_TOKEN}});
    env.secrets().patch("flaky-credentials", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    let started = std::time::Instant::now();
    let key = env.wait_ready("k").await;
    println!("recovered {:?} after the credential was fixed", started.elapsed());
    assert_delivers(&env, "k", &key.status.unwrap().key_sid.unwrap()).await;
}

#[tokio::test]
async fn changing_the_accounts_account_sid_rotates_its_keys() {
    let env = TestEnv::with_operator("acctsid").await;
    let second_account = "AC00000000000000000000000000000003";
    env.fake.add_account(second_account, support::AUTH_TOKEN);
    env.create_key("k", json!({"rotation": {"gracePeriod": "1s"}})).await;
    env.wait_ready("k").await;
    let old = current_sid(&env, "k").await;

    let moved = json!({"spec": {"accountSid": second_account}});
    env.accounts().patch("main", &PatchParams::default(), &Patch::Merge(&moved)).await.unwrap();
    let new = env.wait_new_key("k", &old).await.status.unwrap();
    assert_eq!(new.account_sid.as_deref(), Some(second_account));
    assert_eq!(env.fake.key(new.key_sid.as_ref().unwrap()).unwrap().account_sid, second_account);
    assert_delivers(&env, "k", new.key_sid.as_ref().unwrap()).await;
    wait_key_gone_in_twilio(&env, &old).await;
}

#[tokio::test]
async fn twilio_429s_5xx_and_latency_are_ridden_out_without_duplicates() {
    let env = TestEnv::with_operator("faults").await;
    env.fake.set_faults(fake_twilio::Faults { error_rate: 0.4, latency_ms: 50, ..Default::default() });
    for n in 0..6 {
        env.create_key(&format!("k{n}"), json!({})).await;
    }
    for n in 0..6 {
        let sid = env.wait_ready(&format!("k{n}")).await.status.unwrap().key_sid.unwrap();
        assert_delivers(&env, &format!("k{n}"), &sid).await;
    }
    let counts = env.fake.request_counts();
    let faults: u64 = counts.iter().filter(|(k, _)| k.ends_with(" 429") || k.ends_with(" 503")).map(|(_, v)| v).sum();
    println!("requests by outcome: {counts:?}");
    assert!(faults > 0, "faults were injected");
    assert_eq!(env.fake.keys().len(), 6, "exactly one key per resource");
}

#[tokio::test]
async fn changing_the_accounts_region_rotates_its_keys() {
    let env = TestEnv::with_operator("region").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "1s"}})).await;
    let key = env.wait_ready("k").await;
    assert_eq!(key.status.as_ref().unwrap().region.as_deref(), Some("us1"));
    let old = key.status.unwrap().key_sid.unwrap();

    // Keys and credentials are per Region. (The fake serves every Region at one URL.)
    let moved = json!({"spec": {"region": "ie1"}});
    env.accounts().patch("main", &PatchParams::default(), &Patch::Merge(&moved)).await.unwrap();
    let new = env.wait_new_key("k", &old).await.status.unwrap();
    assert_eq!(new.region.as_deref(), Some("ie1"));
    assert_delivers(&env, "k", new.key_sid.as_ref().unwrap()).await;
    wait_key_gone_in_twilio(&env, &old).await;
}
