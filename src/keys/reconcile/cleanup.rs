//! Deletion of a TwilioApiKey: what its finalizer waits for.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::proof;
use super::twilio_keys::{delete_keys, sweep_orphans};
use super::writes::{delete_secret, owned_secrets, release_secret};
use crate::accounts::resolve;
use crate::api::ownership::{self, ObservedSecret};
use crate::api::{DeletionPolicy, TwilioApiKey};
use crate::error::{Error, Result};
use crate::keys::{plan, status};
use crate::runtime::context::Context;

/// On deletion: with Delete, every key of the resource is deleted in Twilio (404 counts as gone),
/// with any key an interrupted create left, and then the Secret; with Orphan, the key the Secret
/// delivers and the Secret stay, handed over (the Secret loses the marks that make it this
/// resource's), while retiring keys go as they would have. In a namespace that is being deleted
/// nothing can be handed over, since the Secret goes with the namespace: Orphan deletes too. The
/// finalizer is removed only after this succeeds. `resource` was just read from the API server
/// (see [`current`]): its status holds every key this process recorded.
pub(super) async fn cleanup(resource: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    let status = resource.status.clone().unwrap_or_default();
    let namespace = resource.namespace().unwrap_or_default();
    let owned_secrets = owned_secrets(ctx, resource, status::secret_names(resource, &status)).await?;
    let orphan =
        resource.spec.deletion_policy == DeletionPolicy::Orphan && !namespace_terminating(ctx, &namespace).await;
    // Keys this resource may have left under its pending name are looked for in its account; with
    // no usable account and nothing recorded, there is nothing it can reach to delete.
    let account_ref = status.account_ref.clone().unwrap_or_else(|| resource.spec.account_ref.clone());
    let connection = match resolve::resolve_recorded(ctx, &namespace, &account_ref).await {
        Ok(source) => resolve::connect(ctx, &source).await.map(|c| c.for_tenant(&namespace)),
        Err(error) => Err(error),
    };
    let connection = match connection {
        Ok(connection) => Some(connection),
        Err(error) if status::all_keys(resource, &status).is_empty() => {
            tracing::warn!(%error, "cleanup cannot reach the account to look for keys an interrupted create left");
            None
        }
        Err(error) => return Err(error),
    };
    // A key the Secret delivers but the status lacks (the status write after delivery was lost)
    // is handed over with the Secret once proven this resource's; other pending keys go.
    let mut handed_over = Vec::new();
    if let Some(connection) = &connection {
        if orphan {
            let account_sid = status.account_sid.clone().unwrap_or_else(|| connection.account_sid.clone());
            for secret in &owned_secrets {
                if let ObservedSecret::Owned { delivered: Some(sid), .. } =
                    ownership::observe(resource, Some(secret), &account_sid)
                    && status.key_sid.as_ref() != Some(&sid)
                    && proof::created_by(ctx, connection, resource, &sid).await?
                {
                    ctx.twilio
                        .update_key(connection, &sid, &resource.desired_friendly_name(), None)
                        .await
                        .map_err(Error::twilio("name key"))?;
                    handed_over.push(sid);
                }
            }
        }
        sweep_orphans(resource, ctx, connection, &handed_over).await?;
    }
    if orphan {
        // Only the key the Secret delivers is handed over: retiring keys were already on their
        // way out, and when a rotation was interrupted after its Secret write, the key the status
        // still calls current is delivered by no Secret either.
        let leaving = plan::leaving_on_orphan(resource, &status, &handed_over);
        if !leaving.is_empty() {
            delete_keys(ctx, resource, &leaving).await?;
        }
        for secret in &owned_secrets {
            if status.stale_secret_name.as_ref() == Some(&secret.name_any()) {
                delete_secret(ctx, resource, secret).await?;
            } else {
                release_secret(ctx, resource, secret).await?;
            }
        }
        let kept = handed_over.first().or(status.key_sid.as_ref()).map_or("(none)", String::as_str);
        let note = format!("deletionPolicy Orphan: key {kept} and its Secret are kept");
        ctx.events.normal(resource, "KeyOrphaned", "DeleteKey", note).await;
    } else {
        let keys = status::all_keys(resource, &status);
        if !keys.is_empty() {
            delete_keys(ctx, resource, &keys).await?;
            let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
            ctx.events
                .normal(resource, "KeyDeleted", "DeleteKey", format!("Deleted key(s) {} in Twilio", sids.join(", ")))
                .await;
        }
        for secret in &owned_secrets {
            delete_secret(ctx, resource, secret).await?;
        }
    }
    Ok(Action::await_change())
}

/// Whether the namespace is being deleted. Not knowing (e.g. no permission to read it) counts as
/// no: the resource's own deletionPolicy then holds.
async fn namespace_terminating(ctx: &Context, namespace: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(found) => found.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        Err(error) => {
            tracing::warn!(%error, "could not read the namespace; deletionPolicy Orphan holds");
            false
        }
    }
}
