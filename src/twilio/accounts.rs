//! The account's own credentials and subaccounts: auth token rotation (Accounts v1
//! `/v1/AuthTokens/*`) and subaccounts (Api v2010 `/2010-04-01/Accounts*`). Every call is made
//! with the account's auth token (Twilio refuses API keys here, Main keys included for tokens),
//! through the same request slots and retries as key calls.

use reqwest::Method;
use serde::Deserialize;

use super::{AccountConnection, Idempotency, SecretString, TwilioClient, TwilioError, decode};

/// A (sub)account as Api v2010 describes it; its auth token only when it was just made.
#[derive(Clone, Deserialize)]
pub struct AccountInfo {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// active, suspended or closed.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub owner_account_sid: Option<String>,
    #[serde(default)]
    pub auth_token: Option<SecretString>,
}

impl std::fmt::Debug for AccountInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountInfo")
            .field("sid", &self.sid)
            .field("friendly_name", &self.friendly_name)
            .field("status", &self.status)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[derive(Deserialize)]
struct SecondaryToken {
    secondary_auth_token: SecretString,
}

#[derive(Deserialize)]
struct AccountPage {
    accounts: Vec<AccountInfo>,
}

/// Subaccounts one listing by friendly name reads at most (one page): the operator looks only for
/// the few it made under a pending name.
const ACCOUNTS_PAGE: u32 = 50;

impl TwilioClient {
    /// `POST {accounts}/v1/AuthTokens/Secondary`: a new secondary auth token (it replaces any
    /// earlier one), shown this once. A lost answer is not retried: the caller makes another.
    pub async fn create_secondary_auth_token(
        &self,
        account: &AccountConnection,
        accounts_base: &str,
    ) -> Result<SecretString, TwilioError> {
        let url = format!("{accounts_base}/v1/AuthTokens/Secondary");
        let body = self.send(account, Method::POST, &url, Some(&[][..]), Idempotency::RetryOnlyIfUnprocessed).await?;
        Ok(decode::<SecondaryToken>(&body)?.secondary_auth_token)
    }

    /// `DELETE {accounts}/v1/AuthTokens/Secondary`: true if this call deleted it, false if there was none.
    pub async fn delete_secondary_auth_token(
        &self,
        account: &AccountConnection,
        accounts_base: &str,
    ) -> Result<bool, TwilioError> {
        let url = format!("{accounts_base}/v1/AuthTokens/Secondary");
        match self.send(account, Method::DELETE, &url, None, Idempotency::Idempotent).await {
            Ok(_) => Ok(true),
            Err(TwilioError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST {accounts}/v1/AuthTokens/Promote`: the secondary becomes the primary and the old
    /// primary stops working. Not retried: whether a lost answer promoted is settled by the caller.
    pub async fn promote_auth_token(
        &self,
        account: &AccountConnection,
        accounts_base: &str,
    ) -> Result<(), TwilioError> {
        let url = format!("{accounts_base}/v1/AuthTokens/Promote");
        self.send(account, Method::POST, &url, Some(&[][..]), Idempotency::RetryOnlyIfUnprocessed).await.map(drop)
    }

    /// `POST {api}/2010-04-01/Accounts.json`: a subaccount of the parent, named `friendly_name`,
    /// with its auth token (shown this once).
    pub async fn create_subaccount(
        &self,
        parent: &AccountConnection,
        api_base: &str,
        friendly_name: &str,
    ) -> Result<AccountInfo, TwilioError> {
        let url = format!("{api_base}/2010-04-01/Accounts.json");
        let form = [("FriendlyName", friendly_name.to_string())];
        let body = self.send(parent, Method::POST, &url, Some(&form), Idempotency::RetryOnlyIfUnprocessed).await?;
        decode(&body)
    }

    /// `GET {api}/2010-04-01/Accounts.json?FriendlyName=...`: the parent's subaccounts of that
    /// name (one page).
    pub async fn find_subaccounts(
        &self,
        parent: &AccountConnection,
        api_base: &str,
        friendly_name: &str,
    ) -> Result<Vec<AccountInfo>, TwilioError> {
        let name: String = url_encode(friendly_name);
        let url = format!("{api_base}/2010-04-01/Accounts.json?FriendlyName={name}&PageSize={ACCOUNTS_PAGE}");
        let body = self.send(parent, Method::GET, &url, None, Idempotency::Idempotent).await?;
        Ok(decode::<AccountPage>(&body)?.accounts.into_iter().filter(|a| a.sid != parent.account_sid).collect())
    }

    /// `POST {api}/2010-04-01/Accounts/{sid}.json`: renames a subaccount or sets its status
    /// (active, suspended, closed; closed is final).
    pub async fn update_subaccount(
        &self,
        parent: &AccountConnection,
        api_base: &str,
        sid: &str,
        friendly_name: Option<&str>,
        status: Option<&str>,
    ) -> Result<AccountInfo, TwilioError> {
        let url = account_url(api_base, sid)?;
        let mut form = Vec::new();
        if let Some(name) = friendly_name {
            form.push(("FriendlyName", name.to_string()));
        }
        if let Some(status) = status {
            form.push(("Status", status.to_string()));
        }
        let body = self.send(parent, Method::POST, &url, Some(&form), Idempotency::Idempotent).await?;
        decode(&body)
    }

    /// `GET {api}/2010-04-01/Accounts/{sid}.json`, made with the parent's credential.
    pub async fn fetch_subaccount(
        &self,
        parent: &AccountConnection,
        api_base: &str,
        sid: &str,
    ) -> Result<AccountInfo, TwilioError> {
        let url = account_url(api_base, sid)?;
        let body = self.send(parent, Method::GET, &url, None, Idempotency::Idempotent).await?;
        decode(&body)
    }

    /// Whether `token` authenticates as account `account_sid`: one read of the account (a GET,
    /// made with that token). 401/403 answer no; the token is used for this call only.
    pub async fn token_authenticates(
        &self,
        api_base: &str,
        account_sid: &str,
        token: &SecretString,
    ) -> Result<bool, TwilioError> {
        let url = account_url(api_base, account_sid)?;
        let pair = AccountConnection {
            account_sid: account_sid.to_string(),
            region: String::new(),
            edge: None,
            base_url: api_base.to_string(),
            credentials: super::Credentials { username: account_sid.to_string(), password: token.clone() },
            tenant: String::new(),
        };
        match self.send(&pair, Method::GET, &url, None, Idempotency::Idempotent).await {
            Ok(_) => Ok(true),
            Err(TwilioError::AuthFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// `{api}/2010-04-01/Accounts/{sid}.json`, for a well-formed SID only.
fn account_url(api_base: &str, sid: &str) -> Result<String, TwilioError> {
    if !is_account_sid(sid) {
        return Err(TwilioError::Decode(format!("{sid:?} is not an account SID")));
    }
    Ok(format!("{api_base}/2010-04-01/Accounts/{sid}.json"))
}

/// Account SIDs: "AC" and 32 hexadecimal digits. Anything else is never put into a URL.
pub fn is_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A query value, percent-encoded (the pending names hold ':').
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
