//! Consumers of a rotated key: the rollout restart targets of the latest rotation are matched
//! (selectors), restarted (as `kubectl rollout restart` does, or through an Argo Rollout's
//! spec.restartAt) and followed until every Pod was made after the restart, and RolloutDelayed
//! is raised once the rollout deadline has passed. Old keys wait for them (see
//! [`crate::keys::rollout`] for what counts as rolled out).
//!
//! Restarts wait `--rollout-restart-delay` after the key's delivery, so that keys rotated
//! together are all delivered first; then a workload that another key's restart already
//! replaced after this key's delivery is not restarted again (the restart is shared), and a
//! restart is sent with the workload's resourceVersion, so that two keys restarting it at the
//! same instant make one restart, not two.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::writes::write_status;
use crate::api::conditions;
use crate::api::{FIELD_MANAGER, RolloutTargetStatus, TwilioApiKey, WorkloadKind};
use crate::error::{Error, Result};
use crate::keys::{rollout, status};
use crate::runtime::context::Context;
use crate::runtime::metrics::RestartOutcome;

/// What one rotation's restarts are for: the resource, its key, and when the key was delivered.
struct Rotation<'a> {
    resource: &'a TwilioApiKey,
    namespace: String,
    key_sid: String,
    delivered_at: Timestamp,
    /// Not before this are workloads matched and restarted (the delivery and the restart delay).
    restart_from: Timestamp,
    now: Timestamp,
}

/// Matches the selectors of the latest rotation, restarts its targets that have not been
/// restarted yet, reads how far the others have rolled out, and raises RolloutDelayed once the
/// rollout deadline has passed. Records all of it in the status; returns the resource with its
/// new status, or None when nothing changed. A target that is missing or may not be restarted
/// is waited for all the same (until maxGracePeriod): an old key is kept rather than risked.
pub(super) async fn follow_rollouts(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let delayed_before = previous
        .conditions
        .iter()
        .any(|c| c.type_ == rollout::ROLLOUT_DELAYED || c.type_ == rollout::ROLLOUT_TARGET_MISSING);
    if rollout::waiting(resource, &previous).is_empty() && !delayed_before {
        return Ok(None);
    }
    let now = ctx.now();
    let delivered_at = previous.key_created_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(now);
    let delay = SignedDuration::try_from(ctx.config.rollout_restart_delay).unwrap_or(SignedDuration::ZERO);
    let rotation = Rotation {
        resource,
        namespace: resource.namespace().unwrap_or_default(),
        key_sid: previous.key_sid.clone().unwrap_or_default(),
        delivered_at,
        restart_from: delivered_at.checked_add(delay).unwrap_or(delivered_at),
        now,
    };
    let mut status = previous.clone();
    status.rollout = match_selectors(ctx, &rotation, status.rollout).await?;
    for entry in status.rollout.iter_mut().filter(|e| !e.complete && !rollout::unmatched(e)) {
        if !rollout::in_spec(resource, entry) {
            continue;
        }
        match entry.restarted_at.as_deref().and_then(|at| at.parse::<Timestamp>().ok()) {
            None if !due(entry, &rotation) => {}
            None => restart(ctx, &rotation, entry).await?,
            Some(restarted_at) => {
                let target = rollout::entry_name(entry);
                let progress = match read_workload(ctx, &rotation.namespace, entry.kind, &entry.name).await? {
                    // Any restart made since the delivery serves the key, its own or a later or
                    // concurrent one made for another key: the Pods must all be newer than that.
                    Ok(workload) => {
                        let serving = rollout::served_by(&workload, rotation.delivered_at, ctx.now());
                        rollout::progress(&workload, serving.unwrap_or(restarted_at))
                    }
                    Err(why) => rollout::Progress::Waiting(why),
                };
                match progress {
                    rollout::Progress::Complete => {
                        entry.complete = true;
                        entry.message = None;
                        let note = format!(
                            "{target} rolled out: every Pod was made after its restart for key {}",
                            rotation.key_sid
                        );
                        ctx.events.normal(resource, "RolloutComplete", "WatchRollout", note).await;
                    }
                    rollout::Progress::Waiting(why) => entry.message = Some(why),
                }
            }
        }
    }
    let waited_for = rollout::names(&rollout::waiting(resource, &previous));
    let waiting_for = rollout::names(&rollout::waiting(resource, &status));
    if !waited_for.is_empty() && waiting_for.is_empty() {
        status = status::rolled_out(resource, &status, now);
    } else if waited_for != waiting_for && conditions::ready_of(&status.conditions) == Some(("True", "KeyReady")) {
        // Some targets rolled out: the Ready message names only those still waited for.
        status = status::ready(resource, &status, now);
    }
    match rollout::delayed(resource, &status, ctx.config.rollout_deadline, now) {
        Some(message) => {
            let generation = resource.meta().generation;
            let note = message.clone();
            if conditions::set_true(
                &mut status.conditions,
                rollout::ROLLOUT_DELAYED,
                "RolloutDeadlineExceeded",
                message,
                generation,
                now,
            ) {
                ctx.events.warning(resource, "RolloutDelayed", "WatchRollout", note).await;
            }
        }
        None => status.conditions.retain(|c| c.type_ != rollout::ROLLOUT_DELAYED),
    }
    rollout::set_target_missing(resource, &mut status, now);
    if status == previous {
        return Ok(None);
    }
    write_status(ctx, resource, &status).await?;
    let mut updated = resource.clone();
    updated.status = Some(status);
    Ok(Some(updated))
}

/// Whether an entry not restarted (or matched) yet is to be now: the restart delay after the
/// delivery has passed, and the backoff after a failure has ended. The first time it is not, the
/// entry says when it will be.
fn due(entry: &mut RolloutTargetStatus, rotation: &Rotation<'_>) -> bool {
    if let Some(retry_at) = entry.next_restart_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
        return retry_at <= rotation.now;
    }
    if rotation.now < rotation.restart_from {
        entry.next_restart_at = Some(rotation.restart_from.to_string());
        let what = if rollout::unmatched(entry) { "matched and restarted" } else { "restarted" };
        entry.message = Some(format!(
            "to be {what} at {}, so that keys rotated with this one share the restart",
            rotation.restart_from
        ));
        return false;
    }
    true
}

/// The rollout entries with every selector whose time has come matched: the workloads it
/// selects now are added (those the rotation targets already, by name or another selector, once),
/// at most [`rollout::MAX_WORKLOADS`] in all; the selector's entry stays, complete, saying
/// what it matched.
async fn match_selectors(
    ctx: &Context,
    rotation: &Rotation<'_>,
    mut entries: Vec<RolloutTargetStatus>,
) -> Result<Vec<RolloutTargetStatus>> {
    for i in 0..entries.len() {
        if !rollout::unmatched(&entries[i])
            || !rollout::in_spec(rotation.resource, &entries[i])
            || !due(&mut entries[i], rotation)
        {
            continue;
        }
        let kind = entries[i].kind;
        let selector = entries[i].selector.clone().unwrap_or_default();
        let Matched { names, more } = match list_workloads(ctx, &rotation.namespace, kind, &selector).await? {
            Ok(matched) => matched,
            Err(why) => {
                fail(ctx, rotation, &mut entries[i], why).await;
                continue;
            }
        };
        let targeted: HashSet<(WorkloadKind, String)> =
            entries.iter().filter(|e| !e.name.is_empty()).map(|e| (e.kind, e.name.clone())).collect();
        let room = rollout::MAX_WORKLOADS.saturating_sub(targeted.len());
        let fresh: Vec<String> = names.iter().filter(|n| !targeted.contains(&(kind, (*n).clone()))).cloned().collect();
        let (taken, left_out) = fresh.split_at(fresh.len().min(room));
        let listed = crate::api::text::shorten(&names.join(", "), 512);
        let mut summary = match (names.len(), more) {
            (0, _) => format!("matched no {kind} at the rotation"),
            (n, false) => format!("matched {n} at the rotation: {listed}"),
            (n, true) => format!("matched more than {n} at the rotation, the first: {listed}"),
        };
        if !left_out.is_empty() || more {
            let left = if more { "the others".to_string() } else { left_out.len().to_string() };
            summary.push_str(&format!(
                "; {left} not restarted: a rotation restarts at most {} workloads",
                rollout::MAX_WORKLOADS
            ));
            let note = format!(
                "Selector {selector:?} matched more {kind}s than a rotation restarts ({}): {left} are not restarted, and the old key does not wait for them",
                rollout::MAX_WORKLOADS
            );
            ctx.events.warning(rotation.resource, "RolloutTargetsLimited", "MatchWorkloads", note).await;
        }
        let entry = &mut entries[i];
        entry.complete = true;
        entry.message = Some(summary);
        entry.next_restart_at = None;
        entry.restart_failures = 0;
        for name in taken {
            entries.push(RolloutTargetStatus {
                kind,
                name: name.clone(),
                selector: Some(selector.clone()),
                complete: false,
                restarted_at: None,
                message: Some("to be restarted".into()),
                restart_failures: 0,
                next_restart_at: None,
            });
        }
    }
    Ok(entries)
}

/// Restarts the entry's workload for the rotation's key, unless a restart made after the key
/// was delivered already serves it. A restart refused because the workload changed since it was
/// read (another key restarting it) looks again, at most three times in this pass.
async fn restart(ctx: &Context, rotation: &Rotation<'_>, entry: &mut RolloutTargetStatus) -> Result<()> {
    let target = rollout::entry_name(entry);
    let resource = rotation.resource;
    for _ in 0..3 {
        let workload = match read_workload(ctx, &rotation.namespace, entry.kind, &entry.name).await? {
            Ok(workload) => workload,
            Err(why) => {
                fail(ctx, rotation, entry, why).await;
                return Ok(());
            }
        };
        // Now, not the pass's start: a restart another key made a moment ago serves this one too.
        let now = ctx.now();
        if let Some(at) = rollout::served_by(&workload, rotation.delivered_at, now) {
            let whom =
                workload.restarted_for().map(crate::api::text::printable).unwrap_or_else(|| "another change".into());
            let whom = crate::api::text::shorten(&whom, 256);
            entry.restarted_at = Some(at.to_string());
            entry.message =
                Some(format!("restarted at {at} for {whom}, which serves this key too; waiting for its rollout"));
            entry.restart_failures = 0;
            entry.next_restart_at = None;
            ctx.metrics.keys.rollout_restart(entry.kind, RestartOutcome::Shared);
            let note = format!(
                "{target} was restarted at {at} for {whom}, after key {} was in its Secret: that restart serves this key too, and {target} is not restarted again",
                rotation.key_sid
            );
            ctx.events.normal(resource, "RolloutRestartShared", "RestartWorkload", note).await;
            return Ok(());
        }
        let at = rollout::restart_time(entry.kind, now);
        let made_for = format!("TwilioApiKey {} (key {})", resource.name_any(), rotation.key_sid);
        let patch = rollout::restart_patch(entry.kind, at, &made_for, workload.resource_version());
        match patch_workload(ctx, &rotation.namespace, entry.kind, &entry.name, patch).await? {
            Answer::Done(()) => {
                entry.restarted_at = Some(at.to_string());
                entry.message = Some("restarted; waiting for its rollout".into());
                entry.restart_failures = 0;
                entry.next_restart_at = None;
                ctx.metrics.keys.rollout_restart(entry.kind, RestartOutcome::Restarted);
                let note = format!("Restarted {target} so that its Pods read key {}", rotation.key_sid);
                ctx.events.normal(resource, "RolloutRestarted", "RestartWorkload", note).await;
                return Ok(());
            }
            Answer::Changed => continue,
            Answer::Refused(why) => {
                fail(ctx, rotation, entry, why).await;
                return Ok(());
            }
        }
    }
    // Someone keeps changing the workload (whoever may edit it can): try again after the first
    // backoff step, not at once, so that this cannot keep the operator busy.
    let retry_at = rotation.now.checked_add(rollout::restart_backoff(1)).unwrap_or(rotation.now);
    entry.next_restart_at = Some(retry_at.to_string());
    entry.message = Some(format!("changed while being restarted; trying again at {retry_at}"));
    Ok(())
}

/// Records that the entry's workload could not be matched or restarted: retried with backoff,
/// with a Warning Event the first time.
async fn fail(ctx: &Context, rotation: &Rotation<'_>, entry: &mut RolloutTargetStatus, why: String) {
    let target = rollout::entry_name(entry);
    if entry.restart_failures == 0 {
        let note = format!("Could not restart {target}: {why}; the old key is kept");
        ctx.events.warning(rotation.resource, "RolloutRestartFailed", "RestartWorkload", note).await;
        ctx.metrics.keys.rollout_restart(entry.kind, RestartOutcome::Failed);
    }
    entry.restart_failures = entry.restart_failures.saturating_add(1);
    let retry = rollout::restart_backoff(entry.restart_failures);
    entry.next_restart_at = Some(rotation.now.checked_add(retry).unwrap_or(rotation.now).to_string());
    entry.message = Some(why);
}

/// A workload call's answer.
enum Answer<T> {
    Done(T),
    /// The workload changed since it was read (resourceVersion precondition).
    Changed,
    /// It is missing, or out of the operator's rights: what the status says.
    Refused(String),
}

async fn patch_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    patch: serde_json::Value,
) -> Result<Answer<()>> {
    let patch = Patch::Merge(patch);
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let client = ctx.client.clone();
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
        WorkloadKind::Rollout => argo_rollouts(ctx, namespace).patch(name, &params, &patch).await.map(drop),
    };
    workload_answer(result, kind, name, "restart").map_err(Error::kube("restart workload"))
}

/// Restarts a workload with `patch` (for the account's auth token rotation). Ok(Err(why)) when
/// it is missing, out of the operator's rights, or changed while being patched.
pub(crate) async fn restart_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    patch: serde_json::Value,
) -> Result<std::result::Result<(), String>> {
    Ok(match patch_workload(ctx, namespace, kind, name, patch).await? {
        Answer::Done(()) => Ok(()),
        Answer::Refused(why) => Err(why),
        Answer::Changed => Err(format!("{kind} {name} changed while being restarted")),
    })
}

/// Reads a workload. Ok(Err(why)) when it is missing or the operator may not read it.
pub(crate) async fn read_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<std::result::Result<rollout::Workload, String>> {
    let client = ctx.client.clone();
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace).get(name).await.map(rollout::Workload::Deployment)
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace).get(name).await.map(rollout::Workload::StatefulSet)
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client, namespace).get(name).await.map(rollout::Workload::DaemonSet)
        }
        WorkloadKind::Rollout => argo_rollouts(ctx, namespace).get(name).await.map(rollout::Workload::Rollout),
    };
    match workload_answer(result, kind, name, "read").map_err(Error::kube("read workload"))? {
        Answer::Done(workload) => Ok(Ok(workload)),
        Answer::Refused(why) => Ok(Err(why)),
        Answer::Changed => Ok(Err(format!("{kind} {name} changed while being read"))),
    }
}

/// What a selector matched: the first names, in name order, and whether there are more.
struct Matched {
    names: Vec<String>,
    more: bool,
}

/// The names of the workloads of `kind` in `namespace` whose labels match `selector`, in name
/// order, at most one more than a rotation restarts (only their metadata is read).
async fn list_workloads(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    selector: &str,
) -> Result<std::result::Result<Matched, String>> {
    let params = ListParams::default().labels(selector).limit(rollout::MAX_WORKLOADS as u32 + 1);
    let client = ctx.client.clone();
    fn names<K: Clone>(list: kube::core::ObjectList<kube::core::PartialObjectMeta<K>>) -> Matched {
        let more = list.metadata.continue_.as_deref().is_some_and(|c| !c.is_empty());
        Matched { names: list.items.into_iter().filter_map(|item| item.metadata.name).collect(), more }
    }
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace).list_metadata(&params).await.map(names)
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace).list_metadata(&params).await.map(names)
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client, namespace).list_metadata(&params).await.map(names)
        }
        WorkloadKind::Rollout => argo_rollouts(ctx, namespace).list_metadata(&params).await.map(names),
    };
    let what = format!("selector {selector:?}");
    match workload_answer(result, kind, &what, "list").map_err(Error::kube("list workloads"))? {
        Answer::Done(names) => Ok(Ok(names)),
        Answer::Refused(why) => Ok(Err(why)),
        Answer::Changed => Ok(Err(format!("listing {kind}s by {what} conflicted"))),
    }
}

fn argo_rollouts(ctx: &Context, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), namespace, &rollout::argo_rollout_resource())
}

/// A workload call's answer: what the status should say when the workload is missing or out of
/// the operator's rights, Changed on a conflict, an error for anything else.
fn workload_answer<T>(result: kube::Result<T>, kind: WorkloadKind, name: &str, verb: &str) -> kube::Result<Answer<T>> {
    let rights = match kind {
        WorkloadKind::Rollout => {
            "enable rbac.argoRollouts in the chart to grant get, list and patch on rollouts.argoproj.io"
        }
        _ => "its RBAC grants get, list and patch on deployments, statefulsets and daemonsets",
    };
    match result {
        Ok(value) => Ok(Answer::Done(value)),
        Err(kube::Error::Api(status)) if status.code == 404 && kind == WorkloadKind::Rollout => {
            Ok(Answer::Refused(format!("{kind} {name} not found (or Argo Rollouts' CRD is not installed)")))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Answer::Refused(format!("{kind} {name} not found"))),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            Ok(Answer::Refused(format!("the operator may not {verb} {kind} {name} ({rights})")))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Answer::Changed),
        Err(error) => Err(error),
    }
}
