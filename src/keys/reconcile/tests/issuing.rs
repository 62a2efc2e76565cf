//! Issuing keys: `Create` and `Rotate` (with the old key retiring), and `Record` of a delivery
//! whose status write was lost; per effect, a failure after (or instead of) it.

use k8s_openapi::jiff::SignedDuration;
use serde_json::json;

use super::*;

// --- Create ---

/// The effects of a new resource's first pass, in order: the finalizer, the account listed (for
/// keys an earlier attempt left), the key created, the Secret written, the status recording the
/// key, the key renamed from its pending name.
const FIRST_CREATE: [&str; 6] = [
    FINALIZER_ADDED,
    "twilio list_keys 200",
    "twilio create_key 201",
    "create secrets/app",
    STATUS,
    "twilio update_key 200",
];

#[tokio::test]
async fn create_lists_creates_writes_the_secret_records_and_then_renames() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.pass().await.unwrap();
    assert_eq!(h.effects(), FIRST_CREATE);
    let sid = h.recorded_sid().expect("the status records the key");
    assert_eq!(h.delivered_sid().as_deref(), Some(sid.as_str()));
    assert_eq!(h.twilio.friendly_name(&sid).as_deref(), Some("team/app"));
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn a_refused_create_leaves_nothing_and_the_next_pass_creates_one_key() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.twilio.fail_next("create_key", 500, false);
    assert!(h.pass().await.is_err());
    assert_eq!(h.effects(), [FINALIZER_ADDED, "twilio list_keys 200", "twilio create_key 500", STATUS]);
    assert!(h.live_keys().is_empty() && h.secret().is_none() && h.recorded_sid().is_none());
    h.settle().await;
    assert_eq!(h.live_keys().len(), 1);
    assert_eq!(h.delivered_sid(), h.recorded_sid());
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_swept_before_the_next_create() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.twilio.fail_next("create_key", 500, true);
    assert!(h.pass().await.is_err());
    let lost = h.live_keys();
    assert_eq!(lost.len(), 1, "the key exists, its secret unknown");
    assert_eq!(lost[0].friendly_name, pending_name());
    h.timeline.take();
    h.pass().await.unwrap();
    let effects = h.effects();
    // The account is listed anew (the cached listing predates the lost create) and the orphan
    // goes before the next key is made.
    assert_eq!(effects[..3], ["twilio list_keys 200", "twilio delete_key 204", "twilio create_key 201"], "{effects:?}");
    assert_eq!(h.twilio.deleted_sids(), [lost[0].sid.clone()]);
    assert_eq!(h.live_keys().len(), 1);
    assert_eq!(h.delivered_sid(), h.recorded_sid());
}

#[tokio::test]
async fn a_refused_secret_write_deletes_the_key_it_was_for() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.kube.fail_next("create", "secrets/app", 500, false);
    assert!(h.pass().await.is_err());
    assert_eq!(
        h.effects(),
        [FINALIZER_ADDED, "twilio list_keys 200", "twilio create_key 201", "twilio delete_key 204", STATUS]
    );
    assert!(h.live_keys().is_empty(), "no key outlives a delivery that failed");
    h.settle().await;
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn a_secret_write_whose_answer_was_lost_is_judged_by_what_the_api_server_holds() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.kube.fail_next("create", "secrets/app", 500, true);
    h.pass().await.unwrap();
    assert_eq!(h.effects(), FIRST_CREATE);
    assert_eq!(h.delivered_sid(), h.recorded_sid());
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn a_lost_status_write_after_delivery_is_recorded_from_the_secret_not_created_again() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.kube.fail_next("patch", "twilioapikeys/app/status", 500, false);
    assert!(h.pass().await.is_err());
    let delivered = h.delivered_sid().expect("the Secret was written");
    assert_eq!(h.recorded_sid(), None);
    h.timeline.take();
    // Record: Twilio shows the key under the resource's pending name, which proves it.
    h.pass().await.unwrap();
    let timeline = h.timeline.take();
    let effects: Vec<&String> = timeline.iter().filter(|e| !e.starts_with("event ")).collect();
    assert_eq!(effects, ["twilio fetch_key 200", STATUS, "twilio update_key 200", STATUS]);
    assert!(timeline.contains(&"event KeyRecorded".to_string()), "{timeline:?}");
    assert_eq!(h.recorded_sid(), Some(delivered.clone()));
    assert_eq!(h.twilio.friendly_name(&delivered).as_deref(), Some("team/app"));
    assert_eq!(h.live_keys().len(), 1);
}

#[tokio::test]
async fn a_failed_rename_after_recording_is_repaired_from_the_next_listing() {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.twilio.fail_next("update_key", 500, false);
    assert!(h.pass().await.is_err());
    let sid = h.recorded_sid().expect("recorded before the rename");
    assert_eq!(h.twilio.friendly_name(&sid), Some(pending_name()));
    // Within the resync interval the listing predates the key and is not judged; after it, the
    // key is listed under another name than the status records, and renamed.
    h.advance(SignedDuration::from_mins(11));
    h.timeline.take();
    h.pass().await.unwrap();
    // (and the status says Ready again, in place of the failure it reported)
    assert_eq!(h.effects(), ["twilio list_keys 200", "twilio update_key 200", STATUS]);
    assert_eq!(h.twilio.friendly_name(&sid).as_deref(), Some("team/app"));
}

// --- Rotate, and retiring ---

#[tokio::test]
async fn rotate_creates_delivers_records_renames_and_the_old_key_goes_after_its_grace_period() {
    let h = delivered().await;
    let old = h.recorded_sid().unwrap();
    h.kube.edit(KEY, |key| key["metadata"]["annotations"] = json!({"twilio-operator.dev/rotate": "1"}));
    h.pass().await.unwrap();
    assert_eq!(h.effects(), ["twilio create_key 201", "patch secrets/app", STATUS, "twilio update_key 200"]);
    let new = h.recorded_sid().unwrap();
    assert_ne!(new, old);
    assert_eq!(h.delivered_sid(), Some(new.clone()));
    let retiring: Vec<String> = h.key().status.unwrap().retiring_keys.into_iter().map(|k| k.sid).collect();
    assert_eq!(retiring, std::slice::from_ref(&old));
    assert_eq!(h.live_keys().len(), 2, "the old key stays valid for the grace period");
    h.advance(SignedDuration::from_mins(9));
    h.pass().await.unwrap();
    assert_eq!(h.live_keys().len(), 2);
    h.advance(SignedDuration::from_mins(2));
    h.timeline.take();
    h.pass().await.unwrap();
    let effects = h.effects();
    assert_eq!(effects[..2], ["twilio delete_key 204", STATUS], "{effects:?}");
    assert_eq!(h.live_keys().iter().map(|k| k.sid.clone()).collect::<Vec<_>>(), [new]);
    assert!(h.key().status.unwrap().retiring_keys.is_empty());
}

#[tokio::test]
async fn a_rotation_whose_status_write_failed_is_recorded_with_the_old_key_retiring() {
    let h = delivered().await;
    let old = h.recorded_sid().unwrap();
    h.kube.edit(KEY, |key| key["metadata"]["annotations"] = json!({"twilio-operator.dev/rotate": "1"}));
    h.kube.fail_next("patch", "twilioapikeys/app/status", 500, false);
    assert!(h.pass().await.is_err());
    let new = h.delivered_sid().unwrap();
    assert_ne!(new, old);
    assert_eq!(h.recorded_sid(), Some(old.clone()), "the status still names the old key");
    h.settle().await;
    let status = h.key().status.unwrap();
    assert_eq!(status.key_sid, Some(new.clone()));
    assert_eq!(status.retiring_keys.iter().map(|k| k.sid.clone()).collect::<Vec<_>>(), [old]);
    assert_eq!(h.twilio.friendly_name(&new).as_deref(), Some("team/app"));
    assert_eq!(h.live_keys().len(), 2);
}
