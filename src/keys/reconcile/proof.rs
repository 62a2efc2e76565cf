//! What proves a key this resource's. A Secret is tenant-writable: a SID in it is a claim, and
//! only Twilio's answer turns it into a key the operator may record, rename or delete.

use kube::ResourceExt;

use crate::accounts::AccountSource;
use crate::api::{AccountKind, Adoption, PENDING_FRIENDLY_NAME_PREFIX, TwilioApiKey};
use crate::error::{AdoptionRefusal, Error, Result};
use crate::keys::secret::AdoptionClaim;
use crate::runtime::context::Context;
use crate::twilio::{AccountConnection, Key, TwilioError};

/// Whether Twilio shows `sid` as a key this resource created and has not recorded yet: one that
/// still carries the resource's pending name. Nothing else proves it: a Secret that names a SID
/// is only a claim.
pub(super) async fn created_by(
    ctx: &Context,
    connection: &AccountConnection,
    resource: &TwilioApiKey,
    sid: &str,
) -> Result<bool> {
    if !crate::api::is_key_sid(sid) {
        return Ok(false);
    }
    match ctx.twilio.fetch_key(connection, sid).await {
        Ok(found) => Ok(found.friendly_name.as_deref() == Some(resource.pending_friendly_name().as_str())),
        Err(TwilioError::NotFound { .. }) => Ok(false),
        Err(error) => Err(Error::twilio("fetch key")(error)),
    }
}

/// Whether the account lets its keys be adopted (spec.adoption): adopting a key makes the
/// operator able to delete it, on the strength of holding its secret, which on an account that
/// tenants share is a cluster administrator's call.
pub(super) fn adoption_allowed(resource: &TwilioApiKey, source: &AccountSource, secret: &str) -> Result<()> {
    if source.adoption == Adoption::Allowed {
        return Ok(());
    }
    let account_ref = &resource.spec.account_ref;
    let account = match account_ref.kind {
        AccountKind::TwilioAccount => {
            format!("TwilioAccount {}/{}", resource.namespace().unwrap_or_default(), account_ref.name)
        }
        AccountKind::ClusterTwilioAccount => format!("ClusterTwilioAccount {}", account_ref.name),
    };
    Err(Error::AdoptionRefused { secret: secret.to_string(), reason: AdoptionRefusal::AccountDisallows { account } })
}

/// The key a Secret claims, if this resource may adopt it: Twilio accepts the claimed SID and
/// secret themselves (see [`crate::twilio::TwilioClient::authenticates`]), the key exists in the
/// resource's account (fetched with the operator's credential), it is not being created for
/// another resource, and no other resource here records it. A Secret is tenant-writable: nothing
/// else it says is believed, and until the pair is proven a refusal says nothing learned from
/// the account or from other namespaces.
pub(super) async fn prove_adoption(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    api_base: &str,
    secret_name: &str,
    claim: &AdoptionClaim,
) -> Result<Key> {
    let refuse = |reason| Error::AdoptionRefused { secret: secret_name.to_string(), reason };
    let (sid, account) = (claim.sid.clone(), connection.account_sid.clone());
    let proven =
        ctx.twilio.authenticates(api_base, &account, &sid, &claim.secret).await.map_err(Error::twilio("prove key"))?;
    if !proven {
        return Err(refuse(AdoptionRefusal::NotProven { sid, account }));
    }
    let key = match ctx.twilio.fetch_key(connection, &sid).await {
        Ok(key) => key,
        Err(TwilioError::NotFound { .. }) => return Err(refuse(AdoptionRefusal::NotInAccount { sid, account })),
        Err(error) => return Err(Error::twilio("fetch key")(error)),
    };
    let name = key.friendly_name.as_deref().unwrap_or_default();
    if name.starts_with(PENDING_FRIENDLY_NAME_PREFIX) && name != resource.pending_friendly_name() {
        return Err(refuse(AdoptionRefusal::PendingForAnother { sid }));
    }
    if let Some(holder) = ctx.caches.key_holder(&sid, &resource.uid().unwrap_or_default()) {
        return Err(refuse(AdoptionRefusal::RecordedElsewhere { sid, holder }));
    }
    Ok(key)
}
