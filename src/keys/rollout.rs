//! Rollout restart targets: the workloads that consume a key's Secret. After a rotation each is
//! restarted (a Deployment, StatefulSet or DaemonSet as `kubectl rollout restart` does, an
//! annotation on its Pod template; an Argo Rollout through its `spec.restartAt`), and the old
//! key is kept until every one has rolled out. Pure: what to patch, whether a workload's status
//! says all its Pods were made after the restart, and what the status says meanwhile.
//!
//! One restart serves every key whose Secret was written before it: a workload already
//! restarted after a key's delivery is not restarted again for that key (see [`served_by`]).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;

use crate::api::{RolloutRestartTarget, RolloutTargetStatus, TwilioApiKey, TwilioApiKeyStatus, WorkloadKind};

/// On a target's Pod template: when the operator restarted it (RFC 3339). Pods made from a
/// template carrying it were created after the new key was in the Secret.
pub const RESTARTED_AT_ANNOTATION: &str = "twilio-operator.dev/restartedAt";

/// On a restarted workload (its own metadata, which starts no rollout): the TwilioApiKey and key
/// its latest restart was made for, so that other keys the restart serves can say whose it was.
pub const RESTARTED_FOR_ANNOTATION: &str = "twilio-operator.dev/restartedFor";

/// The most workloads one rotation restarts and waits for, named and matched together.
pub const MAX_WORKLOADS: usize = 32;

/// The Argo Rollouts kind the operator restarts through spec.restartAt.
pub fn argo_rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

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
    /// An Argo Rollout, as the API server returns it.
    Rollout(DynamicObject),
}

impl Workload {
    /// When the workload was last restarted, as its spec says: the operator's Pod template
    /// annotation, or an Argo Rollout's spec.restartAt.
    pub fn restarted_at(&self) -> Option<Timestamp> {
        let annotation = |template: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
            template?.annotations.as_ref()?.get(RESTARTED_AT_ANNOTATION)?.parse::<Timestamp>().ok()
        };
        match self {
            Workload::Deployment(d) => annotation(d.spec.template.metadata.as_ref()),
            Workload::StatefulSet(s) => annotation(s.spec.template.metadata.as_ref()),
            Workload::DaemonSet(d) => annotation(d.spec.template.metadata.as_ref()),
            Workload::Rollout(r) => r.data.get("spec")?.get("restartAt")?.as_str()?.parse::<Timestamp>().ok(),
        }
    }

    /// What the workload's restartedFor annotation says: whom its latest restart was made for.
    pub fn restarted_for(&self) -> Option<&str> {
        let meta = match self {
            Workload::Deployment(d) => d.meta(),
            Workload::StatefulSet(s) => s.meta(),
            Workload::DaemonSet(d) => d.meta(),
            Workload::Rollout(r) => &r.metadata,
        };
        meta.annotations.as_ref()?.get(RESTARTED_FOR_ANNOTATION).map(String::as_str)
    }

    pub fn resource_version(&self) -> Option<&str> {
        match self {
            Workload::Deployment(d) => d.meta().resource_version.as_deref(),
            Workload::StatefulSet(s) => s.meta().resource_version.as_deref(),
            Workload::DaemonSet(d) => d.meta().resource_version.as_deref(),
            Workload::Rollout(r) => r.metadata.resource_version.as_deref(),
        }
    }
}

/// The restart a workload already had that serves a key delivered at `delivered_at`: one made at
/// or after the delivery (its Pods were all made after the Secret held the key) and not after
/// `now` (a time in the future, which anyone who may edit the workload can write, proves nothing).
pub fn served_by(workload: &Workload, delivered_at: Timestamp, now: Timestamp) -> Option<Timestamp> {
    // An Argo Rollout's restart is recorded at the next whole second (see [`restart_time`]).
    let latest = match workload {
        Workload::Rollout(_) => restart_time(WorkloadKind::Rollout, now),
        _ => now,
    };
    workload.restarted_at().filter(|at| *at >= delivered_at && *at <= latest)
}

/// The time a restart at `now` is recorded as: for an Argo Rollout, whose spec.restartAt holds
/// whole seconds and which keeps Pods created in that second or later, the next whole second (so
/// that every Pod it keeps was made after `now`); `now` for the others.
pub fn restart_time(kind: WorkloadKind, now: Timestamp) -> Timestamp {
    match kind {
        WorkloadKind::Rollout => {
            let whole = Timestamp::from_second(now.as_second()).unwrap_or(now);
            if whole == now { now } else { whole.checked_add(SignedDuration::from_secs(1)).unwrap_or(now) }
        }
        _ => now,
    }
}

/// Where a target's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every Pod runs a template that includes the restart, and is available.
    Complete,
    /// Not yet, and why.
    Waiting(String),
}

/// The merge patch that restarts a workload of `kind` at `at` (see [`restart_time`]), made for
/// `made_for` (the restartedFor annotation). A Deployment, StatefulSet or DaemonSet gets a new Pod
/// template annotation, which makes its controller replace every Pod; an Argo Rollout a new
/// spec.restartAt, which makes the Argo Rollouts controller replace every Pod older than that.
/// With `resource_version`, the API server refuses the patch if the workload changed since it
/// was read (another key's restart), so that two keys never restart it one after the other.
pub fn restart_patch(
    kind: WorkloadKind,
    at: Timestamp,
    made_for: &str,
    resource_version: Option<&str>,
) -> serde_json::Value {
    let mut metadata = serde_json::json!({"annotations": {RESTARTED_FOR_ANNOTATION: made_for}});
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = version.into();
    }
    let spec = match kind {
        WorkloadKind::Rollout => serde_json::json!({"restartAt": argo_time(at)}),
        _ => serde_json::json!({"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at.to_string()}}}}),
    };
    serde_json::json!({"metadata": metadata, "spec": spec})
}

/// `at` as Kubernetes writes a metav1.Time: whole seconds, UTC.
fn argo_time(at: Timestamp) -> String {
    Timestamp::from_second(at.as_second()).unwrap_or(at).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether every Pod of `workload` was made after the restart at `restarted_at` (or a later one)
/// and is available, following `kubectl rollout status`. Pods that are still being replaced, or
/// that are not available yet, do not count.
pub fn progress(workload: &Workload, restarted_at: Timestamp) -> Progress {
    if workload.restarted_at().is_none_or(|at| at < restarted_at) {
        let carrier = match workload {
            Workload::Rollout(_) => "its spec.restartAt",
            _ => "its Pod template",
        };
        return Progress::Waiting(format!("{carrier} no longer carries the restart of {restarted_at}"));
    }
    let meta = match workload {
        Workload::Deployment(d) => d.meta(),
        Workload::StatefulSet(s) => s.meta(),
        Workload::DaemonSet(d) => d.meta(),
        Workload::Rollout(r) => &r.metadata,
    };
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
        Workload::Rollout(r) => argo_progress(r, generation, restarted_at),
    }
}

/// An Argo Rollout's progress after a restart, from the status its controller writes: it sets
/// status.restartedAt to spec.restartAt once every Pod was made at or after that time, and
/// status.phase to Healthy once the Rollout is fully available at its stable revision.
/// (status.observedGeneration is a string there.)
fn argo_progress(rollout: &DynamicObject, generation: i64, restarted_at: Timestamp) -> Progress {
    let status = rollout.data.get("status");
    let field = |name: &str| status.and_then(|s| s.get(name)).and_then(|v| v.as_str());
    let observed = field("observedGeneration").and_then(|g| g.parse::<i64>().ok()).unwrap_or(0);
    if observed < generation {
        return Progress::Waiting("waiting for the Argo Rollouts controller to see the restart".into());
    }
    let done = field("restartedAt").and_then(|t| t.parse::<Timestamp>().ok());
    if done.is_none_or(|done| done < Timestamp::from_second(restarted_at.as_second()).unwrap_or(restarted_at)) {
        return Progress::Waiting("Pods made before the restart are still being replaced (status.restartedAt)".into());
    }
    match field("phase") {
        Some("Healthy") => Progress::Complete,
        Some(phase) => {
            let message =
                field("message").map(|m| format!(": {}", crate::api::text::shorten(m, 200))).unwrap_or_default();
            Progress::Waiting(format!("the Rollout is {phase}{message}"))
        }
        None => Progress::Waiting("the Rollout reports no phase yet".into()),
    }
}

/// The rollout entries for a rotation that just retired a key: one per named target, none
/// restarted yet, and one per selector, to be matched (a workload both named and matched is
/// restarted and waited for once).
pub fn started(resource: &TwilioApiKey) -> Vec<RolloutTargetStatus> {
    let mut entries: Vec<RolloutTargetStatus> = Vec::new();
    for target in &resource.spec.rollout_restart_targets {
        let (name, selector, message) = match (&target.name, &target.selector) {
            (Some(name), _) => (name.clone(), None, "to be restarted"),
            (None, Some(selector)) => (String::new(), Some(selector_text(selector)), "to be matched"),
            (None, None) => continue,
        };
        if entries.iter().any(|e| e.kind == target.kind && e.name == name && e.selector == selector) {
            continue;
        }
        entries.push(RolloutTargetStatus {
            kind: target.kind,
            name,
            selector,
            complete: false,
            restarted_at: None,
            message: Some(message.into()),
            restart_failures: 0,
            next_restart_at: None,
        });
    }
    entries
}

/// Whether `entry` is still a target of the spec: its name is, or the selector that matched it.
pub fn in_spec(resource: &TwilioApiKey, entry: &RolloutTargetStatus) -> bool {
    resource.spec.rollout_restart_targets.iter().any(|t| t.kind == entry.kind && targets(t, entry))
}

fn targets(target: &RolloutRestartTarget, entry: &RolloutTargetStatus) -> bool {
    match (&entry.selector, &target.selector) {
        (Some(matched_by), Some(selector)) => *matched_by == selector_text(selector),
        _ => target.name.as_deref() == Some(entry.name.as_str()),
    }
}

/// Whether `entry` is a selector the operator has not matched yet.
pub fn unmatched(entry: &RolloutTargetStatus) -> bool {
    entry.name.is_empty() && entry.selector.is_some() && !entry.complete
}

/// The entries the retiring keys still wait for: targets the spec still has (by name, or by the
/// selector that matched them) whose rollout has not completed. Targets removed from the spec
/// are not waited for.
pub fn waiting<'a>(resource: &TwilioApiKey, status: &'a TwilioApiKeyStatus) -> Vec<&'a RolloutTargetStatus> {
    if status.retiring_keys.is_empty() {
        return vec![];
    }
    status.rollout.iter().filter(|e| !e.complete).filter(|e| in_spec(resource, e)).collect()
}

/// A label selector as `kubectl get -l` takes it, and the API server's labelSelector parameter:
/// `app=api,tier in (a,b),!legacy`. An empty selector is the empty string (everything).
pub fn selector_text(selector: &LabelSelector) -> String {
    let labels = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}"));
    let expressions = selector.match_expressions.iter().flatten().map(|e| {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        }
    });
    labels.chain(expressions).collect::<Vec<_>>().join(",")
}

/// What is wrong with a selector, by the rules the API server applies to a labelSelector (an
/// operator it knows, values exactly for In and NotIn); None when it is well formed.
pub fn selector_problem(selector: &LabelSelector) -> Option<String> {
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Some(format!("operator {} on {:?} needs at least one value", e.operator, e.key));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Some(format!("operator {} on {:?} takes no values", e.operator, e.key));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => return Some(format!("unknown operator {other:?} (In, NotIn, Exists or DoesNotExist)")),
        }
    }
    None
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
            format!("{}: {why} (tried {} times; next at {next})", entry_name(e), e.restart_failures)
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

/// "Deployment/a, StatefulSet/b" (a selector not matched yet as "Deployment(app=api)").
pub fn names(entries: &[&RolloutTargetStatus]) -> String {
    entries.iter().map(|e| entry_name(e)).collect::<Vec<_>>().join(", ")
}

/// "Deployment/a", or "Deployment(app=api)" for a selector not matched yet.
pub fn entry_name(entry: &RolloutTargetStatus) -> String {
    match (&entry.selector, entry.name.is_empty()) {
        (Some(selector), true) => format!("{}({selector})", entry.kind),
        _ => format!("{}/{}", entry.kind, entry.name),
    }
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
        .map(|e| format!("{}: {}", entry_name(e), e.message.as_deref().unwrap_or("not complete")))
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
    fn the_restart_patch_sets_the_template_annotation_or_restart_at_and_whom_it_was_for() {
        assert_eq!(
            restart_patch(WorkloadKind::Deployment, restarted_at(), "TwilioApiKey a (key SK1)", Some("42")),
            serde_json::json!({
                "metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: "TwilioApiKey a (key SK1)"}, "resourceVersion": "42"},
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: RESTART}}}}
            })
        );
        let late = "2026-01-01T00:00:00.25Z".parse::<Timestamp>().unwrap();
        let at = restart_time(WorkloadKind::Rollout, late);
        assert_eq!(at, "2026-01-01T00:00:01Z".parse::<Timestamp>().unwrap(), "the next whole second");
        assert_eq!(restart_time(WorkloadKind::Rollout, restarted_at()), restarted_at(), "already whole");
        assert_eq!(restart_time(WorkloadKind::StatefulSet, late), late);
        assert_eq!(
            restart_patch(WorkloadKind::Rollout, at, "x", None),
            serde_json::json!({
                "metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: "x"}},
                "spec": {"restartAt": "2026-01-01T00:00:01Z"}
            })
        );
    }

    fn argo_rollout(generation: i64, restart_at: Option<&str>, status: serde_json::Value) -> Workload {
        let mut spec = serde_json::json!({"replicas": 2});
        if let Some(at) = restart_at {
            spec["restartAt"] = at.into();
        }
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r", "generation": generation},
            "spec": spec, "status": status
        }))
        .unwrap();
        Workload::Rollout(object)
    }

    #[test]
    fn an_argo_rollout_is_complete_once_its_controller_restarted_every_pod_and_it_is_healthy() {
        let at = Some(RESTART);
        let status = |observed: &str, restarted: Option<&str>, phase: &str| {
            let mut s = serde_json::json!({"observedGeneration": observed, "phase": phase});
            if let Some(r) = restarted {
                s["restartedAt"] = r.into();
            }
            s
        };
        assert_eq!(progress(&argo_rollout(4, at, status("4", at, "Healthy")), restarted_at()), Progress::Complete);
        waiting_says(progress(&argo_rollout(4, at, status("3", at, "Healthy")), restarted_at()), "controller");
        waiting_says(progress(&argo_rollout(4, at, status("4", None, "Healthy")), restarted_at()), "restartedAt");
        let earlier = Some("2025-12-31T00:00:00Z");
        waiting_says(progress(&argo_rollout(4, at, status("4", earlier, "Healthy")), restarted_at()), "restartedAt");
        waiting_says(progress(&argo_rollout(4, at, status("4", at, "Degraded")), restarted_at()), "Degraded");
        waiting_says(progress(&argo_rollout(4, earlier, status("4", earlier, "Healthy")), restarted_at()), "restartAt");
        waiting_says(progress(&argo_rollout(4, at, serde_json::json!(null)), restarted_at()), "controller");
    }

    #[test]
    fn a_restart_made_after_a_delivery_and_not_in_the_future_serves_the_key() {
        let delivered = "2025-12-31T23:59:58Z".parse::<Timestamp>().unwrap();
        let now = "2026-01-01T00:00:05Z".parse::<Timestamp>().unwrap();
        let restarted = deployment(1, 2, Some(RESTART), deployment_status(2, 1, 1, 1));
        assert_eq!(served_by(&restarted, delivered, now), Some(restarted_at()));
        let before = "2026-01-01T00:00:01Z".parse::<Timestamp>().unwrap();
        assert_eq!(served_by(&restarted, before, now), None, "restarted before the key was written");
        let future = deployment(1, 2, Some("2030-01-01T00:00:00Z"), deployment_status(2, 1, 1, 1));
        assert_eq!(served_by(&future, delivered, now), None, "a restart time in the future proves nothing");
        assert_eq!(served_by(&deployment(1, 2, None, deployment_status(2, 1, 1, 1)), delivered, now), None);
        let rollout = argo_rollout(1, Some(RESTART), serde_json::json!({}));
        assert_eq!(served_by(&rollout, delivered, now), Some(restarted_at()));
    }

    fn resource_with(targets: serde_json::Value) -> TwilioApiKey {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "k", "namespace": "team"},
            "spec": {"accountRef": {"name": "main"}, "rolloutRestartTargets": targets}
        }))
        .unwrap()
    }

    #[test]
    fn a_rotation_names_its_targets_and_leaves_selectors_to_be_matched_once_each() {
        let resource = resource_with(serde_json::json!([
            {"kind": "Deployment", "name": "web"},
            {"kind": "Deployment", "selector": {"matchLabels": {"tier": "api"}, "matchExpressions": [
                {"key": "track", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]}},
            {"kind": "Rollout", "selector": {}},
            {"kind": "Deployment", "name": "web"}
        ]));
        let entries = started(&resource);
        let shown: Vec<String> = entries.iter().map(entry_name).collect();
        assert_eq!(shown, ["Deployment/web", "Deployment(tier=api,track in (a,b),!legacy)", "Rollout()"]);
        assert!(!unmatched(&entries[0]) && unmatched(&entries[1]) && unmatched(&entries[2]));
        // A workload matched by a selector is waited for while that selector stays in the spec.
        let matched = RolloutTargetStatus { name: "api-1".into(), ..entries[1].clone() };
        assert!(in_spec(&resource, &matched));
        let changed =
            resource_with(serde_json::json!([{"kind": "Deployment", "selector": {"matchLabels": {"tier": "web"}}}]));
        assert!(!in_spec(&changed, &matched), "another selector did not match it");
        assert!(!in_spec(&changed, &entries[0]), "no longer named");
    }

    #[test]
    fn malformed_selectors_are_named_before_the_api_server_sees_them() {
        let selector = |e: serde_json::Value| -> LabelSelector {
            serde_json::from_value(serde_json::json!({"matchExpressions": [e]})).unwrap()
        };
        assert_eq!(
            selector_problem(&selector(serde_json::json!({"key": "a", "operator": "In", "values": ["x"]}))),
            None
        );
        for (bad, says) in [
            (serde_json::json!({"key": "a", "operator": "In"}), "at least one value"),
            (serde_json::json!({"key": "a", "operator": "Exists", "values": ["x"]}), "no values"),
            (serde_json::json!({"key": "a", "operator": "Gt", "values": ["1"]}), "unknown operator"),
        ] {
            let problem = selector_problem(&selector(bad)).unwrap();
            assert!(problem.contains(says), "{problem}");
        }
    }
}
