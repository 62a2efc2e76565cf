//! The executor's writes to Kubernetes: the resource's status, and the Secrets it delivers into.
//!
//! A status that records a new key needs a [`Delivered`]: proof that a Secret holds that key,
//! which only a Secret write that succeeded (or a Secret observed delivering it) produces. So
//! "the Secret is written before the status records the key" is checked by the compiler: a
//! crash between the two leaves a Secret whose key the next pass records, never a status whose
//! key no Secret holds.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};

use crate::api::{FIELD_MANAGER, KEY_SID_ANNOTATION, TwilioApiKey, TwilioApiKeyStatus, ownership};
use crate::error::{Error, Result, SecretHolder};
use crate::keys::secret;
use crate::runtime::context::Context;

pub(super) fn key_api(ctx: &Context, resource: &TwilioApiKey) -> Api<TwilioApiKey> {
    Api::namespaced(ctx.client.clone(), &resource.namespace().unwrap_or_default())
}

pub(super) fn secrets(ctx: &Context, resource: &TwilioApiKey) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &resource.namespace().unwrap_or_default())
}

/// Proof that a Secret of the resource holds key `sid`.
#[derive(Debug)]
pub(super) struct Delivered {
    sid: String,
}

impl Delivered {
    /// A Secret observed delivering `sid` (its data intact, as the operator wrote it); what
    /// observation found, when a status write after an earlier delivery was lost.
    pub(super) fn observed(sid: &str) -> Self {
        Self { sid: sid.to_string() }
    }
}

/// Writes a status that records, as the current key, the one a Secret was just shown to hold
/// (whatever key `status` named: the proof decides).
pub(super) async fn record_delivery(
    ctx: &Context,
    resource: &TwilioApiKey,
    status: TwilioApiKeyStatus,
    delivered: Delivered,
) -> Result<TwilioApiKeyStatus> {
    debug_assert_eq!(status.key_sid.as_deref(), Some(delivered.sid.as_str()));
    let status = TwilioApiKeyStatus { key_sid: Some(delivered.sid), ..status };
    write_status(ctx, resource, &status).await?;
    Ok(status)
}

/// Writes a status that records no other key than the resource's status does (the key may go,
/// as on revocation; a new one needs [`record_delivery`]).
pub(super) async fn write_status(ctx: &Context, resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Result<()> {
    let value = serde_json::to_value(status).map_err(Error::Encode)?;
    // Replacing the whole status (a JSON patch that adds `/status`) removes the fields the new
    // status lacks, as server-side apply would, at a fraction of its cost to the API server. The
    // operator is the only writer of status.
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/status", "value": value}
    ]))
    .map_err(Error::Encode)?;
    let written = key_api(ctx, resource)
        .patch_status(&resource.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::kube("write status"))?;
    ctx.own_writes.note_status_written(&resource.uid().unwrap_or_default(), written.status.as_ref());
    Ok(())
}

pub(super) async fn write_status_if_changed(
    ctx: &Context,
    resource: &TwilioApiKey,
    status: &TwilioApiKeyStatus,
) -> Result<()> {
    if resource.status.as_ref() != Some(status) {
        write_status(ctx, resource, status).await?;
    }
    Ok(())
}

/// Whether a failed Secret write may have been carried out all the same.
pub(super) enum Written {
    No,
    Unknown,
}

pub(super) struct SecretWriteError {
    pub error: Error,
    pub written: Written,
}

/// Writes `desired` so that it holds key `sid`: created when no Secret has its name (`existing`
/// is None), so that of two resources racing for one name only one gets it; otherwise a patch of
/// `existing`, which must still be as it was read. A write whose outcome is unclear (a timeout, a
/// 5xx, a conflict) is judged by what the API server holds afterwards.
pub(super) async fn write_secret(
    ctx: &Context,
    resource: &TwilioApiKey,
    existing: Option<&Secret>,
    desired: &Secret,
    sid: &str,
) -> std::result::Result<Delivered, SecretWriteError> {
    let api = secrets(ctx, resource);
    let name = desired.name_any();
    let result = match existing {
        None => {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            api.create(&params, desired).await
        }
        Some(existing) => {
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            api.patch(&name, &params, &Patch::Merge(secret::update_patch(resource, existing, desired))).await
        }
    };
    let error = match result {
        Ok(written) => {
            ctx.own_writes.note_secret_write(&written);
            return Ok(Delivered { sid: sid.to_string() });
        }
        Err(error) => error,
    };
    if let kube::Error::Api(status) = &error
        && matches!(status.code, 400 | 403 | 422)
    {
        let error = Error::SecretRejected { secret: name, message: status.message.clone() };
        return Err(SecretWriteError { error, written: Written::No });
    }
    let error = Error::kube("write Secret")(error);
    match api.get_opt(&name).await {
        Ok(Some(now)) if ownership::is_owned(resource, &now) => {
            if now.annotations().get(KEY_SID_ANNOTATION).map(String::as_str) == Some(sid) {
                return Ok(Delivered { sid: sid.to_string() });
            }
            Err(SecretWriteError { error, written: Written::No })
        }
        Ok(Some(_)) => {
            let error = Error::SecretConflict { secret: name, holder: SecretHolder::CreatedMeanwhile };
            Err(SecretWriteError { error, written: Written::No })
        }
        Ok(None) => Err(SecretWriteError { error, written: Written::No }),
        Err(_) => Err(SecretWriteError { error, written: Written::Unknown }),
    }
}

/// Marks an existing Secret as this resource's with the merge `patch` (an adoption); proof that
/// it holds key `sid`.
pub(super) async fn patch_secret(
    ctx: &Context,
    resource: &TwilioApiKey,
    name: &str,
    patch: &serde_json::Value,
    sid: &str,
) -> Result<Delivered> {
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    let written =
        secrets(ctx, resource).patch(name, &params, &Patch::Merge(patch)).await.map_err(Error::kube("adopt Secret"))?;
    ctx.own_writes.note_secret_write(&written);
    Ok(Delivered { sid: sid.to_string() })
}

/// Hands the Secret over: it stays, without the marks that make it this resource's. The
/// resourceVersion makes the write fail rather than undo a change made meanwhile.
pub(super) async fn release_secret(ctx: &Context, resource: &TwilioApiKey, secret: &Secret) -> Result<()> {
    secrets(ctx, resource)
        .patch(&secret.name_any(), &PatchParams::default(), &Patch::Merge(&secret::release_patch(resource, secret)))
        .await
        .map_err(Error::kube("release Secret"))?;
    Ok(())
}

/// Deletes the Secret as it was read: if someone replaced it since (another UID or version), the
/// API server refuses, and the next pass looks again.
pub(super) async fn delete_secret(ctx: &Context, resource: &TwilioApiKey, secret: &Secret) -> Result<()> {
    let name = secret.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: secret.uid(), resource_version: secret.resource_version() }),
        ..DeleteParams::default()
    };
    match secrets(ctx, resource).delete(&name, &params).await {
        Ok(_) => {
            ctx.own_writes.note_secret_delete(&resource.namespace().unwrap_or_default(), &name);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete Secret")(e)),
    }
}

/// The Secrets of `names` that are this resource's, as they are now.
pub(super) async fn owned_secrets(ctx: &Context, resource: &TwilioApiKey, names: Vec<String>) -> Result<Vec<Secret>> {
    let mut owned = Vec::new();
    for name in names {
        if let Some(secret) = secrets(ctx, resource).get_opt(&name).await.map_err(Error::kube("read Secret"))?
            && ownership::is_owned(resource, &secret)
        {
            owned.push(secret);
        }
    }
    Ok(owned)
}
