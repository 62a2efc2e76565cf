//! Rollout restart targets: the workloads that consume a key's Secret. After a rotation each is
//! restarted as `kubectl rollout restart` does (an annotation on its Pod template), and the old
//! key is kept until every one has rolled out. Pure: what to patch, whether a workload's status
//! says all its Pods run a template with the restart, and what the status says meanwhile.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;

use crate::api::{RolloutTargetStatus, TwilioApiKey, TwilioApiKeyStatus};

/// On a target's Pod template: when the operator restarted it (RFC 3339). Pods made from a
/// template carrying it were created after the new key was in the Secret.
pub const RESTARTED_AT_ANNOTATION: &str = "twilio-operator.dev/restartedAt";

/// The condition a resource carries while a rollout has not finished by the rollout deadline.
pub const ROLLOUT_DELAYED: &str = "RolloutDelayed";

/// How often a resource looks at its targets while it waits for them.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The longest an old key waits for rollouts when spec.rotation.maxGracePeriod is not set (or
/// the grace period, if that is longer).
const DEFAULT_MAX_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// A target as read from the API server.
#[derive(Clone, Debug)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
}

/// Where a target's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every Pod runs a template that includes the restart, and is available.
    Complete,
    /// Not yet, and why.
    Waiting(String),
}

/// The merge patch that restarts a workload at `at`: a new Pod template annotation, which makes
/// its controller replace every Pod.
pub fn restart_patch(at: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at.to_string()}}}}
    })
}

/// Whether every Pod of `workload` runs a template that carries the restart made at
/// `restarted_at` (or a later one), following `kubectl rollout status`. Pods that are still being
/// replaced, or that are not available yet, do not count.
pub fn progress(workload: &Workload, restarted_at: Timestamp) -> Progress {
    let (meta, template_annotations) = match workload {
        Workload::Deployment(d) => (d.meta(), d.spec.template.metadata.as_ref()),
        Workload::StatefulSet(s) => (s.meta(), s.spec.template.metadata.as_ref()),
        Workload::DaemonSet(d) => (d.meta(), d.spec.template.metadata.as_ref()),
    };
    let carried = template_annotations
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
        .and_then(|at| at.parse::<Timestamp>().ok());
    if carried.is_none_or(|at| at < restarted_at) {
        return Progress::Waiting(format!(
            "its Pod template no longer carries the restart of {restarted_at} ({RESTARTED_AT_ANNOTATION})"
        ));
    }
    let generation = meta.generation.unwrap_or(0);
    let waiting = |why: String| Progress::Waiting(why);
    match workload {
        Workload::Deployment(d) => {
            let status = d.status.clone().unwrap_or_default();
            if status.observed_generation.unwrap_or(0) < generation {
                return waiting("waiting for the Deployment controller to see the restart".into());
            }
            if d.spec.paused.unwrap_or(false) {
                return waiting("the Deployment is paused".into());
            }
            let desired = d.spec.replicas.unwrap_or(1);
            let updated = status.updated_replicas.unwrap_or(0);
            let total = status.replicas.unwrap_or(0);
            let available = status.available_replicas.unwrap_or(0);
            // Reported by API servers from 1.33 on: Pods on their way out, which may still hold
            // the old key.
            let terminating = status.terminating_replicas.unwrap_or(0);
            let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.status.as_deref() == Some("False")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
            let note = if deadline_exceeded { " (its progress deadline is exceeded)" } else { "" };
            if updated < desired {
                waiting(format!("{updated} of {desired} Pods updated{note}"))
            } else if total > updated {
                waiting(format!("{} old Pods still running{note}", total - updated))
            } else if available < updated {
                waiting(format!("{available} of {updated} updated Pods available{note}"))
            } else if terminating > 0 {
                waiting(format!("{terminating} old Pods still terminating"))
            } else {
                Progress::Complete
            }
        }
        Workload::StatefulSet(s) => {
            let spec = &s.spec;
            let status = s.status.clone().unwrap_or_default();
            if status.observed_generation.unwrap_or(0) < generation {
                return waiting("waiting for the StatefulSet controller to see the restart".into());
            }
            let desired = spec.replicas.unwrap_or(1);
            let updated = status.updated_replicas.unwrap_or(0);
            let ready = status.ready_replicas.unwrap_or(0);
            let partition = spec
                .update_strategy
                .as_ref()
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0);
            let note = match partition {
                0 => String::new(),
                p => format!(" (its partition {p} keeps Pods below ordinal {p} on the old template)"),
            };
            let on_delete = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete");
            let note =
                if on_delete { " (updateStrategy OnDelete: Pods change only when deleted)".into() } else { note };
            if updated < desired {
                waiting(format!("{updated} of {desired} Pods updated{note}"))
            } else if ready < desired {
                waiting(format!("{ready} of {desired} Pods ready"))
            } else if !on_delete
                && status.update_revision.is_some()
                && status.current_revision != status.update_revision
            {
                waiting("the rolling update has not finished".into())
            } else {
                Progress::Complete
            }
        }
        Workload::DaemonSet(d) => {
            let status = d.status.clone().unwrap_or_default();
            if status.observed_generation.unwrap_or(0) < generation {
                return waiting("waiting for the DaemonSet controller to see the restart".into());
            }
            let desired = status.desired_number_scheduled;
            let updated = status.updated_number_scheduled.unwrap_or(0);
            let available = status.number_available.unwrap_or(0);
            if updated < desired {
                waiting(format!("{updated} of {desired} Pods updated"))
            } else if available < desired {
                waiting(format!("{available} of {desired} Pods available"))
            } else {
                Progress::Complete
            }
        }
    }
}

/// The rollout entries for a rotation that just retired a key: one per target, none restarted yet.
pub fn started(resource: &TwilioApiKey) -> Vec<RolloutTargetStatus> {
    resource
        .spec
        .rollout_restart_targets
        .iter()
        .map(|t| RolloutTargetStatus {
            kind: t.kind,
            name: t.name.clone(),
            complete: false,
            restarted_at: None,
            message: Some("to be restarted".into()),
            restart_failures: 0,
            next_restart_at: None,
        })
        .collect()
}

/// The entries the retiring keys still wait for: targets the spec still names whose rollout has
/// not completed. Targets removed from the spec are not waited for.
pub fn waiting<'a>(resource: &TwilioApiKey, status: &'a TwilioApiKeyStatus) -> Vec<&'a RolloutTargetStatus> {
    if status.retiring_keys.is_empty() {
        return vec![];
    }
    status
        .rollout
        .iter()
        .filter(|e| !e.complete)
        .filter(|e| resource.spec.rollout_restart_targets.iter().any(|t| t.kind == e.kind && t.name == e.name))
        .collect()
}

/// The condition a resource carries while a rollout restart target cannot be restarted (it is
/// missing, or the operator may not patch it): retried with backoff, and the old key kept.
pub const ROLLOUT_TARGET_MISSING: &str = "RolloutTargetMissing";

/// How long after its `failures`-th failed restart in a row a target is tried again: 5 s,
/// doubling, at most 5 minutes.
pub fn restart_backoff(failures: u32) -> SignedDuration {
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16)).min(300);
    SignedDuration::from_secs(seconds as i64)
}

/// Sets (or clears) the RolloutTargetMissing condition from the targets the retiring keys wait
/// for whose last restart failed. The condition's transition time stays while it holds.
pub fn set_target_missing(resource: &TwilioApiKey, status: &mut TwilioApiKeyStatus, now: Timestamp) {
    let failing: Vec<String> = waiting(resource, status)
        .into_iter()
        .filter(|e| e.restarted_at.is_none() && e.restart_failures > 0)
        .map(|e| {
            let why = e.message.as_deref().unwrap_or("could not be restarted");
            let next = e.next_restart_at.as_deref().unwrap_or("later");
            format!("{}/{}: {why} (tried {} times; next at {next})", e.kind, e.name, e.restart_failures)
        })
        .collect();
    if failing.is_empty() {
        status.conditions.retain(|c| c.type_ != ROLLOUT_TARGET_MISSING);
        return;
    }
    let message = format!(
        "cannot restart {}; the old key stays valid until every target rolled out, or until its deleteBy",
        failing.join("; ")
    );
    let generation = resource.meta().generation;
    crate::api::conditions::set_true(
        &mut status.conditions,
        ROLLOUT_TARGET_MISSING,
        "RestartFailed",
        message,
        generation,
        now,
    );
}

/// "Deployment/a, StatefulSet/b".
pub fn names(entries: &[&RolloutTargetStatus]) -> String {
    entries.iter().map(|e| format!("{}/{}", e.kind, e.name)).collect::<Vec<_>>().join(", ")
}

/// How long an old key may wait for rollouts: spec.rotation.maxGracePeriod, by default 24h, and
/// never less than the grace period.
pub fn max_grace_period(resource: &TwilioApiKey, grace: SignedDuration) -> SignedDuration {
    let max = resource
        .spec
        .rotation
        .as_ref()
        .and_then(|r| r.max_grace_period.as_deref())
        .and_then(|text| crate::api::duration::parse(text).ok())
        .unwrap_or(DEFAULT_MAX_GRACE_PERIOD);
    SignedDuration::try_from(max).unwrap_or(SignedDuration::from_hours(24)).max(grace)
}

/// The RolloutDelayed message when the rollouts the retiring keys wait for have not completed
/// `deadline` after the rotation (the current key's creation); None otherwise.
pub fn delayed(
    resource: &TwilioApiKey,
    status: &TwilioApiKeyStatus,
    deadline: Duration,
    now: Timestamp,
) -> Option<String> {
    let waiting = waiting(resource, status);
    let rotated_at = status.key_created_at.as_deref()?.parse::<Timestamp>().ok()?;
    let deadline = SignedDuration::try_from(deadline).ok()?;
    if waiting.is_empty() || now < rotated_at.checked_add(deadline).ok()? {
        return None;
    }
    let details = waiting
        .iter()
        .map(|e| format!("{}/{}: {}", e.kind, e.name, e.message.as_deref().unwrap_or("not complete")))
        .collect::<Vec<_>>()
        .join("; ");
    let latest = status.retiring_keys.iter().filter_map(|r| r.delete_by.as_deref()).max().unwrap_or("its deadline");
    Some(format!(
        "the rollout has not finished {} after the rotation ({details}); the old key stays valid until it has, or until {latest}",
        crate::api::duration::format(deadline.unsigned_abs())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentStatus, StatefulSetStatus};

    const RESTART: &str = "2026-01-01T00:00:00Z";

    fn restarted_at() -> Timestamp {
        RESTART.parse().unwrap()
    }

    fn deployment(replicas: i32, generation: i64, annotation: Option<&str>, status: DeploymentStatus) -> Workload {
        let mut object: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "generation": generation},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": []}}
            }
        }))
        .unwrap();
        if let Some(at) = annotation {
            object.spec.template.metadata.as_mut().unwrap().annotations =
                Some([(RESTARTED_AT_ANNOTATION.to_string(), at.to_string())].into());
        }
        object.status = Some(status);
        Workload::Deployment(object)
    }

    fn deployment_status(observed: i64, replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..Default::default()
        }
    }

    fn waiting_says(progress: Progress, says: &str) {
        match progress {
            Progress::Waiting(why) => assert!(why.contains(says), "{why:?} should say {says:?}"),
            Progress::Complete => panic!("complete, but should wait: {says}"),
        }
    }

    #[test]
    fn a_deployment_is_complete_once_every_pod_is_updated_and_available_and_no_old_one_is_left() {
        let at = Some(RESTART);
        let complete = deployment(2, 3, at, deployment_status(3, 2, 2, 2));
        assert_eq!(progress(&complete, restarted_at()), Progress::Complete);
        waiting_says(progress(&deployment(2, 3, at, deployment_status(2, 2, 2, 2)), restarted_at()), "controller");
        waiting_says(
            progress(&deployment(2, 3, at, deployment_status(3, 3, 1, 2)), restarted_at()),
            "1 of 2 Pods updated",
        );
        waiting_says(progress(&deployment(2, 3, at, deployment_status(3, 3, 2, 2)), restarted_at()), "1 old Pods");
        waiting_says(progress(&deployment(2, 3, at, deployment_status(3, 2, 2, 1)), restarted_at()), "1 of 2 updated");
        let terminating = DeploymentStatus { terminating_replicas: Some(1), ..deployment_status(3, 2, 2, 2) };
        waiting_says(progress(&deployment(2, 3, at, terminating), restarted_at()), "1 old Pods still terminating");
        let scaled_to_zero = deployment(0, 3, at, deployment_status(3, 0, 0, 0));
        assert_eq!(progress(&scaled_to_zero, restarted_at()), Progress::Complete, "no Pod holds the old key");
    }

    #[test]
    fn a_template_without_the_restart_or_with_an_older_one_is_not_complete() {
        let status = || deployment_status(3, 2, 2, 2);
        waiting_says(progress(&deployment(2, 3, None, status()), restarted_at()), "no longer carries the restart");
        let older = deployment(2, 3, Some("2025-12-31T23:59:59Z"), status());
        waiting_says(progress(&older, restarted_at()), "no longer carries the restart");
        let later = deployment(2, 3, Some("2026-01-01T00:00:01Z"), status());
        assert_eq!(progress(&later, restarted_at()), Progress::Complete, "a later restart includes this one");
        waiting_says(progress(&deployment(2, 3, Some("yesterday"), status()), restarted_at()), "no longer carries");
    }

    #[test]
    fn a_paused_or_stuck_deployment_says_so() {
        let Workload::Deployment(mut paused) = deployment(2, 3, Some(RESTART), deployment_status(3, 2, 2, 2)) else {
            unreachable!()
        };
        paused.spec.paused = Some(true);
        waiting_says(progress(&Workload::Deployment(paused), restarted_at()), "paused");
        let mut stuck = deployment_status(3, 3, 1, 2);
        stuck.conditions = Some(vec![
            serde_json::from_value(serde_json::json!({
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"
            }))
            .unwrap(),
        ]);
        waiting_says(progress(&deployment(2, 3, Some(RESTART), stuck), restarted_at()), "progress deadline");
    }

    fn stateful_set(strategy: serde_json::Value, status: StatefulSetStatus) -> Workload {
        let mut object: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "generation": 2},
            "spec": {
                "replicas": 3,
                "serviceName": "db",
                "updateStrategy": strategy,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}, "annotations": {RESTARTED_AT_ANNOTATION: RESTART}},
                    "spec": {"containers": []}
                }
            }
        }))
        .unwrap();
        object.status = Some(status);
        Workload::StatefulSet(object)
    }

    fn sts_status(updated: i32, ready: i32, current: &str, update: &str) -> StatefulSetStatus {
        StatefulSetStatus {
            observed_generation: Some(2),
            replicas: 3,
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            current_revision: Some(current.into()),
            update_revision: Some(update.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_stateful_set_is_complete_when_all_pods_are_updated_ready_and_the_revision_settled() {
        let rolling = serde_json::json!({"type": "RollingUpdate"});
        assert_eq!(
            progress(&stateful_set(rolling.clone(), sts_status(3, 3, "r2", "r2")), restarted_at()),
            Progress::Complete
        );
        waiting_says(progress(&stateful_set(rolling.clone(), sts_status(2, 3, "r1", "r2")), restarted_at()), "2 of 3");
        waiting_says(
            progress(&stateful_set(rolling.clone(), sts_status(3, 2, "r1", "r2")), restarted_at()),
            "2 of 3 Pods ready",
        );
        waiting_says(progress(&stateful_set(rolling, sts_status(3, 3, "r1", "r2")), restarted_at()), "not finished");
        let partitioned = serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        waiting_says(progress(&stateful_set(partitioned, sts_status(1, 3, "r1", "r2")), restarted_at()), "partition 2");
        let on_delete = serde_json::json!({"type": "OnDelete"});
        waiting_says(
            progress(&stateful_set(on_delete.clone(), sts_status(0, 3, "r1", "r2")), restarted_at()),
            "OnDelete",
        );
        assert_eq!(
            progress(&stateful_set(on_delete, sts_status(3, 3, "r1", "r2")), restarted_at()),
            Progress::Complete
        );
    }

    #[test]
    fn a_daemon_set_is_complete_when_every_scheduled_pod_is_updated_and_available() {
        let daemon_set = |observed: i64, desired: i32, updated: i32, available: i32| {
            let mut object: DaemonSet = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "agent", "generation": 4},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": {
                        "metadata": {"labels": {"app": "agent"}, "annotations": {RESTARTED_AT_ANNOTATION: RESTART}},
                        "spec": {"containers": []}
                    }
                }
            }))
            .unwrap();
            object.status = Some(DaemonSetStatus {
                observed_generation: Some(observed),
                desired_number_scheduled: desired,
                updated_number_scheduled: Some(updated),
                number_available: Some(available),
                ..Default::default()
            });
            Workload::DaemonSet(object)
        };
        assert_eq!(progress(&daemon_set(4, 2, 2, 2), restarted_at()), Progress::Complete);
        assert_eq!(progress(&daemon_set(4, 0, 0, 0), restarted_at()), Progress::Complete, "on no node, no Pod");
        waiting_says(progress(&daemon_set(3, 2, 2, 2), restarted_at()), "controller");
        waiting_says(progress(&daemon_set(4, 2, 1, 2), restarted_at()), "1 of 2 Pods updated");
        waiting_says(progress(&daemon_set(4, 2, 2, 1), restarted_at()), "1 of 2 Pods available");
    }

    #[test]
    fn the_restart_patch_sets_only_the_template_annotation() {
        assert_eq!(
            restart_patch(restarted_at()),
            serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: RESTART}}}}})
        );
    }
}
