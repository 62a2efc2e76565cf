//! Every key in an account accounted for: from the account's listing and the keys the
//! TwilioApiKeys of this cluster record, how many are managed here, how many by nobody here, and
//! how many carry a pending name. Pure; report only (the operator never deletes a key it cannot
//! prove it created).

use std::collections::{HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;

use crate::api::text::{printable, shorten};
use crate::api::{AccountKeys, CredentialKind, PENDING_FRIENDLY_NAME_PREFIX, UnmanagedKey};
use crate::twilio::{Credentials, Key};

/// The most unmanaged and pending keys an account's status lists by SID.
pub const MAX_LISTED: usize = 20;

/// What the operator acts with: a Main key (its SID as the user name) or the auth token (the
/// account SID as the user name).
pub fn credential_kind(credentials: &Credentials) -> CredentialKind {
    if credentials.username.starts_with("SK") { CredentialKind::MainKey } else { CredentialKind::AuthToken }
}

/// The census of an account's listing, given the SIDs that TwilioApiKeys of this cluster record in
/// this account. It says nothing of when the listing was made, so that it changes only when the
/// keys do (an account's status is written only when it changes).
pub fn census(listed: &HashMap<String, Key>, recorded: &HashSet<String>) -> AccountKeys {
    let mut census = AccountKeys::default();
    let mut not_managed: Vec<UnmanagedKey> = Vec::new();
    for key in listed.values() {
        if recorded.contains(&key.sid) {
            census.managed = census.managed.saturating_add(1);
            continue;
        }
        let pending = key.friendly_name.as_deref().is_some_and(|n| n.starts_with(PENDING_FRIENDLY_NAME_PREFIX));
        if pending {
            census.pending = census.pending.saturating_add(1);
        } else {
            census.unmanaged = census.unmanaged.saturating_add(1);
        }
        not_managed.push(UnmanagedKey {
            sid: key.sid.clone(),
            friendly_name: key.friendly_name.as_deref().map(|n| shorten(&printable(n), 64)),
            created_at: key.created_at().map(|t| t.to_string()),
            pending,
        });
    }
    // Oldest first (a key without a date last), then by SID, so that the list is stable.
    not_managed.sort_by(|a, b| {
        let when = |k: &UnmanagedKey| k.created_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        (when(a).is_none(), when(a), &a.sid).cmp(&(when(b).is_none(), when(b), &b.sid))
    });
    not_managed.truncate(MAX_LISTED);
    census.not_managed = not_managed;
    census
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::SecretString;

    fn key(sid: &str, name: &str, created: &str) -> Key {
        Key { sid: sid.into(), friendly_name: Some(name.into()), date_created: Some(created.into()), policy: None }
    }

    fn listing(keys: Vec<Key>) -> HashMap<String, Key> {
        keys.into_iter().map(|k| (k.sid.clone(), k)).collect()
    }

    #[test]
    fn keys_are_managed_here_pending_or_unmanaged() {
        let listed = listing(vec![
            key("SK1", "team/app", "Mon, 02 Nov 2026 10:00:00 +0000"),
            key("SK2", "made by hand\u{1b}[31m", "Sun, 01 Nov 2026 10:00:00 +0000"),
            key("SK3", "twilio-operator:pending:uid-elsewhere", "Tue, 03 Nov 2026 10:00:00 +0000"),
            key("SK4", "team/old", "Tue, 03 Nov 2026 11:00:00 +0000"),
        ]);
        let recorded: HashSet<String> = ["SK1".to_string(), "SK4".to_string(), "SK9".to_string()].into();
        let census = census(&listed, &recorded);
        assert_eq!((census.managed, census.unmanaged, census.pending), (2, 1, 1));
        let listed: Vec<(&str, bool)> = census.not_managed.iter().map(|k| (k.sid.as_str(), k.pending)).collect();
        assert_eq!(listed, [("SK2", false), ("SK3", true)], "oldest first");
        assert_eq!(census.not_managed[0].friendly_name.as_deref(), Some("made by hand [31m"), "no control characters");
        assert_eq!(census.not_managed[0].created_at.as_deref(), Some("2026-11-01T10:00:00Z"));
    }

    #[test]
    fn at_most_twenty_are_listed_but_all_are_counted() {
        let keys = (0..50).map(|i| key(&format!("SK{i:02}"), "x", "Sun, 01 Nov 2026 10:00:00 +0000")).collect();
        let census = census(&listing(keys), &HashSet::new());
        assert_eq!(census.unmanaged, 50);
        assert_eq!(census.not_managed.len(), MAX_LISTED);
        assert_eq!(census.not_managed[0].sid, "SK00");
    }

    #[test]
    fn the_credential_is_a_main_key_when_a_key_sid_authenticates() {
        let as_user = |u: &str| Credentials { username: u.into(), password: SecretString::from("x") };
        assert_eq!(credential_kind(&as_user("AC0123")), CredentialKind::AuthToken);
        assert_eq!(credential_kind(&as_user("SK0123")), CredentialKind::MainKey);
    }
}
