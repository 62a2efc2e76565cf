//! Restarts after rotations and rotation windows: keys rotated together share one restart of a
//! workload they both feed, a restart that loses a race shares the winner's, and a scheduled
//! rotation waits for its window while a repair does not.

use k8s_openapi::jiff::SignedDuration;
use k8s_openapi::jiff::tz::TimeZone;
use serde_json::json;

use super::*;
use crate::runtime::context::Clock;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/team/deployments";
const WEB: &str = "/apis/apps/v1/namespaces/team/deployments/web";

/// Deployment `web` (label tier=api), one replica, rolled out.
fn put_web(h: &Harness) {
    h.kube.put(
        DEPLOYMENTS,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team", "labels": {"tier": "api"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}),
    );
}

/// What the Deployment controller writes once every Pod runs the current template.
fn roll_out_web(h: &Harness) {
    h.kube.edit(WEB, |d| {
        let generation = d["metadata"]["generation"].clone();
        d["status"] =
            json!({"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
    });
}

fn template_restart(h: &Harness) -> Option<String> {
    let web = h.kube.get(WEB)?;
    web["spec"]["template"]["metadata"]["annotations"]["twilio-operator.dev/restartedAt"].as_str().map(String::from)
}

/// Four rounds of passes over `names`, in order: enough for each to carry out what it can do
/// at this time (a pass that is not due leaves the resource as it is).
async fn settle_all(h: &Harness, names: &[&str]) {
    for _ in 0..4 {
        for name in names {
            let _ = h.pass_on(name).await;
        }
    }
}

/// Key `a` (targets: web, by selector and by name), delivered, then rotated; the clock past the
/// restart delay, so that its next pass restarts web.
async fn rotated_past_the_restart_delay() -> Harness {
    let h = Harness::new().await;
    put_web(&h);
    h.apply_named("a", key_spec("a", "1"));
    settle_all(&h, &["a"]).await;
    h.apply_named("a", key_spec("a", "2"));
    settle_all(&h, &["a"]).await;
    h.advance(SignedDuration::from_secs(11));
    h
}

fn events(timeline: &[String], reason: &str) -> usize {
    timeline.iter().filter(|e| *e == &format!("event {reason}")).count()
}

fn key_spec(secret: &str, trigger: &str) -> Value {
    json!({
        "secret": {"name": secret},
        "rotation": {"gracePeriod": "1s", "trigger": trigger},
        "rolloutRestartTargets": [
            {"kind": "Deployment", "selector": {"matchLabels": {"tier": "api"}}},
            {"kind": "Deployment", "name": "web"}
        ]
    })
}

#[tokio::test]
async fn keys_rotated_together_restart_a_workload_they_share_once() {
    let h = Harness::new().await;
    put_web(&h);
    h.apply_named("a", key_spec("a", "1"));
    h.apply_named("b", key_spec("b", "1"));
    settle_all(&h, &["a", "b"]).await;
    let old: Vec<String> = ["a", "b"].iter().map(|n| h.key_named(n).status.unwrap().key_sid.unwrap()).collect();
    h.timeline.take();

    h.apply_named("a", key_spec("a", "2"));
    h.apply_named("b", key_spec("b", "2"));
    settle_all(&h, &["a", "b"]).await;
    // Both delivered; neither restarts before the restart delay.
    assert_eq!(template_restart(&h), None);
    let entries = h.key_named("a").status.unwrap().rollout;
    assert!(entries[0].message.as_deref().unwrap().contains("to be matched and restarted at"), "{entries:?}");
    h.advance(SignedDuration::from_secs(11));
    settle_all(&h, &["a", "b"]).await;
    let timeline = h.timeline.take();
    let restarts = timeline.iter().filter(|e| *e == "patch deployments/web").count();
    assert_eq!(restarts, 1, "web is restarted once for both keys: {timeline:?}");
    assert_eq!((events(&timeline, "RolloutRestarted"), events(&timeline, "RolloutRestartShared")), (1, 1));
    let web = h.kube.get(WEB).unwrap();
    assert_eq!(
        web["metadata"]["annotations"]["twilio-operator.dev/restartedFor"].as_str().unwrap().split(' ').nth(1),
        Some("a")
    );
    // Named and selected, web is one entry; the selector's entry says what it matched.
    let entries = h.key_named("b").status.unwrap().rollout;
    let shown: Vec<(String, Option<String>, bool)> =
        entries.iter().map(|e| (e.name.clone(), e.selector.clone(), e.complete)).collect();
    assert_eq!(shown, [(String::new(), Some("tier=api".into()), true), ("web".into(), None, false)]);
    assert_eq!(entries[0].message.as_deref(), Some("matched 1 at the rotation: web"));
    assert_eq!(entries[1].restarted_at, template_restart(&h), "b records a's restart as its own");

    // Both old keys wait for web, then go after their grace period.
    h.advance(SignedDuration::from_secs(5));
    settle_all(&h, &["a", "b"]).await;
    assert!(old.iter().all(|sid| h.twilio.key(sid).is_some()), "kept until web rolled out");
    roll_out_web(&h);
    settle_all(&h, &["a", "b"]).await;
    h.advance(SignedDuration::from_secs(2));
    settle_all(&h, &["a", "b"]).await;
    assert!(old.iter().all(|sid| h.twilio.key(sid).is_none()), "both deleted once web rolled out");
    let history = h.key_named("a").status.unwrap().history;
    assert_eq!(history[0].deleted_because.as_deref(), Some("RolledOut"), "{history:?}");
}

#[tokio::test]
async fn a_restart_that_loses_a_race_shares_the_winners() {
    let h = rotated_past_the_restart_delay().await;
    // Between the operator's read of web and its restart, another key's restart lands.
    let winner = h.clock.now().checked_sub(SignedDuration::from_secs(1)).unwrap().to_string();
    let planted = winner.clone();
    h.kube.change_before_next("patch", "deployments/web", WEB, move |d| {
        d["spec"]["template"]["metadata"]["annotations"] = json!({"twilio-operator.dev/restartedAt": planted});
        d["metadata"]["annotations"] = json!({"twilio-operator.dev/restartedFor": "TwilioApiKey other (key SK1)"});
    });
    h.timeline.take();
    h.pass_on("a").await.unwrap();
    let timeline = h.timeline.take();
    assert!(!timeline.contains(&"patch deployments/web".to_string()), "no second restart: {timeline:?}");
    assert_eq!(events(&timeline, "RolloutRestartShared"), 1, "{timeline:?}");
    assert_eq!(template_restart(&h), Some(winner.clone()));
    let web_entry = h.key_named("a").status.unwrap().rollout.into_iter().find(|e| e.name == "web").unwrap();
    assert_eq!(web_entry.restarted_at, Some(winner));
    assert!(web_entry.message.unwrap().contains("TwilioApiKey other"));
}

/// "HH:MM" of `at` plus `hours`, in UTC.
fn clock(at: Timestamp, hours: i64) -> String {
    at.checked_add(SignedDuration::from_hours(hours)).unwrap().to_zoned(TimeZone::UTC).strftime("%H:%M").to_string()
}

#[tokio::test]
async fn a_scheduled_rotation_waits_for_its_window_and_a_repair_does_not() {
    let h = Harness::new().await;
    let start = h.clock.now();
    let spec = json!({"rotation": {"interval": "1h", "windows": [{"start": clock(start, 3), "end": clock(start, 4)}]}});
    h.apply(spec);
    h.settle().await;
    let first = h.recorded_sid().unwrap();
    // Due after an hour; the window opens after three.
    h.advance(SignedDuration::from_mins(61));
    h.settle().await;
    assert_eq!(h.recorded_sid(), Some(first.clone()), "not rotated outside its window");
    let status = h.key().status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("waits for a rotation window"), "{}", ready.message);
    assert_eq!(status.next_rotation_at, status.next_window_at, "the next rotation is at the window's opening");
    // A repair outside the window: the Secret's data altered, a new key at once.
    h.kube.edit(SECRET, |s| s["data"] = json!({}));
    h.settle().await;
    let repaired = h.recorded_sid().unwrap();
    assert_ne!(repaired, first, "repaired outside the window");
    assert_eq!(h.key().status.unwrap().history.last().unwrap().reason, "SecretDrift");
    // Into the window: the key due since the repair plus an hour rotates.
    h.advance(SignedDuration::from_mins(121));
    h.settle().await;
    let rotated = h.recorded_sid().unwrap();
    assert_ne!(rotated, repaired);
    let reasons: Vec<String> = h.key().status.unwrap().history.into_iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["Created", "SecretDrift", "IntervalElapsed"]);
}

#[tokio::test]
async fn a_selector_that_matches_more_than_a_rotation_restarts_is_cut_at_32_and_says_so() {
    let h = Harness::new().await;
    for i in 0..34 {
        h.kube.put(
            DEPLOYMENTS,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("w{i:02}"), "namespace": "team", "labels": {"tier": "api"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": []}}}}),
        );
    }
    let spec = |trigger: &str| {
        json!({"rotation": {"trigger": trigger},
            "rolloutRestartTargets": [{"kind": "Deployment", "selector": {"matchLabels": {"tier": "api"}}}]})
    };
    h.apply(spec("1"));
    h.settle().await;
    h.apply(spec("2"));
    h.settle().await;
    h.advance(SignedDuration::from_secs(11));
    h.timeline.take();
    h.pass().await.unwrap();
    let timeline = h.timeline.take();
    let restarts = timeline.iter().filter(|e| e.starts_with("patch deployments/")).count();
    assert_eq!(restarts, 32, "{timeline:?}");
    assert_eq!(events(&timeline, "RolloutTargetsLimited"), 1);
    let entries = h.key().status.unwrap().rollout;
    assert_eq!(entries.len(), 33, "the selector's entry and 32 workloads");
    let summary = entries[0].message.as_deref().unwrap();
    assert!(summary.starts_with("matched more than 33 at the rotation, the first: w00,"), "{summary}");
    assert!(summary.ends_with("the others not restarted: a rotation restarts at most 32 workloads"), "{summary}");
}

#[tokio::test]
async fn a_restart_whose_status_write_failed_is_found_and_not_repeated() {
    let h = rotated_past_the_restart_delay().await;
    h.timeline.take();
    h.kube.fail_next("patch", "twilioapikeys/a/status", 500, false);
    assert!(h.pass_on("a").await.is_err(), "the status write after the restart fails");
    let restarted = template_restart(&h).expect("web was restarted");
    assert!(h.key_named("a").status.unwrap().rollout.iter().all(|e| e.restarted_at.is_none()), "not recorded");
    h.timeline.take();
    h.pass_on("a").await.unwrap();
    let timeline = h.timeline.take();
    assert!(!timeline.iter().any(|e| e == "patch deployments/web"), "not restarted again: {timeline:?}");
    assert_eq!(events(&timeline, "RolloutRestartShared"), 1, "{timeline:?}");
    let web = h.key_named("a").status.unwrap().rollout.into_iter().find(|e| e.name == "web").unwrap();
    assert_eq!(web.restarted_at, Some(restarted), "its own restart, found and recorded");
}

#[tokio::test]
async fn a_workload_that_keeps_changing_under_its_restart_is_tried_again_after_a_backoff() {
    let h = rotated_past_the_restart_delay().await;
    // Before each of the pass's three restarts, someone edits web (not a restart): 409 each time.
    for n in 0..3 {
        h.kube.change_before_next("patch", "deployments/web", WEB, move |d| {
            d["metadata"]["labels"]["edited"] = json!(n.to_string());
        });
    }
    h.timeline.take();
    h.pass_on("a").await.unwrap();
    assert!(template_restart(&h).is_none(), "not restarted");
    let web = h.key_named("a").status.unwrap().rollout.into_iter().find(|e| e.name == "web").unwrap();
    assert!(web.next_restart_at.is_some(), "{web:?}");
    assert!(web.message.as_deref().unwrap().starts_with("changed while being restarted; trying again at"));
    // Not tried again at once: the next pass leaves web alone until the backoff ends.
    h.pass_on("a").await.unwrap();
    assert!(template_restart(&h).is_none(), "no attempt before the backoff ends");
    h.advance(SignedDuration::from_secs(6));
    h.pass_on("a").await.unwrap();
    assert!(template_restart(&h).is_some(), "restarted once the backoff ended");
}
