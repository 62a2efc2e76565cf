//! One pass of a live resource: observe, plan, do, record.
//!
//! Before the plan is asked, what holds whatever the step is done: consumers of a rotated key
//! are followed, and old keys whose time has come are deleted. Then the resource is validated,
//! what the pass needs is observed, the plan names one step, and that step is carried out. A
//! step that finds another needed (the key it was to update is gone from Twilio) hands over to
//! it; no step calls another. Last, what the delivery left is finished and the resource is
//! woken at its next deadline.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::observe::{Observation, observe};
use super::outcome::Outcome;
use super::writes::key_api;
use super::{adopt, finish, issue, record, retire, revoke, rewrite, rollouts, settle, update};
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result, SecretHolder};
use crate::keys::plan::{self, Step};
use crate::keys::{status, validate};
use crate::runtime::context::Context;

pub(super) async fn apply(resource: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    if resource.spec.suspend {
        validate::validate(resource).map_err(|problem| Error::InvalidSpec { problem })?;
        return Ok(Action::await_change());
    }
    // The cache may lag behind a status this process just wrote; acting on the older one would
    // repeat a step (create, record, rename) already done.
    let uid = resource.uid().unwrap_or_default();
    if ctx.own_writes.wrote_another_status(&uid, resource.status.as_ref()) {
        if live_status(ctx, resource).await? != resource.status {
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        ctx.own_writes.forget_status_written(&uid);
    }
    // Consumers of a rotated key are restarted, and followed until they have rolled out; old keys
    // go when their grace period ends (and those rollouts are done), whatever else holds this
    // resource up.
    let followed = rollouts::follow_rollouts(resource, ctx).await?;
    let resource = followed.as_ref().unwrap_or(resource);
    let retired = retire::retire_due_keys(resource, ctx).await?;
    let resource = retired.as_ref().unwrap_or(resource);
    validate::validate(resource).map_err(|problem| Error::InvalidSpec { problem })?;

    let observation = observe(resource, ctx).await?;
    let mut step = plan::next_step(resource, &observation.observed);
    // A step hands over at most once (to a rotation, which never hands over).
    for _ in 0..2 {
        let status = match carry_out(&step, resource, ctx, &observation).await? {
            Outcome::Then(next) => {
                step = next;
                continue;
            }
            Outcome::Wake(action) => return Ok(action),
            Outcome::Recorded(status) => status,
            Outcome::Delivered(status) => {
                finish::finish_delivery(resource, ctx, &observation.connection, status).await?
            }
        };
        return Ok(next_wake(ctx, resource, &status));
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

async fn carry_out(step: &Step, resource: &TwilioApiKey, ctx: &Context, observation: &Observation) -> Result<Outcome> {
    let connection = &observation.connection;
    match step {
        Step::Conflict => {
            Err(Error::SecretConflict { secret: resource.desired_secret_name(), holder: SecretHolder::Existing })
        }
        Step::Adopt => adopt::adopt(resource, ctx, observation).await,
        Step::Revoke => revoke::revoke(resource, ctx, connection).await,
        Step::StayRevoked => revoke::stay_revoked(resource, ctx).await,
        Step::Create => issue::issue(resource, ctx, observation, None).await,
        Step::Rotate(cause) => issue::issue(resource, ctx, observation, Some(*cause)).await,
        Step::Record(sid) => record::record(resource, ctx, observation, sid).await,
        Step::UpdateInPlace => update::update_in_place(resource, ctx, connection).await,
        Step::RewriteSecret => rewrite::rewrite_secret(resource, ctx, observation).await,
        Step::UpToDate => settle::settle(resource, ctx, connection).await,
    }
}

/// The status as the API server holds it now (the cache may lag behind this process's writes).
async fn live_status(ctx: &Context, resource: &TwilioApiKey) -> Result<Option<TwilioApiKeyStatus>> {
    Ok(key_api(ctx, resource).get(&resource.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?.status)
}

/// Requeue at the next deadline in the status, or at the next resync.
fn next_wake(ctx: &Context, resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Action {
    Action::requeue(status::next_wake(resource, status, ctx.config.resync_interval, ctx.now()))
}
