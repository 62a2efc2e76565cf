//! Accounts: the two kinds that hold the credentials the operator acts with, seen the same way.
//!
//! - `resolve`: which account and credential a key uses, with tenant isolation (for keys).
//! - `reconcile`: the controller that verifies an account's credential and keeps the account and
//!   its credentials Secret until no key needs them.

pub mod census;
pub mod reconcile;
pub mod resolve;
pub mod rotation;

use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{
    AccountKind, Adoption, AllowedNamespaces, ClusterTwilioAccount, CredentialKeys, CredentialRotationSpec,
    TwilioAccount, TwilioAccountStatus,
};

/// On a credentials Secret: it stays while an account that uses it still has keys to delete.
pub const CREDENTIALS_FINALIZER: &str = "twilio-operator.dev/credentials-in-use";

/// Where an account lives and where its credential is stored, whichever kind declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountSource {
    pub account_sid: String,
    pub region: Option<String>,
    pub edge: Option<String>,
    pub secret_namespace: String,
    pub secret_name: String,
    pub keys: CredentialKeys,
    /// Whether keys of the account may be adopted (spec.adoption).
    pub adoption: Adoption,
}

/// The two account kinds, seen the same way by the code that verifies and uses them.
pub trait AccountResource:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    const ACCOUNT_KIND: AccountKind;
    fn source(&self) -> AccountSource;
    fn account_status(&self) -> Option<&TwilioAccountStatus>;
    fn api(&self, client: kube::Client) -> Api<Self>;
    /// The namespaces whose keys may use the account, beyond its own (a TwilioAccount serves its
    /// own namespace only): None when every namespace may.
    fn allowed_namespaces(&self) -> Option<&AllowedNamespaces>;
    /// How its auth token rotates, if it does.
    fn credential_rotation(&self) -> Option<&CredentialRotationSpec>;
}

impl AccountResource for TwilioAccount {
    const KIND: &'static str = "TwilioAccount";
    const ACCOUNT_KIND: AccountKind = AccountKind::TwilioAccount;
    fn source(&self) -> AccountSource {
        AccountSource {
            account_sid: self.spec.account_sid.clone(),
            region: self.spec.region.clone(),
            edge: self.spec.edge.clone(),
            secret_namespace: self.namespace().unwrap_or_default(),
            secret_name: self.spec.credentials_secret_ref.name.clone(),
            keys: self.spec.credentials_secret_ref.keys.clone(),
            adoption: self.spec.adoption,
        }
    }
    fn account_status(&self) -> Option<&TwilioAccountStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn allowed_namespaces(&self) -> Option<&AllowedNamespaces> {
        None
    }
    fn credential_rotation(&self) -> Option<&CredentialRotationSpec> {
        self.spec.credential_rotation.as_ref()
    }
}

impl AccountResource for ClusterTwilioAccount {
    const KIND: &'static str = "ClusterTwilioAccount";
    const ACCOUNT_KIND: AccountKind = AccountKind::ClusterTwilioAccount;
    fn source(&self) -> AccountSource {
        AccountSource {
            account_sid: self.spec.account_sid.clone(),
            region: self.spec.region.clone(),
            edge: self.spec.edge.clone(),
            secret_namespace: self.spec.credentials_secret_ref.namespace.clone(),
            secret_name: self.spec.credentials_secret_ref.name.clone(),
            keys: self.spec.credentials_secret_ref.keys.clone(),
            adoption: self.spec.adoption,
        }
    }
    fn account_status(&self) -> Option<&TwilioAccountStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
    fn allowed_namespaces(&self) -> Option<&AllowedNamespaces> {
        self.spec.allowed_namespaces.as_ref()
    }
    fn credential_rotation(&self) -> Option<&CredentialRotationSpec> {
        self.spec.credential_rotation.as_ref()
    }
}
