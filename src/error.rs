//! The one error type of the operator. Each variant carries the objects it is about (which
//! Secret, which account), not a preformatted message; [`Error::class`] derives, in one place,
//! its bounded metric label and, for errors only a person can fix, the Stalled reason to show.

use crate::api::{AccountKind, CredentialKeys};
use crate::twilio::TwilioError;

/// An account resource, as a message names it: `TwilioAccount team/main` or
/// `ClusterTwilioAccount shared`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountName {
    pub kind: AccountKind,
    /// The namespace of a TwilioAccount; None for a ClusterTwilioAccount.
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for AccountName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{:?} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// A namespaced object, as a message names it: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Who else holds a Secret the resource should write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretHolder {
    /// It existed, not owned by this resource, when the pass read it.
    Existing,
    /// Someone created it between this pass's read and its write.
    CreatedMeanwhile,
}

/// Why an existing Secret's key is not adopted (`spec.secret.adopt`). None of these names the
/// secret itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdoptionRefusal {
    #[error("it belongs to TwilioApiKey {0}")]
    OwnedByAnother(String),
    #[error("it holds no key SID under {sid_key} and secret under {secret_key} (spec.secret.keys)")]
    NoPair { sid_key: String, secret_key: String },
    #[error("its {sid_key} is not a key SID ('SK' and 32 hexadecimal digits)")]
    NotAKeySid { sid_key: String },
    #[error("it names account {found}, not this resource's account {expected}")]
    OtherAccount { found: String, expected: String },
    #[error("key {sid} does not exist in account {account}")]
    NotInAccount { sid: String, account: String },
    /// Said only once the claimed pair was proven: before that, a made-up secret would learn
    /// which resource, in which namespace, holds a SID.
    #[error("key {sid} is the key of TwilioApiKey {holder}")]
    RecordedElsewhere { sid: String, holder: String },
    #[error("{account} does not allow adoption (its spec.adoption is Disallowed)")]
    AccountDisallows { account: String },
    #[error("key {sid} is being created for another TwilioApiKey")]
    PendingForAnother { sid: String },
    #[error(
        "its secret does not authenticate key {sid} to Twilio in account {account} (a Restricted key can prove itself only if its policy allows /twilio/messaging/messages/read)"
    )]
    NotProven { sid: String, account: String },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed ({action}): {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("Twilio call failed ({action}): {source}")]
    Twilio {
        action: &'static str,
        #[source]
        source: TwilioError,
    },
    /// The spec breaks a rule the CRD schema cannot express (or the schema was bypassed).
    #[error("invalid spec: {problem}")]
    InvalidSpec { problem: String },
    #[error("{account} does not exist")]
    AccountNotFound { account: AccountName },
    /// An account being deleted issues no new keys.
    #[error("{account} is being deleted")]
    AccountDeleting { account: AccountName },
    #[error("ClusterTwilioAccount {account} does not allow namespace {namespace} (spec.allowedNamespaces)")]
    AccountNotAllowed { account: String, namespace: String },
    #[error("Secret {secret} does not exist")]
    CredentialsSecretMissing { secret: ObjectName },
    #[error(
        "Secret {secret} holds neither {} nor both {} and {}",
        keys.auth_token_key,
        keys.api_key_sid_key,
        keys.api_key_secret_key
    )]
    CredentialsIncomplete { secret: ObjectName, keys: CredentialKeys },
    #[error(
        "Secret {secret} {}; it is left untouched (choose another spec.secret.name or remove that Secret)",
        match holder {
            SecretHolder::Existing => "exists and is not owned by this TwilioApiKey",
            SecretHolder::CreatedMeanwhile => "was created by someone else meanwhile",
        }
    )]
    SecretConflict { secret: String, holder: SecretHolder },
    /// `spec.secret.adopt` found a Secret whose key cannot be adopted; nothing was changed.
    #[error("Secret {secret} is not adopted: {reason}")]
    AdoptionRefused { secret: String, reason: AdoptionRefusal },
    /// An account being deleted still has keys (or TwilioSubaccounts) that need it; its deletion
    /// waits.
    #[error(
        "deletion waits for {} resource(s) that use this account to be deleted: {}{}",
        users.len(),
        users.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
        if users.len() > 5 { ", ..." } else { "" }
    )]
    AccountInUse { users: Vec<String> },
    /// A TwilioSubaccount being deleted waits for the TwilioAccount made for it (and so for that
    /// account's keys) to be deleted.
    #[error("deletion waits for TwilioAccount {account} (and the keys that use it) to be deleted")]
    SubaccountReleasing { account: String },
    /// The resource created as many keys as its budget allows this hour
    /// (`--max-key-creations-per-hour`); the next is due in `retry_in`.
    #[error(
        "this resource has created {per_hour} keys within the last hour, as many as the operator allows (--max-key-creations-per-hour); it creates the next when its budget allows, one every {}s",
        3600 / per_hour.max(&1)
    )]
    CreationBudgetExceeded { per_hour: u32, retry_in: std::time::Duration },
    /// The API server refused the Secret as the spec describes it (a name, label or annotation
    /// it does not accept): retrying the same write cannot help.
    #[error("the API server refused Secret {secret}: {message}")]
    SecretRejected { secret: String, message: String },
    #[error("could not encode an object: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// What an error means for the resource it happened to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// A bounded label for metrics.
    pub label: &'static str,
    /// The Stalled reason when only a change by a person can help; None when retrying can.
    pub stall_reason: Option<&'static str>,
}

const fn retry(label: &'static str) -> Class {
    Class { label, stall_reason: None }
}

const fn stall(label: &'static str, reason: &'static str) -> Class {
    Class { label, stall_reason: Some(reason) }
}

impl Error {
    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }

    pub fn twilio(action: &'static str) -> impl FnOnce(TwilioError) -> Error {
        move |source| Error::Twilio { action, source }
    }

    /// The metric label and stall reason of each variant, in one place.
    pub fn class(&self) -> Class {
        match self {
            Error::Kube { .. } => retry("kube"),
            Error::Twilio { source, .. } => match source {
                TwilioError::AuthFailed { .. } => stall(source.label(), "TwilioAuthFailed"),
                TwilioError::Rejected { .. } => stall(source.label(), "TwilioRejected"),
                _ => retry(source.label()),
            },
            Error::InvalidSpec { .. } => stall("invalid_spec", "InvalidSpec"),
            Error::AccountNotFound { .. } | Error::AccountDeleting { .. } => {
                stall("account_not_found", "AccountNotFound")
            }
            Error::AccountNotAllowed { .. } => stall("account_not_allowed", "AccountNotAllowed"),
            Error::CredentialsSecretMissing { .. } | Error::CredentialsIncomplete { .. } => {
                stall("credentials_not_found", "CredentialsNotFound")
            }
            Error::SecretConflict { .. } => stall("secret_conflict", "SecretConflict"),
            Error::SecretRejected { .. } => stall("secret_rejected", "SecretRejected"),
            Error::AdoptionRefused { .. } => stall("adoption_refused", "AdoptionRefused"),
            Error::CreationBudgetExceeded { .. } => stall("budget_exceeded", "RotationBudgetExceeded"),
            // Waiting for keys to go is progress, not a stall.
            Error::AccountInUse { .. } => retry("account_in_use"),
            Error::SubaccountReleasing { .. } => retry("subaccount_releasing"),
            Error::Encode(_) => retry("encode"),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.class()
                }
                _ => retry("finalizer"),
            },
        }
    }

    /// The longest a failed reconciliation waits before it is retried. While the API server cannot
    /// be reached, or the controller's cache is behind it, a few seconds: the API server's
    /// return, or the cache catching up, must resume the work at once (the controller's
    /// concurrency bounds the retries). Otherwise backoff grows to 5 minutes, sparing Twilio and
    /// the API server a resource that keeps failing.
    pub fn retry_cap(&self) -> std::time::Duration {
        if self.resumes_soon() { std::time::Duration::from_secs(4) } else { std::time::Duration::from_secs(300) }
    }

    /// Whether the error ends by itself within seconds: the API server did not answer
    /// (connection refused or dropped, or it said it is unavailable), or it refused a write made
    /// from a cached object that is older than what it holds (a conflict, or a finalizer patch
    /// whose test of the current finalizers fails), which the next watch event corrects.
    fn resumes_soon(&self) -> bool {
        fn transient(source: &kube::Error) -> bool {
            match source {
                kube::Error::Service(_) | kube::Error::HyperError(_) => true,
                kube::Error::Api(status) => matches!(status.code, 409 | 502..=504),
                _ => false,
            }
        }
        match self {
            Error::Kube { source, .. } => transient(source),
            // Not an error that ends by itself, but the wait for the account's last key is a
            // poll of the keys cache (the account controller does not watch keys).
            Error::AccountInUse { .. } | Error::SubaccountReleasing { .. } => true,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.resumes_soon()
                }
                kube::runtime::finalizer::Error::AddFinalizer(source)
                | kube::runtime::finalizer::Error::RemoveFinalizer(source) => {
                    transient(source) || matches!(source, kube::Error::Api(status) if status.code == 422)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// When an error that stalls ends by itself: the budget's next key. None for the others,
    /// which wait for a change (or the stall's retry interval).
    pub fn ends_in(&self) -> Option<std::time::Duration> {
        match self {
            Error::CreationBudgetExceeded { retry_in, .. } => Some(*retry_in),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.ends_in()
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The Stalled reason for errors that need a change by a human, None for transient ones.
    pub fn stall_reason(&self) -> Option<&'static str> {
        self.class().stall_reason
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        self.class().label
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn account(namespace: Option<&str>) -> AccountName {
        AccountName {
            kind: if namespace.is_some() { AccountKind::TwilioAccount } else { AccountKind::ClusterTwilioAccount },
            namespace: namespace.map(Into::into),
            name: "main".into(),
        }
    }

    #[test]
    fn each_error_names_its_objects_and_says_whether_retrying_helps() {
        let secret = ObjectName { namespace: "team".into(), name: "creds".into() };
        let users: Vec<String> = (1..=7).map(|i| format!("team/k{i}")).collect();
        let cases: Vec<(Error, &str, &str, Option<&str>)> = vec![
            (
                Error::AccountNotFound { account: account(Some("team")) },
                "TwilioAccount team/main does not exist",
                "account_not_found",
                Some("AccountNotFound"),
            ),
            (
                Error::AccountDeleting { account: account(None) },
                "ClusterTwilioAccount main is being deleted",
                "account_not_found",
                Some("AccountNotFound"),
            ),
            (
                Error::AccountNotAllowed { account: "shared".into(), namespace: "team".into() },
                "ClusterTwilioAccount shared does not allow namespace team (spec.allowedNamespaces)",
                "account_not_allowed",
                Some("AccountNotAllowed"),
            ),
            (
                Error::CredentialsSecretMissing { secret: secret.clone() },
                "Secret team/creds does not exist",
                "credentials_not_found",
                Some("CredentialsNotFound"),
            ),
            (
                Error::CredentialsIncomplete { secret, keys: serde_json::from_value(serde_json::json!({})).unwrap() },
                "Secret team/creds holds neither TWILIO_AUTH_TOKEN nor both TWILIO_API_KEY and TWILIO_API_SECRET",
                "credentials_not_found",
                Some("CredentialsNotFound"),
            ),
            (
                Error::SecretConflict { secret: "app".into(), holder: SecretHolder::Existing },
                "Secret app exists and is not owned by this TwilioApiKey; it is left untouched (choose another spec.secret.name or remove that Secret)",
                "secret_conflict",
                Some("SecretConflict"),
            ),
            (
                Error::SecretConflict { secret: "app".into(), holder: SecretHolder::CreatedMeanwhile },
                "Secret app was created by someone else meanwhile; it is left untouched (choose another spec.secret.name or remove that Secret)",
                "secret_conflict",
                Some("SecretConflict"),
            ),
            (
                Error::AccountInUse { users },
                "deletion waits for 7 resource(s) that use this account to be deleted: team/k1, team/k2, team/k3, team/k4, team/k5, ...",
                "account_in_use",
                None,
            ),
            (
                Error::SecretRejected { secret: "app".into(), message: "bad label".into() },
                "the API server refused Secret app: bad label",
                "secret_rejected",
                Some("SecretRejected"),
            ),
            (
                Error::AdoptionRefused {
                    secret: "app".into(),
                    reason: AdoptionRefusal::NotProven { sid: "SK1".into(), account: "AC1".into() },
                },
                "Secret app is not adopted: its secret does not authenticate key SK1 to Twilio in account AC1 (a Restricted key can prove itself only if its policy allows /twilio/messaging/messages/read)",
                "adoption_refused",
                Some("AdoptionRefused"),
            ),
            (
                Error::InvalidSpec { problem: "spec.policy is required".into() },
                "invalid spec: spec.policy is required",
                "invalid_spec",
                Some("InvalidSpec"),
            ),
            (
                Error::twilio("create key")(TwilioError::AuthFailed { status: 401, code: None, message: "no".into() }),
                "",
                "auth_failed",
                Some("TwilioAuthFailed"),
            ),
        ];
        for (error, message, label, stall_reason) in cases {
            if !message.is_empty() {
                assert_eq!(error.to_string(), message);
            }
            assert_eq!(error.class(), Class { label, stall_reason }, "{error}");
        }
    }

    #[test]
    fn a_finalizer_error_is_classed_by_the_error_inside() {
        let inner = Error::SecretConflict { secret: "app".into(), holder: SecretHolder::Existing };
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(inner)));
        assert_eq!(wrapped.stall_reason(), Some("SecretConflict"));
        let missing = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject));
        assert_eq!(missing.class(), Class { label: "finalizer", stall_reason: None });
    }
}
