//! Reconciliation of TwilioApiKey, the executor of [`crate::keys::plan`]: one step toward the
//! desired state per pass, each external effect recorded before the next.
//!
//! - this module: the entry point, through kube's finalizer helper;
//! - [`pass`]: one pass of a live resource, as observe ([`observe`]), plan, do (a module per
//!   kind of step: [`issue`], [`record`], [`adopt`], [`update`], [`rewrite`], [`settle`],
//!   [`revoke`]), record ([`finish`]), with what holds whatever the step ([`rollouts`],
//!   [`retire`]);
//! - deletion, in [`cleanup`];
//! - failures, reported as conditions, Events and retries by [`report`];
//! - what steps share: [`proof`] (what proves a key this resource's), [`writes`] (status and
//!   Secret writes), [`twilio_keys`] (deletions in Twilio), [`outcome`].

mod adopt;
mod cleanup;
mod finish;
mod issue;
mod observe;
mod outcome;
mod pass;
mod proof;
mod record;
mod report;
mod retire;
mod revoke;
mod rewrite;
pub(crate) mod rollouts;
mod settle;
#[cfg(test)]
mod tests;
mod twilio_keys;
mod update;
mod writes;

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};

use crate::api::{FINALIZER, TwilioApiKey};
use crate::error::{Error, Result};
use crate::keys::held;
use crate::runtime::context::Context;
use report::{KIND, report};
use writes::key_api;

#[tracing::instrument(name = "reconcile", skip_all, fields(kind = KIND, namespace = %resource.namespace().unwrap_or_default(), object = %resource.name_any()))]
pub async fn reconcile(resource: Arc<TwilioApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let label = |result: &Result<Action>| result.as_ref().err().map_or("ok", Error::label);
    let result = ctx.metrics.reconcile.timed(KIND, reconcile_counted(&ctx, &resource), label).await;
    match (&result, resource.meta().deletion_timestamp.is_some()) {
        // Cleaned up: the finalizer is gone and so, soon, is the resource.
        (Ok(_), true) => ctx.forget_resource(&resource.uid().unwrap_or_default()),
        (Ok(_), false) => ctx.backoff.reset(resource.as_ref()),
        (Err(_), _) => {}
    }
    result
}

/// The pass, its errors counted: those of apply and cleanup by `report`, those of adding or
/// removing the finalizer (before or after them) here.
async fn reconcile_counted(ctx: &Arc<Context>, resource: &Arc<TwilioApiKey>) -> Result<Action> {
    // A spec too large to hold was stripped in the cache (see keys::held); nothing is done for it
    // until it shrinks. Deletion reads the whole resource from the API server, and cleans up.
    let oversized = resource.meta().deletion_timestamp.is_none().then(|| held::oversized(resource)).flatten();
    let result = match oversized {
        Some(problem) => report(ctx, resource, Err(Error::InvalidSpec { problem })).await,
        None => reconcile_current(ctx, resource.clone()).await,
    };
    if let Err(Error::Finalizer(inner)) = &result
        && !matches!(**inner, FinalizerError::ApplyFailed(_) | FinalizerError::CleanupFailed(_))
    {
        ctx.metrics.reconcile.error(KIND, "finalizer");
    }
    result
}

/// Apply or cleanup, through kube's finalizer helper, of the resource as it is now.
async fn reconcile_current(ctx: &Arc<Context>, resource: Arc<TwilioApiKey>) -> Result<Action> {
    let ctx = ctx.as_ref();
    match current(ctx, resource).await {
        Ok(Some(current)) => finalizer(&key_api(ctx, &current), FINALIZER, current.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(resource) => report(ctx, &resource, pass::apply(&resource, ctx).await).await,
                FinalizerEvent::Cleanup(resource) => {
                    report(ctx, &resource, cleanup::cleanup(&resource, ctx).await).await
                }
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e))),
        Ok(None) => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}

/// The resource to work on, or None if it is gone.
///
/// Being deleted, it is read from the API server: the cache can still show a resource whose
/// cleanup an earlier pass finished (its finalizer removed), and cleaning up again from that
/// snapshot would act on a status and Secrets that are history (a key just handed over could
/// look like one to delete).
///
/// Lacking the finalizer, it gets it (before anything exists that it must clean up), and the pass
/// goes on with the resource as the API server returned it. kube's finalizer helper would end the
/// pass there and wait for the watch to bring the change back: one more round trip and a second
/// turn in the queue for every new resource. The echo is not a change (see OwnWrites).
async fn current(ctx: &Context, resource: Arc<TwilioApiKey>) -> Result<Option<Arc<TwilioApiKey>>> {
    if resource.meta().deletion_timestamp.is_some() {
        let live =
            key_api(ctx, &resource).get_opt(&resource.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?;
        return Ok(live.filter(|live| live.uid() == resource.uid()).map(Arc::new));
    }
    if resource.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Some(resource));
    }
    // As kube's helper does: the test makes the patch fail, rather than add the finalizer twice,
    // if the finalizers changed since the resource was read.
    let operations = match resource.finalizers() {
        [] => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        present => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": present},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(operations).map_err(Error::Encode)?;
    let patched = key_api(ctx, &resource)
        .patch(&resource.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| Error::Finalizer(Box::new(FinalizerError::AddFinalizer(e))))?;
    ctx.own_writes.note_key_write(&patched);
    Ok(Some(Arc::new(patched)))
}

pub fn error_policy(resource: Arc<TwilioApiKey>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(resource.as_ref(), error.retry_cap());
    tracing::warn!(%error, ?delay, "reconciliation failed; retrying");
    Action::requeue(delay)
}
