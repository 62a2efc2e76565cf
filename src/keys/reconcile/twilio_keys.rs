//! The executor's deletions in Twilio: the resource's recorded keys, and the keys an interrupted
//! attempt of it left behind.

use std::time::Duration;

use kube::ResourceExt;

use crate::accounts::resolve;
use crate::api::{RetiringKey, TwilioApiKey};
use crate::error::{Error, Result};
use crate::keys::plan;
use crate::runtime::context::Context;
use crate::runtime::metrics::KeyOperation;
use crate::twilio::AccountConnection;

/// Deletes keys in Twilio, each in the account it belongs to, with the credential of the account
/// resource it was created through (404 counts as gone).
pub(super) async fn delete_keys(ctx: &Context, resource: &TwilioApiKey, keys: &[RetiringKey]) -> Result<()> {
    let namespace = resource.namespace().unwrap_or_default();
    for group in plan::deletion_groups(resource, keys) {
        // These keys are this resource's own: deleting them needs no permission to create keys in
        // the account (a ClusterTwilioAccount may no longer allow the namespace).
        let source = resolve::resolve_recorded(ctx, &namespace, &group.account_ref).await?;
        let connection = resolve::connect(ctx, &source).await?.for_tenant(&namespace);
        let connection = connection.for_key_account(group.account_sid.as_deref());
        for sid in &group.sids {
            // A key already gone (404) counts as deleted, but not as deleted by this call.
            if ctx.twilio.delete_key(&connection, sid).await.map_err(Error::twilio("delete key"))? {
                ctx.metrics.keys.operation(KeyOperation::Deleted);
            }
        }
    }
    Ok(())
}

/// Deletes keys that an interrupted earlier attempt of this resource created but never recorded:
/// keys of the account that still carry the resource's pending name and that its status does not
/// hold (nor `keep`). Twilio shows a secret only at creation, so such a key cannot be delivered;
/// deleting it is the only way not to leak it. No other key can match: the name holds this
/// resource's UID, and a spec cannot ask for a pending name.
///
/// The listing is the account's shared inventory: made after this process started, it holds
/// every key an earlier process created; after an unsure create in this process it is renewed.
pub(super) async fn sweep_orphans(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    keep: &[String],
) -> Result<()> {
    let uid = resource.uid().unwrap_or_default();
    let max_age = if ctx.inventories.create_was_unsure(&uid) { Duration::ZERO } else { ctx.config.resync_interval };
    let inventory =
        ctx.inventories.get(&ctx.twilio, connection, max_age, ctx.now()).await.map_err(Error::twilio("list keys"))?;
    let orphans = plan::orphaned_keys(resource, inventory.keys.values(), keep);
    for sid in &orphans {
        if !ctx.twilio.delete_key(connection, sid).await.map_err(Error::twilio("delete orphaned key"))? {
            continue; // gone already
        }
        ctx.metrics.keys.operation(KeyOperation::OrphanDeleted);
        ctx.metrics.keys.leaked_key_found();
        let note = format!("Deleted key {sid}, created by an interrupted attempt and never delivered");
        ctx.events.warning(resource, "OrphanKeyDeleted", "DeleteKey", note).await;
    }
    if !orphans.is_empty() {
        // The listing still shows them; the next user of it must list anew.
        ctx.inventories.forget(connection).await;
    }
    Ok(())
}
