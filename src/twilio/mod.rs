//! A small client for Twilio's IAM v1 Keys API: create, fetch, update, delete and list keys.
//!
//! Requests are form-encoded and authenticated with HTTP Basic (an auth token or a Main key).
//! 429 and 5xx answers are retried with exponential backoff, jitter and any `Retry-After`; a create
//! is retried only on 429, which Twilio guarantees was never processed, because a create whose
//! outcome is unknown must not be repeated blindly (it could leave a second live key behind).
//!
//! What Twilio answers is read with bounds: at most [`MAX_ANSWER_BYTES`] per answer, at most the
//! page size in keys per page, error messages cut to [`MAX_MESSAGE_CHARS`] printable characters.
//! Requests to one account share its slots fairly between tenants (see [`slots`]).

pub mod accounts;
pub mod slots;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slots::FairSlots;

use rand::Rng;
use reqwest::{Method, StatusCode, header::RETRY_AFTER};
use serde::{Deserialize, Serialize};

pub use secrecy::{ExposeSecret, SecretString};

/// Where requests go: Twilio's real regional hosts, or one base URL for everything (a fake
/// server or a proxy). The choice is the operator's, never a resource's.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Twilio,
    Override(String),
}

impl Endpoint {
    pub fn from_flag(url: Option<&str>) -> Self {
        match url {
            Some(url) if !url.is_empty() => Endpoint::Override(url.trim_end_matches('/').into()),
            _ => Endpoint::Twilio,
        }
    }

    /// Base URL of the core (v2010) API for an account's region and edge.
    pub fn api_base(&self, region: Option<&str>, edge: Option<&str>) -> String {
        match self {
            Endpoint::Override(url) => url.clone(),
            Endpoint::Twilio => format!("https://{}", regional_host("api", region, edge)),
        }
    }

    /// Base URL of the Accounts API (auth tokens) for an account's region and edge.
    pub fn accounts_base(&self, region: Option<&str>, edge: Option<&str>) -> String {
        match self {
            Endpoint::Override(url) => url.clone(),
            Endpoint::Twilio => format!("https://{}", regional_host("accounts", region, edge)),
        }
    }

    /// Base URL of the IAM API for an account's region and edge.
    pub fn iam_base(&self, region: Option<&str>, edge: Option<&str>) -> String {
        match self {
            Endpoint::Override(url) => url.clone(),
            Endpoint::Twilio => format!("https://{}", regional_host("iam", region, edge)),
        }
    }
}

/// `{product}.{edge}.{region}.twilio.com`, or `{product}.twilio.com` for the default US1 region
/// without an explicit edge, as Twilio's SDKs build it.
pub fn regional_host(product: &str, region: Option<&str>, edge: Option<&str>) -> String {
    match (region, edge) {
        (None, None) => format!("{product}.twilio.com"),
        (region, edge) => {
            let region = region.unwrap_or("us1");
            let edge = edge.unwrap_or_else(|| default_edge(region));
            format!("{product}.{edge}.{region}.twilio.com")
        }
    }
}

fn default_edge(region: &str) -> &'static str {
    match region {
        "au1" => "sydney",
        "br1" => "sao-paulo",
        "de1" => "frankfurt",
        "ie1" => "dublin",
        "jp1" => "tokyo",
        "jp2" => "osaka",
        "sg1" => "singapore",
        "us2" => "umatilla",
        _ => "ashburn",
    }
}

/// The identity the operator acts as in one account.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The account SID (with an auth token) or a Main key SID.
    pub username: String,
    pub password: SecretString,
}

/// One account as the client addresses it.
#[derive(Clone, Debug)]
pub struct AccountConnection {
    pub account_sid: String,
    /// The account's Twilio Region ("us1" unless set); keys and credentials are per Region.
    pub region: String,
    /// The Twilio edge location the account's requests go through, when the account sets one.
    pub edge: Option<String>,
    pub base_url: String,
    pub credentials: Credentials,
    /// On whose behalf requests are made (a key's namespace): the account's request slots are
    /// shared fairly between tenants. Empty for the operator's own calls (verifying an account).
    pub tenant: String,
}

impl AccountConnection {
    /// The same connection, its requests made on behalf of `tenant`.
    pub fn for_tenant(self, tenant: &str) -> Self {
        Self { tenant: tenant.to_string(), ..self }
    }

    /// The connection that reaches keys created in account `key_account_sid` through the
    /// account resource that now connects as this one: an auth token addresses its account by
    /// SID, so a changed account SID is followed; a Main key is used as it is.
    pub fn for_key_account(mut self, key_account_sid: Option<&str>) -> Self {
        if let Some(old_sid) = key_account_sid.filter(|sid| *sid != self.account_sid) {
            if self.credentials.username == self.account_sid {
                self.credentials.username = old_sid.to_string();
            }
            self.account_sid = old_sid.to_string();
        }
        self
    }
}

/// A key as Twilio describes it after creation (no secret).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Key {
    pub sid: String,
    pub friendly_name: Option<String>,
    pub date_created: Option<String>,
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
}

impl Key {
    /// When Twilio created the key (its dates are RFC 2822).
    pub fn created_at(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        let text = self.date_created.as_deref()?;
        k8s_openapi::jiff::fmt::rfc2822::parse(text).ok().map(|zoned| zoned.timestamp())
    }
}

/// A key as returned by its creation: the only time Twilio shows its secret.
#[derive(Deserialize)]
pub struct NewKey {
    pub sid: String,
    pub friendly_name: Option<String>,
    pub date_created: Option<String>,
    pub secret: SecretString,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("sid", &self.sid)
            .field("friendly_name", &self.friendly_name)
            .field("secret", &self.secret)
            .finish()
    }
}

/// What to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    pub friendly_name: String,
    /// The allow list of a Restricted key; None for a Standard key.
    pub restricted_policy: Option<Vec<String>>,
}

#[derive(Serialize)]
struct PolicyBody<'a> {
    allow: &'a [String],
}

/// Twilio's classic error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

/// A failed Twilio call, classified by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// 404 / 20404: the key (or account path) does not exist.
    #[error("not found in Twilio (HTTP 404{})", code_suffix(*.code))]
    NotFound { code: Option<i64> },
    /// 401 / 403: the credential was refused; retrying will not help until it changes.
    #[error("Twilio refused the credential (HTTP {status}{}): {message}", code_suffix(*.code))]
    AuthFailed { status: u16, code: Option<i64>, message: String },
    /// 429: Twilio's concurrency limit; the request was not processed.
    #[error("rate limited by Twilio (HTTP 429{})", code_suffix(*.code))]
    RateLimited { code: Option<i64>, retry_after: Option<Duration> },
    /// 5xx: Twilio failed.
    #[error("Twilio server error (HTTP {status}{}): {message}", code_suffix(*.code))]
    Server { status: u16, code: Option<i64>, message: String, retry_after: Option<Duration> },
    /// Another 4xx: the request itself is wrong.
    #[error("Twilio rejected the request (HTTP {status}{}): {message}", code_suffix(*.code))]
    Rejected { status: u16, code: Option<i64>, message: String },
    /// No answer: connection refused, reset or timed out.
    #[error("could not reach Twilio: {0}")]
    Transport(String),
    /// An answer that does not parse.
    #[error("unexpected answer from Twilio: {0}")]
    Decode(String),
}

/// ", code 20404" when Twilio named its error code, nothing when it did not.
fn code_suffix(code: Option<i64>) -> String {
    code.map(|code| format!(", code {code}")).unwrap_or_default()
}

impl TwilioError {
    /// Whether the same request may succeed later without anything changing.
    pub fn is_transient(&self) -> bool {
        matches!(self, TwilioError::RateLimited { .. } | TwilioError::Server { .. } | TwilioError::Transport(_))
    }

    /// A bounded label for metrics and Event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            TwilioError::NotFound { .. } => "not_found",
            TwilioError::AuthFailed { .. } => "auth_failed",
            TwilioError::RateLimited { .. } => "rate_limited",
            TwilioError::Server { .. } => "server_error",
            TwilioError::Rejected { .. } => "rejected",
            TwilioError::Transport(_) => "transport",
            TwilioError::Decode(_) => "decode",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            TwilioError::RateLimited { retry_after, .. } | TwilioError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How often and how patiently transient failures are retried inside one call.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff, never shorter than the server's Retry-After.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let jittered = rand::rng().random_range(Duration::ZERO..=cap);
        match retry_after {
            Some(server) => server.max(jittered).min(Duration::from_secs(60)),
            None => jittered,
        }
    }
}

/// Which failures a request may be repeated after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotency {
    /// Reads, deletes and updates: any transient failure may be retried.
    Idempotent,
    /// Creates: only a 429, which Twilio did not process, may be retried.
    RetryOnlyIfUnprocessed,
}

/// Twilio limits REST concurrency per account; the operator stays below it on its own.
const REQUESTS_IN_FLIGHT_PER_ACCOUNT: usize = 4;

#[derive(Clone, Debug)]
pub struct TwilioClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    retry: RetryPolicy,
    page_size: u32,
    /// The request slots of each account SID, shared fairly between tenants.
    in_flight: Arc<Mutex<HashMap<String, Arc<FairSlots>>>>,
    /// Told of every request (the runtime counts them in its metrics); nobody unless given.
    observer: Arc<dyn RequestObserver>,
}

/// Who hears of each request the client made: its operation (a bounded label such as
/// `create_key`), its HTTP status (or `transport` when no answer came) and how long it took.
/// The client defines it so that it depends on nothing above it; the runtime's metrics implement it.
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    fn request_done(&self, operation: &'static str, status: &str, elapsed: Duration);
}

/// The observer of a client that was given none.
#[derive(Debug)]
struct Unobserved;

impl RequestObserver for Unobserved {
    fn request_done(&self, _operation: &'static str, _status: &str, _elapsed: Duration) {}
}

#[derive(Deserialize)]
struct KeyPage {
    keys: Vec<Key>,
    meta: PageMeta,
}

#[derive(Deserialize)]
struct PageMeta {
    next_page_url: Option<String>,
}

impl TwilioClient {
    pub fn new(endpoint: Endpoint, retry: RetryPolicy) -> Result<Self, TwilioError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("twilio-operator/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| TwilioError::Transport(e.to_string()))?;
        Ok(Self { http, endpoint, retry, page_size: 1000, in_flight: Arc::default(), observer: Arc::new(Unobserved) })
    }

    /// Tells `observer` of every request.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Keys per page when listing (Twilio allows 1 to 1000).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, 1000);
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub async fn create_key(&self, account: &AccountConnection, request: &KeyRequest) -> Result<NewKey, TwilioError> {
        let mut form =
            vec![("AccountSid", account.account_sid.clone()), ("FriendlyName", request.friendly_name.clone())];
        if let Some(allow) = &request.restricted_policy {
            let policy =
                serde_json::to_string(&PolicyBody { allow }).map_err(|e| TwilioError::Decode(e.to_string()))?;
            form.push(("KeyType", "restricted".into()));
            form.push(("Policy", policy));
        }
        let url = format!("{}/v1/Keys", account.base_url);
        let body = self.send(account, Method::POST, &url, Some(&form), Idempotency::RetryOnlyIfUnprocessed).await?;
        decode(&body)
    }

    pub async fn fetch_key(&self, account: &AccountConnection, sid: &str) -> Result<Key, TwilioError> {
        let url = format!("{}/v1/Keys/{sid}", account.base_url);
        let body = self.send(account, Method::GET, &url, None, Idempotency::Idempotent).await?;
        decode(&body)
    }

    /// Renames a key and, for a Restricted key, replaces its policy; the secret stays the same.
    pub async fn update_key(
        &self,
        account: &AccountConnection,
        sid: &str,
        friendly_name: &str,
        restricted_policy: Option<&[String]>,
    ) -> Result<Key, TwilioError> {
        let mut form = vec![("FriendlyName", friendly_name.to_string())];
        if let Some(allow) = restricted_policy {
            let policy =
                serde_json::to_string(&PolicyBody { allow }).map_err(|e| TwilioError::Decode(e.to_string()))?;
            form.push(("Policy", policy));
        }
        let url = format!("{}/v1/Keys/{sid}", account.base_url);
        let body = self.send(account, Method::POST, &url, Some(&form), Idempotency::Idempotent).await?;
        decode(&body)
    }

    /// Whether a key's SID and secret authenticate to Twilio in account `account_sid`: one read of
    /// the account's messages (a page of one, sent before 2000, so empty), made with that very
    /// pair at `api_base`. A Standard key may make it, and a Restricted key whose policy allows
    /// reading messages. 401 and 403 answer no; other failures are errors (retried, or not
    /// decided). The pair is used for this one call and kept nowhere.
    pub async fn authenticates(
        &self,
        api_base: &str,
        account_sid: &str,
        sid: &str,
        secret: &SecretString,
    ) -> Result<bool, TwilioError> {
        let pair = AccountConnection {
            account_sid: account_sid.to_string(),
            region: String::new(),
            edge: None,
            base_url: api_base.to_string(),
            credentials: Credentials { username: sid.to_string(), password: secret.clone() },
            tenant: String::new(),
        };
        let url =
            format!("{api_base}/2010-04-01/Accounts/{account_sid}/Messages.json?PageSize=1&DateSent%3C=2000-01-01");
        match self.send(&pair, Method::GET, &url, None, Idempotency::Idempotent).await {
            Ok(_) => Ok(true),
            Err(TwilioError::AuthFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a key: true if this call deleted it, false if it was already gone (404).
    pub async fn delete_key(&self, account: &AccountConnection, sid: &str) -> Result<bool, TwilioError> {
        let url = format!("{}/v1/Keys/{sid}", account.base_url);
        match self.send(account, Method::DELETE, &url, None, Idempotency::Idempotent).await {
            Ok(_) => Ok(true),
            Err(TwilioError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lists every key of the account, following the next-page URLs Twilio returns.
    ///
    /// Only URLs on the account's base URL are ever requested (see [`next_page_request`]), a
    /// next-page URL seen before ends the listing with an error, and so does a listing longer than
    /// [`MAX_LIST_PAGES`] pages: a misbehaving server can neither redirect the credential nor make
    /// the operator page forever.
    pub async fn list_keys(&self, account: &AccountConnection) -> Result<Vec<Key>, TwilioError> {
        let mut url =
            format!("{}/v1/Keys?AccountSid={}&PageSize={}", account.base_url, account.account_sid, self.page_size);
        let mut requested = HashSet::new();
        let mut keys = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            requested.insert(url.clone());
            let body = self.send(account, Method::GET, &url, None, Idempotency::Idempotent).await?;
            let page: KeyPage = decode(&body)?;
            if page.keys.len() > self.page_size as usize {
                return Err(TwilioError::Decode(format!(
                    "listing keys: a page holds {} keys, more than the {} asked for",
                    page.keys.len(),
                    self.page_size
                )));
            }
            keys.extend(page.keys);
            let next = match page.meta.next_page_url {
                Some(next) if !next.is_empty() => next_page_request(&self.endpoint, account, &next)?,
                _ => return Ok(keys),
            };
            if requested.contains(&next) {
                return Err(TwilioError::Decode(format!(
                    "listing keys: Twilio's next_page_url repeats an earlier page ({}) after {pages} pages; \
                     stopped instead of paging forever",
                    describe_url(&next)
                )));
            }
            if pages >= MAX_LIST_PAGES {
                return Err(TwilioError::Decode(format!(
                    "listing keys: more than {MAX_LIST_PAGES} pages ({} keys so far); stopped paging",
                    keys.len()
                )));
            }
            url = next;
        }
    }

    async fn send(
        &self,
        account: &AccountConnection,
        method: Method,
        url: &str,
        form: Option<&[(&str, String)]>,
        idempotency: Idempotency,
    ) -> Result<bytes::Bytes, TwilioError> {
        let slots = {
            let mut limits = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            limits
                .entry(account.account_sid.clone())
                .or_insert_with(|| FairSlots::new(REQUESTS_IN_FLIGHT_PER_ACCOUNT))
                .clone()
        };
        let mut attempt = 0;
        loop {
            let result = {
                let _slot = slots.acquire(&account.tenant).await;
                self.send_once(account, method.clone(), url, form).await
            };
            let err = match result {
                Ok(body) => return Ok(body),
                Err(err) => err,
            };
            let may_retry = match idempotency {
                Idempotency::Idempotent => err.is_transient(),
                Idempotency::RetryOnlyIfUnprocessed => matches!(err, TwilioError::RateLimited { .. }),
            };
            attempt += 1;
            if !may_retry || attempt >= self.retry.attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt, err.retry_after());
            tracing::debug!(%method, error = %err, attempt, ?delay, "retrying Twilio request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        account: &AccountConnection,
        method: Method,
        url: &str,
        form: Option<&[(&str, String)]>,
    ) -> Result<bytes::Bytes, TwilioError> {
        let started = std::time::Instant::now();
        let operation = operation_label(&method, url);
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&account.credentials.username, Some(account.credentials.password.expose_secret()));
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.map_err(|e| {
            self.observer.request_done(operation, "transport", started.elapsed());
            TwilioError::Transport(transport_message(&e))
        })?;
        let status = response.status();
        self.observer.request_done(operation, status.as_str(), started.elapsed());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_bounded(response, MAX_ANSWER_BYTES).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(classify(status, &body, retry_after))
    }
}

/// The most bytes of one answer the client reads: a page of 1000 keys is about 400 KB. A longer
/// answer is an error, and is not read to its end.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The most characters of an error message from Twilio that the operator keeps.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// The body of `response`, or an error once it exceeds `max` bytes (by its Content-Length, or
/// while reading).
async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<bytes::Bytes, TwilioError> {
    let too_long = || TwilioError::Decode(format!("the answer is longer than {} KiB; not read", max / 1024));
    if response.content_length().is_some_and(|length| length > max as u64) {
        return Err(too_long());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| TwilioError::Transport(transport_message(&e)))? {
        if body.len() + chunk.len() > max {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The most pages one listing follows. At the default page size of 1000 that is a million keys,
/// far more than any account holds; a server that keeps handing out pages is misbehaving.
pub const MAX_LIST_PAGES: usize = 1000;

/// The URL to request for a listing's next page, from the `meta.next_page_url` Twilio returned.
///
/// The request always goes to the account's base URL: only the path and query of `next` are
/// used, the path must be exactly `/v1/Keys` (after the base URL's own path, if it has one), and an
/// `AccountSid` in the query must be the account's. With [`Endpoint::Twilio`] the URL must also
/// name the base URL's scheme, host and port. Anything else is an error and is never requested, so
/// the account's credential is only ever sent where the operator was configured to send it.
pub fn next_page_request(endpoint: &Endpoint, account: &AccountConnection, next: &str) -> Result<String, TwilioError> {
    let refuse = |why: &str| {
        TwilioError::Decode(format!(
            "listing keys: refused to follow Twilio's next_page_url {}: {why}",
            describe_url_text(next)
        ))
    };
    let base = reqwest::Url::parse(&account.base_url)
        .map_err(|_| TwilioError::Decode("listing keys: the account's base URL is not a URL".into()))?;
    // A path relative to the host, e.g. `/v1/Keys?...`, stays on the base URL's host.
    let relative = next.starts_with('/') && !next.starts_with("//");
    let parsed = if relative { base.join(next) } else { reqwest::Url::parse(next) };
    let parsed = parsed.map_err(|_| refuse("it is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse("it is not an http(s) URL"));
    }
    if matches!(endpoint, Endpoint::Twilio) && parsed.origin() != base.origin() {
        return Err(refuse(&format!("it is not on {}", base.origin().ascii_serialization())));
    }
    let base_path = base.path().trim_end_matches('/');
    let path = parsed.path();
    if path != "/v1/Keys" && (base_path.is_empty() || path != format!("{base_path}/v1/Keys")) {
        return Err(refuse("its path is not /v1/Keys"));
    }
    let foreign_account =
        parsed.query_pairs().any(|(name, value)| name == "AccountSid" && value != account.account_sid);
    if foreign_account {
        return Err(refuse("it lists another account"));
    }
    Ok(match parsed.query() {
        Some(query) => format!("{}/v1/Keys?{query}", account.base_url),
        None => format!("{}/v1/Keys", account.base_url),
    })
}

/// A URL for an error message: scheme, host, port and path; never user info or the query.
fn describe_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let text = format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or(""), url.path());
            crate::api::text::shorten(&text, 120)
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// Like [`describe_url`], for text that may also be a relative URL.
fn describe_url_text(text: &str) -> String {
    if text.starts_with('/') && !text.starts_with("//") {
        let path = text.split(['?', '#']).next().unwrap_or("");
        return crate::api::text::shorten(path, 120);
    }
    describe_url(text)
}

/// reqwest errors name the URL; ours carry no secret, but keep the message short and stable.
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{kind}: {}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path()),
        None => kind.to_string(),
    }
}

fn operation_label(method: &Method, url: &str) -> &'static str {
    let path = url.split('?').next().unwrap_or(url);
    if path.ends_with("/Messages.json") {
        return "prove_key";
    }
    if path.ends_with("/AuthTokens/Secondary") {
        return if *method == Method::DELETE { "delete_secondary_auth_token" } else { "create_secondary_auth_token" };
    }
    if path.ends_with("/AuthTokens/Promote") {
        return "promote_auth_token";
    }
    if path.ends_with("/Accounts.json") {
        return if *method == Method::POST { "create_subaccount" } else { "list_subaccounts" };
    }
    if path.contains("/2010-04-01/Accounts/") && path.ends_with(".json") && !path.contains("/Keys") {
        return if *method == Method::POST { "update_account" } else { "fetch_account" };
    }
    let addresses_one_key = !path.ends_with("/Keys");
    match (method.as_str(), addresses_one_key) {
        ("POST", false) => "create_key",
        ("POST", true) => "update_key",
        ("GET", false) => "list_keys",
        ("GET", true) => "fetch_key",
        ("DELETE", _) => "delete_key",
        _ => "other",
    }
}

fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> TwilioError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code);
    let message = parsed
        .and_then(|b| b.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    // It reaches conditions, Events and logs: short, and unable to steer a terminal.
    let message = crate::api::text::printable(&crate::api::text::shorten(&message, MAX_MESSAGE_CHARS));
    match status.as_u16() {
        404 => TwilioError::NotFound { code },
        401 | 403 => TwilioError::AuthFailed { status: status.as_u16(), code, message },
        429 => TwilioError::RateLimited { code, retry_after },
        500..=599 => TwilioError::Server { status: status.as_u16(), code, message, retry_after },
        other => TwilioError::Rejected { status: other, code, message },
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TwilioError> {
    serde_json::from_slice(body).map_err(|e| TwilioError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_former_account_sid_are_reached_with_an_auth_token_only() {
        let connect = |username: &str| AccountConnection {
            tenant: String::new(),
            account_sid: "ACnew".into(),
            region: "us1".into(),
            edge: None,
            base_url: "https://iam.twilio.com".into(),
            credentials: Credentials { username: username.into(), password: SecretString::from("token") },
        };
        let token = connect("ACnew").for_key_account(Some("ACold"));
        assert_eq!((token.account_sid.as_str(), token.credentials.username.as_str()), ("ACold", "ACold"));
        let main_key = connect("SKmain").for_key_account(Some("ACold"));
        assert_eq!((main_key.account_sid.as_str(), main_key.credentials.username.as_str()), ("ACold", "SKmain"));
        let same = connect("ACnew").for_key_account(Some("ACnew"));
        assert_eq!(same.account_sid, "ACnew");
        assert_eq!(connect("ACnew").for_key_account(None).account_sid, "ACnew");
    }

    #[test]
    fn credentials_and_new_keys_never_show_their_secrets() {
        let credentials = Credentials { username: "AC1".into(), password: SecretString::from("hunter2-token") };
        let new_key: NewKey = serde_json::from_str(
            r#"{"sid": "SK1", "friendly_name": null, "date_created": null, "secret": "hunter2-secret"}"#,
        )
        .unwrap();
        let shown = format!("{credentials:?} {new_key:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SK1") && shown.contains("AC1"), "{shown}");
        assert_eq!(new_key.secret.expose_secret(), "hunter2-secret");
    }

    #[test]
    fn error_messages_name_twilios_code_only_when_there_is_one() {
        let server =
            TwilioError::Server { status: 503, code: Some(20500), message: "Unavailable".into(), retry_after: None };
        assert_eq!(server.to_string(), "Twilio server error (HTTP 503, code 20500): Unavailable");
        assert_eq!(TwilioError::NotFound { code: None }.to_string(), "not found in Twilio (HTTP 404)");
    }

    #[test]
    fn hosts_follow_twilio_regional_naming() {
        assert_eq!(regional_host("iam", None, None), "iam.twilio.com");
        assert_eq!(regional_host("iam", Some("ie1"), None), "iam.dublin.ie1.twilio.com");
        assert_eq!(regional_host("iam", Some("au1"), Some("sydney")), "iam.sydney.au1.twilio.com");
        assert_eq!(regional_host("iam", None, Some("dublin")), "iam.dublin.us1.twilio.com");
        assert_eq!(Endpoint::from_flag(Some("http://127.0.0.1:9/")).iam_base(Some("ie1"), None), "http://127.0.0.1:9");
    }

    #[test]
    fn error_bodies_map_to_what_the_caller_should_do() {
        let gone = classify(StatusCode::NOT_FOUND, br#"{"code":20404,"message":"nope","status":404}"#, None);
        assert!(matches!(gone, TwilioError::NotFound { code: Some(20404) }));
        let auth = classify(StatusCode::UNAUTHORIZED, br#"{"code":20003,"message":"Authenticate"}"#, None);
        assert!(matches!(auth, TwilioError::AuthFailed { code: Some(20003), .. }));
        assert!(!auth.is_transient());
        let limited = classify(StatusCode::TOO_MANY_REQUESTS, b"", Some(Duration::from_secs(2)));
        assert!(limited.is_transient());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        let unknown_shape = classify(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert!(
            matches!(&unknown_shape, TwilioError::Server { status: 502, message, .. } if message.contains("bad gateway"))
        );
        let bad = classify(StatusCode::BAD_REQUEST, br#"{"code":20001,"message":"Invalid"}"#, None);
        assert!(!bad.is_transient());
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy =
            RetryPolicy { attempts: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for attempt in 0..10 {
            assert!(policy.delay(attempt, None) <= Duration::from_secs(1));
        }
        assert!(policy.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn twilio_dates_parse() {
        let key = Key {
            sid: "SK1".into(),
            friendly_name: None,
            date_created: Some("Mon, 13 Jun 2016 22:50:08 +0000".into()),
            policy: None,
        };
        assert_eq!(key.created_at().unwrap().to_string(), "2016-06-13T22:50:08Z");
    }

    #[test]
    fn operations_are_labelled_by_method_and_path() {
        assert_eq!(operation_label(&Method::POST, "http://x/v1/Keys"), "create_key");
        assert_eq!(operation_label(&Method::GET, "http://x/v1/Keys?AccountSid=AC1"), "list_keys");
        assert_eq!(operation_label(&Method::GET, "http://x/v1/Keys/SK1"), "fetch_key");
        assert_eq!(operation_label(&Method::POST, "http://x/v1/Keys/SK1"), "update_key");
        assert_eq!(operation_label(&Method::DELETE, "http://x/v1/Keys/SK1"), "delete_key");
    }

    fn account(base_url: &str) -> AccountConnection {
        AccountConnection {
            tenant: String::new(),
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            region: "us1".into(),
            edge: None,
            base_url: base_url.into(),
            credentials: Credentials {
                username: "AC0123456789abcdef0123456789abcdef".into(),
                password: SecretString::from("token"),
            },
        }
    }

    const QUERY: &str = "AccountSid=AC0123456789abcdef0123456789abcdef&PageSize=50&Page=1&PageToken=PT9";

    #[test]
    fn next_pages_stay_on_twilio_hosts() {
        let twilio = account("https://iam.twilio.com");
        let next = |url: &str| next_page_request(&Endpoint::Twilio, &twilio, url);
        assert_eq!(
            next(&format!("https://iam.twilio.com/v1/Keys?{QUERY}")).unwrap(),
            format!("https://iam.twilio.com/v1/Keys?{QUERY}")
        );
        assert_eq!(next(&format!("/v1/Keys?{QUERY}")).unwrap(), format!("https://iam.twilio.com/v1/Keys?{QUERY}"));
        assert_eq!(next("https://iam.twilio.com:443/v1/Keys").unwrap(), "https://iam.twilio.com/v1/Keys");
        for foreign in [
            format!("https://evil.example/v1/Keys?{QUERY}"),
            format!("http://iam.twilio.com/v1/Keys?{QUERY}"),
            format!("https://iam.twilio.com:8443/v1/Keys?{QUERY}"),
            format!("https://iam.twilio.com.evil.example/v1/Keys?{QUERY}"),
            format!("https://iam.twilio.com@evil.example/v1/Keys?{QUERY}"),
            format!("//evil.example/v1/Keys?{QUERY}"),
            format!("/\\evil.example/v1/Keys?{QUERY}"),
            format!("https://api.twilio.com/v1/Keys?{QUERY}"),
        ] {
            let err = next(&foreign).expect_err(&foreign);
            assert!(matches!(err, TwilioError::Decode(_)), "{foreign}: {err}");
        }
        let regional = account("https://iam.dublin.ie1.twilio.com");
        assert!(next_page_request(&Endpoint::Twilio, &regional, "https://iam.twilio.com/v1/Keys").is_err());
    }

    #[test]
    fn next_pages_are_only_the_keys_list() {
        let twilio = account("https://iam.twilio.com");
        for path in [
            "/v1/Keys/SK0123456789abcdef0123456789abcdef",
            "/v1/Keys/",
            "/v1/keys",
            "/v1/Accounts",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Keys.json",
            "/v2/Keys",
            "/",
            "/evil",
            "/v1/Keys%2F..%2Fother",
            "/x/v1/Keys",
        ] {
            let url = format!("https://iam.twilio.com{path}?{QUERY}");
            let err = next_page_request(&Endpoint::Twilio, &twilio, &url).expect_err(&url);
            assert!(err.to_string().contains("path is not /v1/Keys"), "{url}: {err}");
        }
        for junk in ["", "not a url", "ftp://iam.twilio.com/v1/Keys", "javascript:alert(1)", "mailto:a@b"] {
            assert!(next_page_request(&Endpoint::Twilio, &twilio, junk).is_err(), "{junk}");
        }
        let other_account = "https://iam.twilio.com/v1/Keys?AccountSid=AC99999999999999999999999999999999&Page=1";
        let err = next_page_request(&Endpoint::Twilio, &twilio, other_account).unwrap_err();
        assert!(err.to_string().contains("another account"), "{err}");
    }

    #[test]
    fn an_override_endpoint_keeps_every_page_on_its_base_url() {
        let endpoint = Endpoint::Override("http://127.0.0.1:9".into());
        let fake = account("http://127.0.0.1:9");
        let expected = format!("http://127.0.0.1:9/v1/Keys?{QUERY}");
        for next in [
            format!("http://127.0.0.1:9/v1/Keys?{QUERY}"),
            format!("https://iam.twilio.com/v1/Keys?{QUERY}"),
            format!("http://127.0.0.2:4000/v1/Keys?{QUERY}#fragment"),
            format!("/v1/Keys?{QUERY}"),
        ] {
            assert_eq!(next_page_request(&endpoint, &fake, &next).unwrap(), expected, "{next}");
        }
        for bad in
            ["http://127.0.0.2:4000/evil?AccountSid=AC1", "http://127.0.0.1:9/v1/Keys/SK1", "http://127.0.0.1:9/"]
        {
            assert!(next_page_request(&endpoint, &fake, bad).is_err(), "{bad}");
        }
        // A base URL with a path (a proxy): Twilio's own path and the proxied one are both fine.
        let proxied = account("http://proxy.local/twilio");
        let endpoint = Endpoint::Override("http://proxy.local/twilio".into());
        for next in
            [format!("https://iam.twilio.com/v1/Keys?{QUERY}"), format!("http://proxy.local/twilio/v1/Keys?{QUERY}")]
        {
            assert_eq!(
                next_page_request(&endpoint, &proxied, &next).unwrap(),
                format!("http://proxy.local/twilio/v1/Keys?{QUERY}")
            );
        }
        assert!(next_page_request(&endpoint, &proxied, "http://proxy.local/other/v1/Keys").is_err());
    }

    #[test]
    fn refusals_name_the_url_without_credentials_or_query() {
        let twilio = account("https://iam.twilio.com");
        let url = "https://user:hunter2@evil.example:8443/v1/Keys?AccountSid=AC0123456789abcdef0123456789abcdef&PageToken=secretish";
        let message = next_page_request(&Endpoint::Twilio, &twilio, url).unwrap_err().to_string();
        assert!(message.contains("https://evil.example:8443/v1/Keys"), "{message}");
        assert!(message.contains("not on https://iam.twilio.com"), "{message}");
        for hidden in ["hunter2", "user", "PageToken", "token"] {
            assert!(!message.contains(hidden), "{hidden} in {message}");
        }
        let long = format!("https://evil.example/{}", "a".repeat(5000));
        assert!(next_page_request(&Endpoint::Twilio, &twilio, &long).unwrap_err().to_string().len() < 300);
    }
}
