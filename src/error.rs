//! The one error type of the operator. Each variant knows whether retrying can help and has a
//! bounded label for metrics; variants that need a human carry the condition reason to show.

use crate::twilio::TwilioError;

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
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    AccountNotFound(String),
    #[error("{0}")]
    AccountNotAllowed(String),
    #[error("{0}")]
    CredentialsNotFound(String),
    #[error("{0}")]
    SecretConflict(String),
    /// An account being deleted still has keys that need it; its deletion waits.
    #[error("{0}")]
    AccountInUse(String),
    /// The API server refused the Secret as the spec describes it (a name, label or annotation
    /// it does not accept): retrying the same write cannot help.
    #[error("{0}")]
    SecretRejected(String),
    #[error("could not encode an object: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }

    pub fn twilio(action: &'static str) -> impl FnOnce(TwilioError) -> Error {
        move |source| Error::Twilio { action, source }
    }

    /// The Stalled reason for errors that need a change by a human, None for transient ones.
    pub fn stall_reason(&self) -> Option<&'static str> {
        match self {
            Error::InvalidSpec(_) => Some("InvalidSpec"),
            Error::AccountNotFound(_) => Some("AccountNotFound"),
            Error::AccountNotAllowed(_) => Some("AccountNotAllowed"),
            Error::CredentialsNotFound(_) => Some("CredentialsNotFound"),
            Error::SecretConflict(_) => Some("SecretConflict"),
            Error::SecretRejected(_) => Some("SecretRejected"),
            Error::Twilio { source: TwilioError::AuthFailed { .. }, .. } => Some("TwilioAuthFailed"),
            Error::Twilio { source: TwilioError::Rejected { .. }, .. } => Some("TwilioRejected"),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.stall_reason()
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Twilio { source, .. } => source.label(),
            Error::InvalidSpec(_) => "invalid_spec",
            Error::AccountNotFound(_) => "account_not_found",
            Error::AccountNotAllowed(_) => "account_not_allowed",
            Error::CredentialsNotFound(_) => "credentials_not_found",
            Error::SecretConflict(_) => "secret_conflict",
            Error::AccountInUse(_) => "account_in_use",
            Error::SecretRejected(_) => "secret_rejected",
            Error::Encode(_) => "encode",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.label()
                }
                _ => "finalizer",
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` cut to at most `max` characters (and "..."), so that a huge input a user wrote does
/// not make a huge condition message, Event or log line.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}
