//! Consumers of a rotated key: the rollout restart targets of the latest rotation are restarted
//! (as `kubectl rollout restart` does) and followed until every Pod runs the new template, and
//! RolloutDelayed is raised once the rollout deadline has passed. Old keys wait for them (see
//! [`crate::keys::rollout`] for what counts as rolled out).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::writes::write_status;
use crate::api::conditions;
use crate::api::{FIELD_MANAGER, TwilioApiKey, WorkloadKind};
use crate::error::{Error, Result};
use crate::keys::{rollout, status};
use crate::runtime::context::Context;

/// Restarts the rollout restart targets of the latest rotation that have not been restarted yet,
/// reads how far the others have rolled out, and raises RolloutDelayed once the rollout deadline
/// has passed. Records all of it in the status; returns the resource with its new status, or
/// None when nothing changed. A target that is missing or may not be restarted is waited for
/// all the same (until maxGracePeriod): an old key is kept rather than risked.
pub(super) async fn follow_rollouts(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let delayed_before = previous
        .conditions
        .iter()
        .any(|c| c.type_ == rollout::ROLLOUT_DELAYED || c.type_ == rollout::ROLLOUT_TARGET_MISSING);
    if rollout::waiting(resource, &previous).is_empty() && !delayed_before {
        return Ok(None);
    }
    let namespace = resource.namespace().unwrap_or_default();
    let key_sid = previous.key_sid.clone().unwrap_or_default();
    let now = ctx.now();
    let mut status = previous.clone();
    let named =
        |kind, name: &str| resource.spec.rollout_restart_targets.iter().any(|t| t.kind == kind && t.name == name);
    for entry in status.rollout.iter_mut().filter(|e| !e.complete && named(e.kind, &e.name)) {
        let target = format!("{}/{}", entry.kind, entry.name);
        match entry.restarted_at.as_deref().and_then(|at| at.parse::<Timestamp>().ok()) {
            // A failed restart is tried again when its backoff ends, not on every pass.
            None if entry
                .next_restart_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t > now) => {}
            None => match restart_workload(ctx, &namespace, entry.kind, &entry.name, now).await? {
                Ok(()) => {
                    entry.restarted_at = Some(now.to_string());
                    entry.message = Some("restarted; waiting for its rollout".into());
                    entry.restart_failures = 0;
                    entry.next_restart_at = None;
                    let note = format!("Restarted {target} so that its Pods read key {key_sid}");
                    ctx.events.normal(resource, "RolloutRestarted", "RestartWorkload", note).await;
                }
                Err(why) => {
                    if entry.restart_failures == 0 {
                        let note = format!("Could not restart {target}: {why}; the old key is kept");
                        ctx.events.warning(resource, "RolloutRestartFailed", "RestartWorkload", note).await;
                    }
                    entry.restart_failures = entry.restart_failures.saturating_add(1);
                    let retry = rollout::restart_backoff(entry.restart_failures);
                    entry.next_restart_at = Some(now.checked_add(retry).unwrap_or(now).to_string());
                    entry.message = Some(why);
                }
            },
            Some(restarted_at) => {
                let progress = match read_workload(ctx, &namespace, entry.kind, &entry.name).await? {
                    Ok(workload) => rollout::progress(&workload, restarted_at),
                    Err(why) => rollout::Progress::Waiting(why),
                };
                match progress {
                    rollout::Progress::Complete => {
                        entry.complete = true;
                        entry.message = None;
                        let note =
                            format!("{target} rolled out: every Pod runs a template restarted for key {key_sid}");
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
            let (reason, note) = ("RolloutDeadlineExceeded", message.clone());
            if conditions::set_true(&mut status.conditions, rollout::ROLLOUT_DELAYED, reason, message, generation, now)
            {
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

/// Restarts a workload as `kubectl rollout restart` does. Ok(Err(why)) when it is missing or the
/// operator may not patch it; Err for failures worth retrying.
async fn restart_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    at: Timestamp,
) -> Result<std::result::Result<(), String>> {
    let patch = Patch::Merge(rollout::restart_patch(at));
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
    };
    workload_answer(result, kind, name, "restart").map_err(Error::kube("restart workload"))
}

/// Reads a workload. Ok(Err(why)) when it is missing or the operator may not read it.
async fn read_workload(
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
    };
    workload_answer(result, kind, name, "read").map_err(Error::kube("read workload"))
}

/// A workload call's answer: what the status should say when the workload is missing or out of
/// the operator's rights, an error for anything else.
fn workload_answer<T>(
    result: kube::Result<T>,
    kind: WorkloadKind,
    name: &str,
    verb: &str,
) -> kube::Result<std::result::Result<T, String>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Err(format!("{kind} {name} not found"))),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Err(format!(
            "the operator may not {verb} {kind} {name} (its RBAC grants get and patch on deployments, statefulsets and daemonsets)"
        ))),
        Err(error) => Err(error),
    }
}
