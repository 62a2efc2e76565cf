//! What a pass of a live resource starts from: the account and credential it uses, the Secrets
//! that deliver its key, and what a Secret's claim to a key the status lacks turned out to be.
//! Everything the plan needs is here, so that it is asked once.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::proof;
use super::writes::secrets;
use crate::accounts::{AccountSource, resolve};
use crate::api::ownership::{self, ObservedSecret};
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::keys::plan::{self, Observed};
use crate::keys::secret;
use crate::runtime::context::Context;
use crate::twilio::{AccountConnection, Key};

pub(super) struct Observation {
    pub source: AccountSource,
    pub connection: AccountConnection,
    /// Where Twilio's REST API answers for the account (its Region and edge), to prove keys.
    pub api_base: String,
    /// The Secret that delivers the current key: at status.secretName, or the desired name.
    pub delivering_name: String,
    pub delivering_secret: Option<Secret>,
    /// The Secret at the desired name, when that differs from the delivering one.
    target_secret: Option<Option<Secret>>,
    pub observed: Observed,
    /// The key a Secret of the resource delivers and the status lacks, proven this resource's.
    pub claim: Option<ProvenClaim>,
}

impl Observation {
    /// The Secret at the name the spec asks for.
    pub fn at_desired_name(&self) -> Option<&Secret> {
        match &self.target_secret {
            None => self.delivering_secret.as_ref(),
            Some(target) => target.as_ref(),
        }
    }
}

/// How a key that a Secret delivers, and the status lacks, was proven this resource's.
pub(super) enum ProvenClaim {
    /// Twilio shows it under the resource's pending name: this resource created it, and the
    /// status write after its delivery was lost.
    Created,
    /// The Secret was marked as this resource's by an adoption whose status write was lost, and
    /// Twilio accepted its pair again.
    Adopted(Key),
}

pub(super) async fn observe(resource: &TwilioApiKey, ctx: &Context) -> Result<Observation> {
    let source = resolve::resolve_for_key(ctx, resource).await?;
    let connection = resolve::connect(ctx, &source).await?.for_tenant(&resource.namespace().unwrap_or_default());
    crate::keys::validate::key_type_in_region(resource, &connection.region, &connection.account_sid)
        .map_err(|problem| Error::InvalidSpec { problem })?;
    let status = resource.status.clone().unwrap_or_default();
    let desired_name = resource.desired_secret_name();
    let delivering_name = status.secret_name.clone().unwrap_or_else(|| desired_name.clone());
    let api = secrets(ctx, resource);
    let delivering_secret = api.get_opt(&delivering_name).await.map_err(Error::kube("read Secret"))?;
    let target_secret = match delivering_name == desired_name {
        true => None,
        false => Some(api.get_opt(&desired_name).await.map_err(Error::kube("read Secret"))?),
    };
    let delivered_account = status.account_sid.clone().unwrap_or_else(|| connection.account_sid.clone());
    let observed = Observed {
        delivering: ownership::observe(resource, delivering_secret.as_ref(), &delivered_account),
        target: target_secret.as_ref().map(|s| ownership::observe(resource, s.as_ref(), &connection.account_sid)),
        account_sid: connection.account_sid.clone(),
        region: connection.region.clone(),
        now: ctx.now(),
    };
    let api_base = ctx.twilio.endpoint().api_base(source.region.as_deref(), source.edge.as_deref());
    let mut observation = Observation {
        source,
        connection,
        api_base,
        delivering_name,
        delivering_secret,
        target_secret,
        observed,
        claim: None,
    };
    check_secret_type(resource, observation.at_desired_name())?;
    judge_claim(resource, ctx, &status, &mut observation).await?;
    Ok(observation)
}

/// Kubernetes does not let a Secret's type change; say so before anything is done for it.
fn check_secret_type(resource: &TwilioApiKey, at_desired_name: Option<&Secret>) -> Result<()> {
    let Some(found) = at_desired_name.filter(|s| ownership::is_owned(resource, s)) else {
        return Ok(());
    };
    let found_type = found.type_.as_deref().unwrap_or(secret::DEFAULT_TYPE);
    if found_type == secret::desired_type(resource) {
        return Ok(());
    }
    let message = format!(
        "its type is {found_type}, and a Secret's type cannot change to {} (delete the Secret to have it made anew, with a new key)",
        secret::desired_type(resource)
    );
    Err(Error::SecretRejected { secret: found.name_any(), message })
}

/// A Secret of the resource that delivers a key the status lacks makes a claim: proven (by
/// Twilio) it is recorded; otherwise it is ignored and the Secret is treated as altered.
async fn judge_claim(
    resource: &TwilioApiKey,
    ctx: &Context,
    status: &TwilioApiKeyStatus,
    observation: &mut Observation,
) -> Result<()> {
    // Judged only when the plan would record it.
    let Some(sid) = plan::unrecorded_claim(resource, &observation.observed).map(str::to_string) else {
        return Ok(());
    };
    if proof::created_by(ctx, &observation.connection, resource, &sid).await? {
        observation.claim = Some(ProvenClaim::Created);
        return Ok(());
    }
    // An adoption that marked the Secret as this resource's and stopped before the status
    // recorded the key: proven again, it is recorded. Only while the resource has no key: a
    // Secret never swaps the key a resource has for another.
    let connection = &observation.connection;
    if resource.spec.secret.adopt
        && status.key_sid.is_none()
        && let Some(found) = observation.delivering_secret.as_ref()
        && let Ok(claim) = secret::adoption_claim(resource, found, &connection.account_sid)
        && claim.sid == sid
    {
        let name = &observation.delivering_name;
        proof::adoption_allowed(resource, &observation.source, name)?;
        let key = proof::prove_adoption(resource, ctx, connection, &observation.api_base, name, &claim).await?;
        observation.claim = Some(ProvenClaim::Adopted(key));
        return Ok(());
    }
    // A Secret is tenant-writable: a SID in it that this resource cannot be shown to have
    // created is ignored, and the Secret is treated as altered.
    let note = format!(
        "Secret {} names key {sid}, which this resource did not create; the Secret is treated as altered",
        observation.delivering_name
    );
    ctx.events.warning(resource, "SecretClaimRejected", "RecordKey", note).await;
    if let ObservedSecret::Owned { delivered, .. } = &mut observation.observed.delivering {
        *delivered = None;
    }
    Ok(())
}
