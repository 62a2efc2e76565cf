//! What follows a delivery, in the pass that made it and in later ones until done.

use super::writes::{delete_secret, owned_secrets, write_status};
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::keys::status;
use crate::runtime::context::Context;
use crate::twilio::AccountConnection;

/// What follows a recorded delivery, retried by later passes until done: the Secret left under
/// an earlier name is deleted, and a key still carrying its pending name gets the name the spec
/// asks for. The status is written once, if either happened.
pub(super) async fn finish_delivery(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    status: TwilioApiKeyStatus,
) -> Result<TwilioApiKeyStatus> {
    let mut finished = status.clone();
    if let Some(stale) = status.stale_secret_name.as_ref().filter(|name| **name != resource.desired_secret_name()) {
        for secret in owned_secrets(ctx, resource, vec![stale.clone()]).await? {
            delete_secret(ctx, resource, &secret).await?;
        }
    }
    finished.stale_secret_name = None;
    let friendly_name = resource.desired_friendly_name();
    if let Some(sid) = status.key_sid.as_ref().filter(|_| status.friendly_name.as_ref() != Some(&friendly_name)) {
        ctx.twilio.update_key(connection, sid, &friendly_name, None).await.map_err(Error::twilio("name key"))?;
        finished.friendly_name = Some(friendly_name);
    }
    if finished == status {
        return Ok(status);
    }
    let finished = status::ready(resource, &finished, ctx.now());
    write_status(ctx, resource, &finished).await?;
    Ok(finished)
}
