//! The other steps: `Adopt`, `Conflict`, `UpdateInPlace`, `RewriteSecret`, `UpToDate`, `Revoke`
//! and `StayRevoked`, and deletion; per effect, a failure after (or instead of) it.

use k8s_openapi::jiff::SignedDuration;
use serde_json::json;

use super::*;

// --- Adopt ---

/// A key made outside the operator, and an unowned Secret `app` that holds its pair.
fn foreign_secret_with_a_key(h: &Harness) -> String {
    let sid = h.twilio.create_key_directly(ACCOUNT, "made by hand");
    let secret = h.twilio.key(&sid).unwrap().secret;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    h.kube.put(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": "team"},
            "data": {"TWILIO_ACCOUNT_SID": encode(ACCOUNT), "TWILIO_API_KEY": encode(&sid),
                "TWILIO_API_SECRET": encode(&secret), "other": encode("kept")}}),
    );
    sid
}

#[tokio::test]
async fn adopt_proves_the_pair_marks_the_secret_then_records_the_key() {
    let h = Harness::new().await;
    let sid = foreign_secret_with_a_key(&h);
    h.apply(json!({"secret": {"adopt": true}}));
    h.pass().await.unwrap();
    assert_eq!(
        h.effects(),
        [FINALIZER_ADDED, "twilio prove_key 200", "twilio fetch_key 200", "patch secrets/app", STATUS]
    );
    assert_eq!(h.recorded_sid(), Some(sid.clone()));
    assert!(h.secret().unwrap().data.unwrap().contains_key("other"), "other entries stay");
    h.settle().await;
    assert_eq!(h.twilio.friendly_name(&sid).as_deref(), Some("team/app"), "renamed as the spec asks");
    assert_eq!(h.live_keys().len(), 1, "no key was created");
}

#[tokio::test]
async fn an_adoption_whose_status_write_failed_is_proven_again_and_recorded() {
    let h = Harness::new().await;
    let sid = foreign_secret_with_a_key(&h);
    h.apply(json!({"secret": {"adopt": true}}));
    h.kube.fail_next("patch", "twilioapikeys/app/status", 500, false);
    assert!(h.pass().await.is_err());
    assert_eq!(h.recorded_sid(), None);
    h.timeline.take();
    h.pass().await.unwrap();
    // Record: not created here (no pending name), so the adoption is proven again.
    assert_eq!(h.effects(), ["twilio fetch_key 200", "twilio prove_key 200", "twilio fetch_key 200", STATUS]);
    assert_eq!(h.recorded_sid(), Some(sid));
    assert_eq!(h.live_keys().len(), 1);
}

// --- Conflict ---

#[tokio::test]
async fn a_foreign_secret_is_a_conflict_and_no_key_is_made() {
    let h = Harness::new().await;
    foreign_secret_with_a_key(&h);
    h.apply(json!({}));
    // A conflict needs a human: the resource stalls (and is retried later) rather than failing.
    h.pass().await.unwrap();
    assert_eq!(h.effects(), [FINALIZER_ADDED, STATUS]);
    let conditions = h.key().status.unwrap().conditions;
    let stalled = conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains("Secret app"), "{}", stalled.message);
    assert_eq!(h.live_keys().len(), 1, "only the foreign key");
}

// --- UpdateInPlace ---

#[tokio::test]
async fn update_in_place_renames_then_records() {
    let h = delivered().await;
    h.apply(json!({"friendlyName": "renamed"}));
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio update_key 200", STATUS]);
    let sid = h.recorded_sid().unwrap();
    assert_eq!(h.twilio.friendly_name(&sid).as_deref(), Some("renamed"));
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn an_update_of_a_key_deleted_in_twilio_hands_over_to_a_rotation() {
    let h = delivered().await;
    let old = h.recorded_sid().unwrap();
    h.twilio.delete_key(&old);
    h.apply(json!({"friendlyName": "renamed"}));
    h.pass().await.unwrap();
    assert_eq!(
        h.effects(),
        ["twilio update_key 404", "twilio create_key 201", "patch secrets/app", STATUS, "twilio update_key 200"]
    );
    let new = h.recorded_sid().unwrap();
    assert_ne!(new, old);
    assert_eq!(h.twilio.friendly_name(&new).as_deref(), Some("renamed"));
}

#[tokio::test]
async fn an_update_whose_status_write_failed_is_carried_out_again() {
    let h = delivered().await;
    h.apply(json!({"friendlyName": "renamed"}));
    h.kube.fail_next("patch", "twilioapikeys/app/status", 500, false);
    assert!(h.pass().await.is_err());
    h.timeline.take();
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio update_key 200", STATUS]);
    assert_eq!(h.key().status.unwrap().friendly_name.as_deref(), Some("renamed"));
}

// --- RewriteSecret ---

#[tokio::test]
async fn rewrite_writes_the_secret_then_records() {
    let h = delivered().await;
    let sid = h.recorded_sid().unwrap();
    h.apply(json!({"secret": {"labels": {"team": "a"}}}));
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["patch secrets/app", STATUS]);
    assert_eq!(h.secret().unwrap().metadata.labels.unwrap().get("team").map(String::as_str), Some("a"));
    assert_eq!(h.delivered_sid(), Some(sid), "the key stays");
}

#[tokio::test]
async fn a_rewrite_whose_status_write_failed_settles_without_another_key() {
    let h = delivered().await;
    let sid = h.recorded_sid().unwrap();
    h.apply(json!({"secret": {"labels": {"team": "a"}}}));
    h.kube.fail_next("patch", "twilioapikeys/app/status", 500, false);
    assert!(h.pass().await.is_err());
    h.settle().await;
    assert_eq!(h.recorded_sid(), Some(sid.clone()));
    assert_eq!(h.delivered_sid(), Some(sid));
    assert_eq!(h.live_keys().len(), 1);
}

// --- UpToDate ---

#[tokio::test]
async fn up_to_date_finds_a_key_deleted_in_twilio_and_replaces_it() {
    let h = delivered().await;
    let old = h.recorded_sid().unwrap();
    h.twilio.delete_key(&old);
    h.advance(SignedDuration::from_mins(11));
    h.pass().await.unwrap();
    assert_eq!(
        h.effects(),
        [
            "twilio list_keys 200",
            "twilio fetch_key 404",
            "twilio create_key 201",
            "patch secrets/app",
            STATUS,
            "twilio update_key 200"
        ]
    );
    assert_ne!(h.recorded_sid().unwrap(), old);
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn up_to_date_does_nothing_when_nothing_changed() {
    let h = delivered().await;
    h.pass().await.unwrap();
    assert_eq!(h.effects(), Vec::<String>::new());
}

// --- Revoke, StayRevoked ---

#[tokio::test]
async fn revoke_deletes_the_key_then_the_secret_then_records() {
    let h = delivered().await;
    h.apply(json!({"revoked": true}));
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio delete_key 204", "delete secrets/app", STATUS]);
    assert!(h.live_keys().is_empty() && h.secret().is_none());
    assert_eq!(h.recorded_sid(), None);
    // StayRevoked: nothing left to do.
    h.pass().await.unwrap();
    assert_eq!(h.effects(), Vec::<String>::new());
}

#[tokio::test]
async fn a_revocation_whose_secret_delete_failed_finishes_on_the_next_pass() {
    let h = delivered().await;
    h.apply(json!({"revoked": true}));
    h.kube.fail_next("delete", "secrets/app", 500, false);
    assert!(h.pass().await.is_err());
    assert!(h.live_keys().is_empty(), "the key went first");
    assert!(h.secret().is_some());
    h.timeline.take();
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio delete_key 404", "delete secrets/app", STATUS]);
    assert!(h.secret().is_none());
}

// --- Cleanup ---

#[tokio::test]
async fn deletion_deletes_the_key_then_the_secret_then_lets_the_resource_go() {
    let h = delivered().await;
    h.kube.edit(KEY, |key| key["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
    h.timeline.take();
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio delete_key 204", "delete secrets/app", FINALIZER_ADDED]);
    assert!(h.kube.get(KEY).is_none(), "the finalizer is gone, and the resource with it");
    assert!(h.live_keys().is_empty() && h.secret().is_none());
}

#[tokio::test]
async fn a_deletion_whose_key_delete_failed_keeps_the_finalizer_until_it_succeeds() {
    let h = delivered().await;
    h.kube.edit(KEY, |key| key["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
    h.twilio.fail_next("delete_key", 500, false);
    h.timeline.take();
    assert!(h.pass().await.is_err());
    assert_eq!(h.effects(), ["twilio delete_key 500", STATUS]);
    assert!(h.kube.get(KEY).is_some() && h.secret().is_some() && h.live_keys().len() == 1);
    h.pass().await.unwrap();
    assert!(h.kube.get(KEY).is_none() && h.secret().is_none() && h.live_keys().is_empty());
}
