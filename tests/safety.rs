//! The operator's promises under attack and bad luck (docs/promises.md): a tenant who can edit
//! its own Secret, keys named like a resource, foreground and namespace deletion, two resources
//! racing for one Secret name, a crash between delivery and record, a stalled resource with keys
//! to retire, and a listing that misses a key. Each runs the real binary against the real
//! control plane and the fake Twilio.

use twilio_operator_testkit as support;

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{ACCOUNT_SID, TestEnv, gone, is_ready, wait_until};
use twilio_operator::api::ClusterTwilioAccount;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Makes the Secret claim `sid`, as a tenant with `edit` rights in the namespace can.
async fn forge_secret(env: &TestEnv, secret: &str, sid: &str) {
    let forged = json!({
        "metadata": {"annotations": {"twilio-operator.dev/key-sid": sid}},
        "data": {"TWILIO_API_KEY": b64(sid)},
    });
    env.secrets().patch(secret, &PatchParams::default(), &Patch::Merge(&forged)).await.expect("edit the Secret");
}

#[tokio::test]
async fn a_forged_secret_cannot_steer_rename_revoke_or_delete_onto_another_key() {
    let env = TestEnv::with_operator("forged").await;
    env.create_key("victim", json!({"friendlyName": "victim"})).await;
    env.create_key("tenant", json!({})).await;
    let victim_sid = env.wait_ready("victim").await.status.unwrap().key_sid.unwrap();
    let tenant_sid = env.wait_ready("tenant").await.status.unwrap().key_sid.unwrap();

    // The tenant makes its Secret name the victim's key (SID seen in the victim's status).
    forge_secret(&env, "tenant", &victim_sid).await;
    let tenant = env.wait_new_key("tenant", &tenant_sid).await;
    let current = tenant.status.unwrap().key_sid.unwrap();

    // Forge again, then rename, revoke and delete: none of it may reach the victim's key.
    forge_secret(&env, "tenant", &victim_sid).await;
    env.patch_spec("tenant", json!({"friendlyName": "renamed by tenant"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.patch_spec("tenant", json!({"revoked": true})).await;
    env.wait_for_condition("tenant", "False", "Revoked").await;
    env.delete_key("tenant").await;
    env.wait_gone("tenant").await;

    let victim_key = env.fake.key(&victim_sid).expect("the victim's key still exists in Twilio");
    assert_eq!(victim_key.friendly_name, "victim", "the victim's key was not renamed");
    assert_ne!(current, victim_sid, "the tenant's status never took the victim's key");
    assert!(env.fake.key(&current).is_none(), "the tenant's own key was revoked");
    env.wait_for_event("tenant", "SecretClaimRejected").await;
    let victim = env.wait_ready("victim").await;
    assert_eq!(victim.status.unwrap().key_sid.as_deref(), Some(victim_sid.as_str()));
    let (account, sid, secret) = env.delivered_pair("victim").await;
    assert!(env.twilio_accepts(&account, &sid, &secret).await, "the victim's delivered pair still works");
}

#[tokio::test]
async fn a_key_made_by_a_person_with_a_resources_exact_name_survives_rotations_and_resyncs() {
    let mut env = TestEnv::new("namesake").await;
    env.start_operator(&["--resync-interval", "3s"]);
    env.create_key("app", json!({"rotation": {"gracePeriod": "1s"}})).await;
    let first = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    let friendly_name = format!("{}/app", env.namespace);
    let persons_key = env.fake.create_key_directly(ACCOUNT_SID, &friendly_name);

    env.request_rotation("app", "1").await;
    let second = env.wait_new_key("app", &first).await.status.unwrap().key_sid.unwrap();
    env.request_rotation("app", "2").await;
    env.wait_new_key("app", &second).await;
    // Several resyncs, each of which sweeps for keys an interrupted create left.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let survivor = env.fake.key(&persons_key).expect("the person's key was not deleted");
    assert_eq!(survivor.friendly_name, friendly_name);
    wait_until("the retired keys to be deleted", || async {
        (env.fake.key(&first).is_none() && env.fake.key(&second).is_none()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_with_orphan_policy_keeps_the_secret_of_the_kept_key() {
    let mut env = TestEnv::with_operator("foreground").await;
    env.create_key("kept", json!({"deletionPolicy": "Orphan"})).await;
    let sid = env.wait_ready("kept").await.status.unwrap().key_sid.unwrap();

    // The operator is down (or busy) while the resource is deleted in the foreground: the garbage
    // collector gets to the resource's dependents first.
    env.stop_operator();
    env.keys().delete("kept", &DeleteParams::foreground()).await.expect("delete in the foreground");
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.start_operator(&[]);
    env.wait_gone("kept").await;

    assert!(env.fake.key(&sid).is_some(), "the key is kept in Twilio");
    let (account, key_sid, key_secret) = env.delivered_pair("kept").await;
    assert_eq!(key_sid, sid);
    assert!(env.twilio_accepts(&account, &key_sid, &key_secret).await, "the kept Secret delivers a working pair");
}

#[tokio::test]
async fn deleting_a_namespace_deletes_every_key_and_finishes() {
    let env = TestEnv::with_operator("nsdelete").await;
    env.create_key("a", json!({})).await;
    env.create_key("b", json!({"deletionPolicy": "Orphan", "rotation": {"gracePeriod": "1h"}})).await;
    env.wait_ready("a").await;
    let b = env.wait_ready("b").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("b", "1").await;
    env.wait_new_key("b", &b).await;
    assert_eq!(env.fake.keys().len(), 3, "a's key, b's key and b's retiring key");

    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces.delete(&env.namespace, &DeleteParams::default()).await.expect("delete the namespace");
    wait_until("the namespace to be gone", || gone(&namespaces, &env.namespace)).await;
    assert!(env.fake.keys().is_empty(), "every key of the namespace is deleted in Twilio: {:?}", env.fake.keys());
}

/// Waits until the resource is Ready or stalled on a SecretConflict.
async fn settled(env: &TestEnv, name: &str) -> twilio_operator::api::TwilioApiKey {
    let keys = env.keys();
    wait_until(&format!("{name} to be Ready or SecretConflict"), || async {
        let key = keys.get(name).await.ok()?;
        let ready = key.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
        matches!(ready.reason.as_str(), "KeyReady" | "SecretConflict").then_some(key)
    })
    .await
}

#[tokio::test]
async fn two_resources_racing_for_one_secret_name_never_lose_a_live_keys_secret() {
    let env = TestEnv::with_operator("race").await;
    for round in 0..3 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let secret_name = format!("shared-{round}");
        let spec = json!({"secret": {"name": secret_name}});
        tokio::join!(env.create_key(&a, spec.clone()), env.create_key(&b, spec.clone()));
        let (a, b) = tokio::join!(settled(&env, &a), settled(&env, &b));
        let ready: Vec<_> = [&a, &b]
            .into_iter()
            .filter(|k| k.status.as_ref().unwrap().conditions.iter().any(|c| c.reason == "KeyReady"))
            .collect();
        assert_eq!(ready.len(), 1, "exactly one of the two resources gets the Secret");
        let winner_sid = ready[0].status.as_ref().unwrap().key_sid.clone().unwrap();
        let (_, delivered, _) = env.delivered_pair(&secret_name).await;
        assert_eq!(delivered, winner_sid, "the Secret delivers the winner's key");
    }
    // Every live key is one a Secret delivers: the loser's key never outlives its delivery.
    wait_until("exactly one live key per Secret", || async { (env.fake.keys().len() == 3).then_some(()) }).await;
}

#[tokio::test]
async fn revoke_and_delete_reach_a_key_recorded_only_in_the_secret() {
    let mut env = TestEnv::with_operator("secretonly").await;
    env.create_key("revoked", json!({})).await;
    env.create_key("deleted", json!({})).await;
    let mut recorded = Vec::new();
    let mut unrecorded = Vec::new();
    for name in ["revoked", "deleted"] {
        recorded.push(env.wait_ready(name).await.status.unwrap().key_sid.unwrap());
    }
    env.stop_operator();
    // What a process killed between the Secret write and the status write leaves behind: a key
    // under the resource's pending name, delivered by the Secret, absent from the status.
    for name in ["revoked", "deleted"] {
        let uid = env.keys().get(name).await.unwrap().uid().unwrap();
        let sid = env.fake.create_key_directly(ACCOUNT_SID, &format!("twilio-operator:pending:{uid}"));
        forge_secret(&env, name, &sid).await;
        unrecorded.push(sid);
    }
    env.patch_spec("revoked", json!({"revoked": true})).await;
    env.delete_key("deleted").await;
    env.start_operator(&[]);
    env.wait_for_condition("revoked", "False", "Revoked").await;
    env.wait_gone("deleted").await;
    for sid in recorded.iter().chain(&unrecorded) {
        assert!(env.fake.key(sid).is_none(), "key {sid} is deleted in Twilio");
    }
}

#[tokio::test]
async fn a_stalled_resource_still_deletes_retired_keys_on_time() {
    let env = TestEnv::with_operator("stalledretire").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "5s"}})).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.create_secret("taken", &[("OTHER", "someone else's")]).await;
    env.request_rotation("k", "1").await;
    env.wait_new_key("k", &old).await;
    // Stalled before the grace period ends: the Secret is to move onto a name someone else holds.
    env.patch_spec("k", json!({"secret": {"name": "taken"}})).await;
    let stalled = env.wait_for_condition("k", "False", "SecretConflict").await;
    assert_eq!(stalled.status.unwrap().retiring_keys.len(), 1, "stalled inside the grace period");
    wait_until("the retired key to be deleted while the resource is stalled", || async {
        env.fake.key(&old).is_none().then_some(())
    })
    .await;
    let status = env.keys().get("k").await.unwrap().status.unwrap();
    assert!(status.retiring_keys.is_empty(), "the status no longer lists the deleted key");
    let secret: Secret = env.secrets().get("taken").await.unwrap();
    assert!(secret.data.unwrap().contains_key("OTHER"), "the other Secret is untouched");
}

#[tokio::test]
async fn one_listing_that_misses_a_key_does_not_reissue_it() {
    let mut env = TestEnv::new("listmiss").await;
    env.start_operator(&["--resync-interval", "3s"]);
    env.create_key("k", json!({})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.fake.hide_from_listings(&sid, 3);
    // Three resyncs see listings without the key.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = env.keys().get("k").await.unwrap().status.unwrap();
    assert_eq!(status.key_sid.as_deref(), Some(sid.as_str()), "the live key is kept");
    assert!(!env.event_reasons("k").await.iter().any(|r| r == "KeyRotated"), "no rotation happened");
    assert_eq!(env.fake.keys().len(), 1);
}

#[tokio::test]
async fn an_account_deleted_before_its_keys_stays_until_they_are_deleted_in_twilio() {
    let env = TestEnv::with_operator("accountfirst").await;
    env.create_key("k", json!({})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    let accounts = env.accounts();
    accounts.delete("main", &DeleteParams::default()).await.expect("delete the account");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(accounts.get_opt("main").await.unwrap().is_some(), "the account stays while a key needs it");
    wait_until("the account to wait for its key, saying so", || async {
        let account = accounts.get_opt("main").await.ok()??;
        let ready = account.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "InUse" && ready.message.contains(&format!("{}/k", env.namespace))).then_some(())
    })
    .await;
    let credentials = env.secrets().get("twilio-credentials").await.unwrap();
    assert!(credentials.finalizers().iter().any(|f| f == "twilio-operator.dev/credentials-in-use"));

    env.delete_key("k").await;
    env.wait_gone("k").await;
    assert!(env.fake.key(&sid).is_none(), "the key is deleted in Twilio with the account's credential");
    wait_until("the account to go once no key needs it", || gone(&accounts, "main")).await;
    let credentials = env.secrets().get("twilio-credentials").await.expect("the credentials Secret itself stays");
    assert!(credentials.finalizers().is_empty(), "and is let go: {:?}", credentials.finalizers());
}

#[tokio::test]
async fn a_cluster_account_that_stops_allowing_the_namespace_still_deletes_the_keys_it_issued() {
    let env = TestEnv::with_operator("disallowed").await;
    let account_name = env.create_cluster_account(json!({"namespaces": [env.namespace]})).await;
    let cluster_accounts: Api<ClusterTwilioAccount> = Api::all(env.client.clone());
    env.create_key("k", json!({"accountRef": {"name": account_name, "kind": "ClusterTwilioAccount"}})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();

    let disallow = json!({"spec": {"allowedNamespaces": {"namespaces": ["somebody-else"]}}});
    cluster_accounts.patch(&account_name, &PatchParams::default(), &Patch::Merge(&disallow)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.delete_key("k").await;
    env.wait_gone("k").await;
    assert!(env.fake.key(&sid).is_none(), "the key the account issued is deleted in Twilio");
    cluster_accounts.delete(&account_name, &DeleteParams::default()).await.unwrap();
    wait_until("the ClusterTwilioAccount to go", || gone(&cluster_accounts, &account_name)).await;
}

#[tokio::test]
async fn a_secret_written_by_an_earlier_version_loses_its_owner_reference_without_a_new_key() {
    let mut env = TestEnv::with_operator("upgrade").await;
    let key = env.create_key("k", json!({})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.stop_operator();
    // The Secret as earlier versions wrote it: owned through a controller
    // ownerReference, without the owner annotations.
    let legacy = json!({
        "metadata": {
            "annotations": {"twilio-operator.dev/owner": null, "twilio-operator.dev/owner-uid": null},
            "ownerReferences": [{
                "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey", "name": "k",
                "uid": key.uid().unwrap(), "controller": true, "blockOwnerDeletion": true,
            }],
        }
    });
    env.secrets().patch("k", &PatchParams::default(), &Patch::Merge(&legacy)).await.unwrap();
    env.start_operator(&[]);

    let secrets = env.secrets();
    let secret = wait_until("the Secret to lose its ownerReference", || async {
        let secret = secrets.get("k").await.ok()?;
        secret.owner_references().is_empty().then_some(secret)
    })
    .await;
    assert_eq!(secret.annotations().get("twilio-operator.dev/owner-uid"), key.uid().as_ref());
    let status = env.wait_ready("k").await.status.unwrap();
    assert_eq!(status.key_sid.as_deref(), Some(sid.as_str()), "no new key");
    assert_eq!(env.delivered_pair("k").await.1, sid);
    assert_eq!(env.fake.keys().len(), 1);
}

#[tokio::test]
async fn an_account_whose_listings_are_slow_holds_up_no_other_account() {
    let mut env = TestEnv::new("slowaccount").await;
    // Listing the first account takes 25 s (under the client's 30 s timeout) from the start.
    env.fake.slow_listings(ACCOUNT_SID, Duration::from_secs(25));
    env.start_operator(&[]);
    env.create_key("slow", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let other_account = "AC00000000000000000000000000000002";
    env.fake.add_account(other_account, "second-token");
    env.create_secret("second-credentials", &[("TWILIO_AUTH_TOKEN", "second-token")]).await;
    env.create_account_for("second", other_account, "second-credentials").await;
    env.create_key("fast", json!({"accountRef": {"name": "second"}})).await;
    // A generous ceiling, far below the other account's 25 s listing.
    support::wait_up_to(Duration::from_secs(15), "the other account's key to be Ready", || async {
        let key = env.keys().get("fast").await.ok()?;
        is_ready(&key.status?.conditions).then_some(())
    })
    .await;
    env.wait_ready("slow").await;
}

#[tokio::test]
async fn orphan_deletion_hands_over_the_current_key_and_deletes_the_retiring_ones() {
    let env = TestEnv::with_operator("orphanretiring").await;
    env.create_key("k", json!({"deletionPolicy": "Orphan", "rotation": {"gracePeriod": "1h"}})).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("k", "1").await;
    let current = env.wait_new_key("k", &old).await.status.unwrap().key_sid.unwrap();

    env.delete_key("k").await;
    env.wait_gone("k").await;
    assert!(env.fake.key(&current).is_some(), "the current key is handed over");
    assert!(env.fake.key(&old).is_none(), "the retiring key, delivered nowhere, is deleted");
    let (account, delivered, secret) = env.delivered_pair("k").await;
    assert_eq!(delivered, current);
    assert!(env.twilio_accepts(&account, &delivered, &secret).await);
}

#[tokio::test]
async fn orphan_deletion_after_an_interrupted_rotation_hands_over_the_delivered_key_only() {
    let mut env = TestEnv::with_operator("orphanrotation").await;
    let key = env.create_key("k", json!({"deletionPolicy": "Orphan"})).await;
    let recorded = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.stop_operator();
    // A rotation killed between its Secret write and its status write: the Secret delivers a new
    // key under the resource's pending name; the status still records the old one.
    let uid = key.uid().unwrap();
    let delivered = env.fake.create_key_directly(ACCOUNT_SID, &format!("twilio-operator:pending:{uid}"));
    forge_secret(&env, "k", &delivered).await;
    env.delete_key("k").await;
    env.start_operator(&[]);
    env.wait_gone("k").await;

    let kept = env.fake.key(&delivered).expect("the key the Secret delivers is handed over");
    assert_eq!(kept.friendly_name, format!("{}/k", env.namespace), "under its real name");
    assert!(env.fake.key(&recorded).is_none(), "the key no Secret delivers any more is deleted");
    assert_eq!(env.delivered_pair("k").await.1, delivered);
}
