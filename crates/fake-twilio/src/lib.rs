//! A stateful fake of Twilio's Keys APIs (IAM v1 `/v1/Keys` and v2010 `/Accounts/{Sid}/Keys`),
//! its auth token rotation (Accounts v1 `/v1/AuthTokens/*`) and subaccounts (v2010
//! `/Accounts.json`, `/Accounts/{Sid}.json`), faithful to the official OpenAPI specs where the
//! operator depends on them: Basic auth against
//! the accounts it was started with, secrets returned only at creation, Twilio-shaped errors,
//! pagination by next-page URL, and injectable faults (a share of 429/5xx, added latency).
//!
//! It runs as its own binary (`fake-twilio`, used by the demo) or inside a test process, where
//! [`FakeTwilio`] gives direct access to its state. `/_fake/*` endpoints expose the same state
//! over HTTP.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An account the fake knows, with the auth token that authenticates as it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FakeAccount {
    pub sid: String,
    pub auth_token: String,
}

/// Injected failures for every Twilio endpoint (not `/_fake/*`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Faults {
    /// Share of requests, 0.0 to 1.0, answered with 429 or 503 before being processed.
    pub error_rate: f64,
    /// Added to every request, before it is processed.
    pub latency_ms: u64,
    /// Added to every answer after the request took effect: a client that gives up or dies
    /// meanwhile does not learn the outcome (for a create, the only copy of the secret).
    #[serde(default)]
    pub response_delay_ms: u64,
}

/// A way for the IAM v1 listing (`GET /v1/Keys`) to misbehave, set with
/// [`FakeTwilio::set_listing_fault`]. The keys on each page stay right; only `meta.next_page_url`
/// lies, as a broken proxy, a hostile server or a buggy mock could.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingFault {
    /// Pages that have a next page name it on this origin (e.g. `http://127.0.0.2:4000`) instead
    /// of the fake's own; path and query stay the same.
    NextPageOrigin(String),
    /// Every page, the last included, names exactly this URL as its next page.
    NextPageUrl(String),
    /// Every page names a next page with a new page number, forever (each such page holds the
    /// first keys again): a listing that never ends and never repeats a URL.
    EndlessPages,
}

/// A way for the fake to answer as a hostile or broken server would, set with
/// [`FakeTwilio::set_answer_fault`]: what the operator reads from Twilio must stay bounded and
/// harmless whatever comes back.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFault {
    /// Key listings (`GET /v1/Keys`) answer their page as usual, followed by this many spaces: a
    /// valid JSON document of any size.
    PaddedListings(usize),
    /// Key creations (`POST /v1/Keys`) are refused with HTTP 400 and this message.
    RejectCreates(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FakeKeyType {
    Main,
    Standard,
    Restricted,
}

/// A key as the fake stores it, secret included.
#[derive(Clone, Debug, Serialize)]
pub struct FakeKey {
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    #[serde(skip_serializing)]
    pub secret: String,
    pub key_type: FakeKeyType,
    pub policy: Option<Value>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
    #[serde(skip)]
    seq: u64,
}

/// One request as the fake saw it, for conformance checks.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub status: u16,
    pub response: Option<Value>,
}

#[derive(Default)]
struct Store {
    accounts: HashMap<String, FakeAccount>,
    keys: BTreeMap<String, FakeKey>,
    next_seq: u64,
    faults: Faults,
    /// Requests by "operation status", e.g. "create_key 201".
    counts: BTreeMap<String, u64>,
    recorded: Vec<RecordedRequest>,
    record: bool,
    listing_fault: Option<ListingFault>,
    answer_fault: Option<AnswerFault>,
    /// Key SID -> how many more listings leave it out (usize::MAX: until cleared).
    hidden_from_listings: HashMap<String, usize>,
    /// Key SID -> DELETE requests for it that reached the handler, whatever the answer.
    delete_calls: BTreeMap<String, u64>,
    /// Key SIDs deleted through the API (v1 or v2010), in order.
    deleted: Vec<String>,
    /// Account SID -> how long each of its key listings takes before it is answered.
    slow_listings: HashMap<String, Duration>,
    /// Failures planned for the next requests of an operation, in order (see [`FakeTwilio::fail_next`]).
    planned_failures: Vec<PlannedFailure>,
    /// Basic-auth user name (an account or key SID) -> how its requests authenticated.
    authentications: BTreeMap<String, Authentications>,
    /// Account SID -> its secondary auth token and when it was made (Accounts v1 AuthTokens).
    secondary_tokens: HashMap<String, (String, Timestamp)>,
    /// Subaccounts made through `POST /2010-04-01/Accounts.json`, and accounts whose status or
    /// name changed; an account without an entry is an active main account.
    account_details: HashMap<String, AccountDetails>,
}

/// What the fake knows of an account besides its auth token.
#[derive(Clone, Debug)]
struct AccountDetails {
    owner: String,
    friendly_name: String,
    /// active, suspended or closed (closed is final).
    status: String,
    created: Timestamp,
    updated: Timestamp,
}

/// A failure planned for the next request of an operation.
#[derive(Clone, Debug)]
struct PlannedFailure {
    operation: String,
    status: u16,
    after_effect: bool,
}

/// How the requests made as one user authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Authentications {
    pub accepted: u64,
    pub refused: u64,
}

struct Shared {
    store: Mutex<Store>,
    base_url: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock would be a bug in the fake; keep serving regardless.
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake. Dropping it stops the server.
pub struct FakeTwilio {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeTwilio {
    /// Starts the fake on `addr` (port 0 picks a free one) with the given accounts.
    pub async fn start(addr: SocketAddr, accounts: Vec<FakeAccount>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = Store { accounts: accounts.into_iter().map(|a| (a.sid.clone(), a)).collect(), ..Store::default() };
        let shared = Arc::new(Shared { store: Mutex::new(store), base_url: format!("http://{addr}") });
        let mut fake = Self { shared, addr, shutdown: None, server: None };
        fake.serve(listener);
        Ok(fake)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        }));
        self.shutdown = Some(tx);
    }

    /// Stops answering (connections are refused), keeping every key: Twilio is unreachable.
    pub async fn stop_serving(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Serves again on the same address, with the same state.
    pub async fn resume_serving(&mut self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Records every Twilio request from now on, for conformance checks.
    pub fn record_requests(&self, on: bool) {
        self.shared.lock().record = on;
    }

    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().recorded.clone()
    }

    /// Every key the fake holds, with secrets.
    pub fn keys(&self) -> Vec<FakeKey> {
        self.shared.lock().keys.values().cloned().collect()
    }

    pub fn key(&self, sid: &str) -> Option<FakeKey> {
        self.shared.lock().keys.get(sid).cloned()
    }

    /// Whether `sid:secret` authenticates against `account_sid`, as a client using the key would.
    pub fn accepts_key_pair(&self, account_sid: &str, sid: &str, secret: &str) -> bool {
        let store = self.shared.lock();
        store.keys.get(sid).is_some_and(|k| k.account_sid == account_sid && k.secret == secret)
    }

    /// Adds an account (or replaces its auth token).
    /// The account's auth token now (it changes when a secondary is promoted).
    pub fn auth_token(&self, account_sid: &str) -> Option<String> {
        self.shared.lock().accounts.get(account_sid).map(|a| a.auth_token.clone())
    }

    /// The account's secondary auth token, if it has one.
    pub fn secondary_auth_token(&self, account_sid: &str) -> Option<String> {
        self.shared.lock().secondary_tokens.get(account_sid).map(|(token, _)| token.clone())
    }

    /// A subaccount's status (active, suspended, closed) and the account that owns it.
    pub fn account_status(&self, account_sid: &str) -> Option<(String, String)> {
        let store = self.shared.lock();
        match store.account_details.get(account_sid) {
            Some(d) => Some((d.status.clone(), d.owner.clone())),
            None => store.accounts.contains_key(account_sid).then(|| ("active".into(), account_sid.into())),
        }
    }

    pub fn add_account(&self, sid: &str, auth_token: &str) {
        let account = FakeAccount { sid: sid.into(), auth_token: auth_token.into() };
        self.shared.lock().accounts.insert(sid.into(), account);
    }

    /// Creates a Main key, which (like an auth token) may manage keys. Returns (sid, secret).
    pub fn add_main_key(&self, account_sid: &str) -> (String, String) {
        let mut store = self.shared.lock();
        let key = store.insert_key(account_sid, "main key", FakeKeyType::Main, None);
        (key.sid, key.secret)
    }

    /// Deletes a key out of band, as someone using the Twilio Console would.
    pub fn delete_key(&self, sid: &str) -> bool {
        self.shared.lock().keys.remove(sid).is_some()
    }

    /// Renames a key out of band, as someone using the Twilio Console would.
    pub fn rename_key(&self, sid: &str, friendly_name: &str) -> bool {
        let mut store = self.shared.lock();
        let Some(key) = store.keys.get_mut(sid) else { return false };
        key.friendly_name = friendly_name.to_string();
        true
    }

    /// Requests served by "operation status", e.g. "create_key 201" -> 3.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().counts.clone()
    }

    /// How the requests made as each user (an account or key SID) authenticated so far.
    pub fn authentications(&self) -> BTreeMap<String, Authentications> {
        self.shared.lock().authentications.clone()
    }

    /// Listing requests (one per page, v1 and v2010) served so far, whatever their status.
    pub fn list_requests(&self) -> u64 {
        let store = self.shared.lock();
        store.counts.iter().filter(|(k, _)| k.starts_with("list_keys ")).map(|(_, n)| n).sum()
    }

    /// Answers the next request of `operation` (as the request counts name them: `create_key`,
    /// `update_key`, `delete_key`, `fetch_key`, `list_keys`) with HTTP `status` instead of
    /// carrying it out; with `after_effect`, carries it out first and loses the answer (as a
    /// timeout does). Planned failures of one operation come in the order they were planned.
    pub fn fail_next(&self, operation: &str, status: u16, after_effect: bool) {
        let failure = PlannedFailure { operation: operation.to_string(), status, after_effect };
        self.shared.lock().planned_failures.push(failure);
    }

    /// Makes `GET /v1/Keys` hand out wrong next-page URLs from now on (None: behave again).
    pub fn set_answer_fault(&self, fault: Option<AnswerFault>) {
        self.shared.lock().answer_fault = fault;
    }

    pub fn set_listing_fault(&self, fault: Option<ListingFault>) {
        self.shared.lock().listing_fault = fault;
    }

    /// Leaves key `sid` out of the next `times` listings that would have shown it (v1 and v2010;
    /// one page request counts once), as an eventually consistent listing could. `usize::MAX`
    /// hides it until [`FakeTwilio::show_in_listings`]. Fetching it by SID still finds it.
    pub fn hide_from_listings(&self, sid: &str, times: usize) {
        let mut store = self.shared.lock();
        if times == 0 {
            store.hidden_from_listings.remove(sid);
        } else {
            store.hidden_from_listings.insert(sid.to_string(), times);
        }
    }

    /// Lists key `sid` again, ending [`FakeTwilio::hide_from_listings`].
    pub fn show_in_listings(&self, sid: &str) {
        self.shared.lock().hidden_from_listings.remove(sid);
    }

    /// How many more listings leave key `sid` out (0 once it is listed again).
    pub fn listings_hidden_left(&self, sid: &str) -> usize {
        self.shared.lock().hidden_from_listings.get(sid).copied().unwrap_or(0)
    }

    /// Creates a Standard key in `account_sid` out of band, as a person using the Twilio Console
    /// would (no request is counted). Returns its SID; the secret is in [`FakeTwilio::key`].
    pub fn create_key_directly(&self, account_sid: &str, friendly_name: &str) -> String {
        self.shared.lock().insert_key(account_sid, friendly_name, FakeKeyType::Standard, None).sid
    }

    /// The friendly name of key `sid`, or None if no such key exists.
    pub fn friendly_name(&self, sid: &str) -> Option<String> {
        self.shared.lock().keys.get(sid).map(|k| k.friendly_name.clone())
    }

    /// DELETE requests for key `sid` (v1 or v2010) that got past injected faults, whatever their
    /// answer (204, 404, 401...).
    pub fn delete_calls(&self, sid: &str) -> u64 {
        self.shared.lock().delete_calls.get(sid).copied().unwrap_or(0)
    }

    /// Makes every key listing of one account take `delay` before it is answered (other
    /// accounts are unaffected), as an account with a huge inventory or a slow edge would.
    pub fn slow_listings(&self, account_sid: &str, delay: Duration) {
        self.shared.lock().slow_listings.insert(account_sid.to_string(), delay);
    }

    /// SIDs of the keys deleted through the API (v1 or v2010), in order; out-of-band
    /// [`FakeTwilio::delete_key`] calls are not included.
    pub fn deleted_sids(&self) -> Vec<String> {
        self.shared.lock().deleted.clone()
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Store {
    fn insert_key(
        &mut self,
        account_sid: &str,
        friendly_name: &str,
        key_type: FakeKeyType,
        policy: Option<Value>,
    ) -> FakeKey {
        let mut rng = rand::rng();
        let sid = format!("SK{:032x}", rng.random::<u128>());
        let secret: String = (0..32)
            .map(|_| {
                char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.random_range(0..62)])
            })
            .collect();
        let now = Timestamp::now();
        self.next_seq += 1;
        let key = FakeKey {
            sid: sid.clone(),
            account_sid: account_sid.to_string(),
            friendly_name: friendly_name.to_string(),
            secret,
            key_type,
            policy,
            date_created: now,
            date_updated: now,
            seq: self.next_seq,
        };
        self.keys.insert(sid, key.clone());
        key
    }
}

/// Who a request authenticated as.
enum Principal {
    /// An auth token or a Main key: may manage keys of this account.
    Manager(String),
    /// A Standard or Restricted key: may use the account's APIs but not manage keys.
    KeyUser(String),
}

fn rfc2822(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// An error answered in Twilio's classic shape.
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Twilio API\""));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type Answer = Result<Response, ApiError>;

fn twilio_error(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
    ApiError { status, code, message: message.into() }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    twilio_error(StatusCode::BAD_REQUEST, 20001, message)
}

fn not_found(path: &str) -> ApiError {
    twilio_error(StatusCode::NOT_FOUND, 20404, format!("The requested resource {path} was not found"))
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let unauthorized = || twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(unauthorized)?;
    let (user, password) = decoded.split_once(':').ok_or_else(unauthorized)?;
    let mut store = shared.lock();
    // A suspended or closed account authenticates no request, with its auth token or its keys.
    let active = |store: &Store, account: &str| {
        store.account_details.get(account).is_none_or(|details| details.status == "active")
    };
    let principal = if let Some(account) = store.accounts.get(user) {
        // While an account has a secondary auth token, both authenticate.
        let secondary = store.secondary_tokens.get(user).map(|(token, _)| token.as_str());
        let valid = account.auth_token == password || secondary == Some(password);
        (valid && active(&store, user)).then(|| Principal::Manager(account.sid.clone()))
    } else {
        store.keys.get(user).filter(|key| key.secret == password && active(&store, &key.account_sid)).map(|key| {
            match key.key_type {
                FakeKeyType::Main => Principal::Manager(key.account_sid.clone()),
                _ => Principal::KeyUser(key.account_sid.clone()),
            }
        })
    };
    let tally = store.authentications.entry(user.to_string()).or_default();
    match principal {
        Some(principal) => {
            tally.accepted += 1;
            Ok(principal)
        }
        None => {
            tally.refused += 1;
            Err(unauthorized())
        }
    }
}

/// The account a request may manage keys in, or the error Twilio gives.
fn manager_of(shared: &Shared, headers: &HeaderMap) -> Result<String, ApiError> {
    match authenticate(shared, headers)? {
        Principal::Manager(account) => Ok(account),
        Principal::KeyUser(_) => Err(twilio_error(
            StatusCode::FORBIDDEN,
            20003,
            "Permission Denied: only the auth token or a Main key may manage API keys",
        )),
    }
}

fn forbidden_account() -> ApiError {
    twilio_error(StatusCode::FORBIDDEN, 20003, "Permission Denied: credentials do not belong to this account")
}

fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34 && value.starts_with(prefix) && value[2..].chars().all(|c| c.is_ascii_hexdigit())
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn reject_unknown(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    match params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(bad_request(format!("Unknown parameter {k}"))),
        None => Ok(()),
    }
}

fn check_friendly_name(name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(name) if name.chars().count() > 64 => Err(bad_request("FriendlyName must be at most 64 characters")),
        _ => Ok(()),
    }
}

fn parse_policy(raw: &str) -> Result<Value, ApiError> {
    let policy: Value = serde_json::from_str(raw).map_err(|_| bad_request("Policy must be a JSON document"))?;
    let allow =
        policy.get("allow").and_then(Value::as_array).ok_or_else(|| bad_request("Policy must have an allow list"))?;
    if allow.is_empty() || allow.len() > 100 {
        return Err(bad_request("Policy allow list must hold 1 to 100 permissions"));
    }
    if !allow.iter().all(|p| p.as_str().is_some_and(|s| s.starts_with('/'))) {
        return Err(bad_request("Policy permissions must be strings such as /twilio/messaging/messages/create"));
    }
    Ok(policy)
}

fn v1_key_json(key: &FakeKey, with_secret: bool) -> Value {
    let mut body = json!({
        "sid": key.sid,
        "friendly_name": key.friendly_name,
        "date_created": rfc2822(key.date_created),
        "date_updated": rfc2822(key.date_updated),
        "policy": key.policy,
    });
    if with_secret {
        body["secret"] = json!(key.secret);
    }
    body
}

fn v2010_key_json(key: &FakeKey, with_secret: bool) -> Value {
    let mut body = json!({
        "sid": key.sid,
        "friendly_name": key.friendly_name,
        "date_created": rfc2822(key.date_created),
        "date_updated": rfc2822(key.date_updated),
    });
    if with_secret {
        body["secret"] = json!(key.secret);
    }
    body
}

/// Page size and the position after which a page starts, from Twilio's paging parameters.
fn paging(params: &Params) -> Result<(usize, u64, u64), ApiError> {
    let size = match param(params, "PageSize") {
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad_request("PageSize must be between 1 and 1000")),
        },
        None => 50,
    };
    let page = match param(params, "Page") {
        Some(raw) => raw.parse::<u64>().map_err(|_| bad_request("Page must be a number"))?,
        None => 0,
    };
    let after = match param(params, "PageToken") {
        Some(token) => token
            .strip_prefix("PT")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| twilio_error(StatusCode::BAD_REQUEST, 21481, "Invalid PageToken"))?,
        None if page > 0 => {
            return Err(twilio_error(StatusCode::BAD_REQUEST, 21481, "Invalid PageToken"));
        }
        None => 0,
    };
    Ok((size, page, after))
}

/// One page of an account's keys in creation order, and the token of the next page if any.
/// Keys hidden with [`FakeTwilio::hide_from_listings`] are left out, and each one this page
/// would have shown uses up one of its hidden listings.
fn page_of(store: &mut Store, account: &str, size: usize, after: u64) -> (Vec<FakeKey>, Option<String>) {
    let mut keys: Vec<&FakeKey> = store
        .keys
        .values()
        .filter(|k| k.account_sid == account && k.seq > after && k.key_type != FakeKeyType::Main)
        .collect();
    keys.sort_by_key(|k| k.seq);
    let (hidden, visible): (Vec<&FakeKey>, Vec<&FakeKey>) =
        keys.into_iter().partition(|k| store.hidden_from_listings.get(&k.sid).is_some_and(|n| *n > 0));
    let more = visible.len() > size;
    let page: Vec<FakeKey> = visible.into_iter().take(size).cloned().collect();
    let next = if more { page.last().map(|k| format!("PT{:x}", k.seq)) } else { None };
    let covered_until = if more { page.last().map_or(u64::MAX, |k| k.seq) } else { u64::MAX };
    let skipped: Vec<String> = hidden.iter().filter(|k| k.seq <= covered_until).map(|k| k.sid.clone()).collect();
    for sid in skipped {
        if let Some(left) = store.hidden_from_listings.get_mut(&sid)
            && *left != usize::MAX
        {
            *left -= 1;
            if *left == 0 {
                store.hidden_from_listings.remove(&sid);
            }
        }
    }
    (page, next)
}

async fn v1_list(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(params): Query<Params>) -> Answer {
    let manager = manager_of(&shared, &headers)?;
    reject_unknown(&params, &["AccountSid", "PageSize", "Page", "PageToken"])?;
    let Some(account) = param(&params, "AccountSid") else {
        return Err(bad_request("Missing required parameter AccountSid in the query string"));
    };
    if !is_sid(account, "AC") {
        return Err(bad_request("AccountSid must be AC followed by 32 hex digits"));
    }
    if account != manager {
        return Err(forbidden_account());
    }
    let delay = shared.lock().slow_listings.get(account).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (size, page, after) = paging(&params)?;
    let mut store = shared.lock();
    let (keys, next) = page_of(&mut store, account, size, after);
    let base = format!("{}/v1/Keys?AccountSid={account}&PageSize={size}", shared.base_url);
    let mut next_page_url = next.map(|t| format!("{base}&Page={}&PageToken={t}", page + 1));
    match &store.listing_fault {
        None => {}
        Some(ListingFault::NextPageOrigin(origin)) => {
            next_page_url = next_page_url.map(|url| format!("{origin}{}", &url[shared.base_url.len()..]));
        }
        Some(ListingFault::NextPageUrl(url)) => next_page_url = Some(url.clone()),
        Some(ListingFault::EndlessPages) => next_page_url = Some(format!("{base}&Page={}&PageToken=PT0", page + 1)),
    }
    drop(store);
    let this_url = match param(&params, "PageToken") {
        Some(token) => format!("{base}&Page={page}&PageToken={token}"),
        None => format!("{base}&Page={page}"),
    };
    let items: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "sid": k.sid,
                "friendly_name": k.friendly_name,
                "date_created": rfc2822(k.date_created),
                "date_updated": rfc2822(k.date_updated),
                "flags": ["rest_api", "signing"],
            })
        })
        .collect();
    let answer = json!({
        "keys": items,
        "meta": {
            "page": page,
            "page_size": size,
            "first_page_url": format!("{base}&Page=0"),
            "previous_page_url": Value::Null,
            "url": this_url,
            "next_page_url": next_page_url,
            "key": "keys",
        }
    });
    let padding = match shared.lock().answer_fault {
        Some(AnswerFault::PaddedListings(spaces)) => spaces,
        _ => 0,
    };
    if padding > 0 {
        let mut body = answer.to_string();
        body.push_str(&" ".repeat(padding));
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    Ok(Json(answer).into_response())
}

async fn v1_create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Answer {
    let manager = manager_of(&shared, &headers)?;
    let params: Params = form_body(&headers, &body)?;
    reject_unknown(&params, &["AccountSid", "FriendlyName", "KeyType", "Policy"])?;
    let Some(account) = param(&params, "AccountSid") else {
        return Err(bad_request("Missing required parameter AccountSid in the post body"));
    };
    if !is_sid(account, "AC") {
        return Err(bad_request("AccountSid must be AC followed by 32 hex digits"));
    }
    if account != manager {
        return Err(forbidden_account());
    }
    if let Some(AnswerFault::RejectCreates(message)) = shared.lock().answer_fault.clone() {
        return Err(bad_request(message));
    }
    let friendly_name = param(&params, "FriendlyName");
    check_friendly_name(friendly_name)?;
    let (key_type, policy) = match (param(&params, "KeyType"), param(&params, "Policy")) {
        (None, None) => (FakeKeyType::Standard, None),
        (Some("restricted"), Some(raw)) => (FakeKeyType::Restricted, Some(parse_policy(raw)?)),
        (Some("restricted"), None) => return Err(bad_request("Policy is required for a restricted key")),
        (None, Some(_)) => return Err(bad_request("Policy is only allowed for a restricted key")),
        (Some(other), _) => {
            return Err(bad_request(format!("KeyType {other} is not valid; the only value is restricted")));
        }
    };
    let key = shared.lock().insert_key(account, friendly_name.unwrap_or(""), key_type, policy);
    Ok((StatusCode::CREATED, Json(v1_key_json(&key, true))).into_response())
}

async fn v1_fetch(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(sid): Path<String>) -> Answer {
    let manager = manager_of(&shared, &headers)?;
    match shared.lock().keys.get(&sid) {
        Some(key) if key.account_sid == manager => Ok(Json(v1_key_json(key, false)).into_response()),
        _ => Err(not_found(&format!("/v1/Keys/{sid}"))),
    }
}

async fn v1_update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    body: String,
) -> Answer {
    let manager = manager_of(&shared, &headers)?;
    let params: Params = form_body(&headers, &body)?;
    reject_unknown(&params, &["FriendlyName", "Policy"])?;
    check_friendly_name(param(&params, "FriendlyName"))?;
    let policy = param(&params, "Policy").map(parse_policy).transpose()?;
    let mut store = shared.lock();
    let Some(key) = store.keys.get_mut(&sid).filter(|k| k.account_sid == manager) else {
        return Err(not_found(&format!("/v1/Keys/{sid}")));
    };
    if policy.is_some() && key.key_type != FakeKeyType::Restricted {
        return Err(bad_request("Policy can only be updated on a restricted key"));
    }
    if let Some(name) = param(&params, "FriendlyName") {
        key.friendly_name = name.to_string();
    }
    if let Some(policy) = policy {
        key.policy = Some(policy);
    }
    key.date_updated = Timestamp::now();
    Ok(Json(v1_key_json(key, false)).into_response())
}

async fn v1_delete(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(sid): Path<String>) -> Answer {
    *shared.lock().delete_calls.entry(sid.clone()).or_default() += 1;
    let manager = manager_of(&shared, &headers)?;
    let mut store = shared.lock();
    match store.keys.get(&sid) {
        Some(key) if key.account_sid == manager => {
            store.keys.remove(&sid);
            store.deleted.push(sid);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(not_found(&format!("/v1/Keys/{sid}"))),
    }
}

fn v2010_manager(shared: &Shared, headers: &HeaderMap, account: &str) -> Result<(), ApiError> {
    let manager = manager_of(shared, headers)?;
    if manager != account {
        return Err(forbidden_account());
    }
    Ok(())
}

async fn v2010_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(params): Query<Params>,
) -> Answer {
    v2010_manager(&shared, &headers, &account)?;
    reject_unknown(&params, &["PageSize", "Page", "PageToken"])?;
    let (size, page, after) = paging(&params)?;
    let mut store = shared.lock();
    let (keys, next) = page_of(&mut store, &account, size, after);
    let base = format!("/2010-04-01/Accounts/{account}/Keys.json?PageSize={size}");
    let start = page as usize * size;
    Ok(Json(json!({
        "keys": keys.iter().map(|k| v2010_key_json(k, false)).collect::<Vec<_>>(),
        "first_page_uri": format!("{base}&Page=0"),
        "previous_page_uri": Value::Null,
        "uri": format!("{base}&Page={page}"),
        "next_page_uri": next.map(|t| format!("{base}&Page={}&PageToken={t}", page + 1)),
        "page": page,
        "page_size": size,
        "start": start,
        "end": start + keys.len().saturating_sub(1),
    }))
    .into_response())
}

async fn v2010_create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    body: String,
) -> Answer {
    v2010_manager(&shared, &headers, &account)?;
    let params = form_body(&headers, &body)?;
    reject_unknown(&params, &["FriendlyName"])?;
    let friendly_name = param(&params, "FriendlyName");
    check_friendly_name(friendly_name)?;
    let key = shared.lock().insert_key(&account, friendly_name.unwrap_or(""), FakeKeyType::Standard, None);
    Ok((StatusCode::CREATED, Json(v2010_key_json(&key, true))).into_response())
}

fn strip_json(segment: &str) -> Option<&str> {
    segment.strip_suffix(".json")
}

async fn v2010_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((account, sid_json)): Path<(String, String)>,
    method: axum::http::Method,
    body: String,
) -> Answer {
    let path = format!("/2010-04-01/Accounts/{account}/Keys/{sid_json}");
    let Some(sid) = strip_json(&sid_json) else {
        return Err(not_found(&path));
    };
    if method == axum::http::Method::DELETE {
        *shared.lock().delete_calls.entry(sid.to_string()).or_default() += 1;
    }
    v2010_manager(&shared, &headers, &account)?;
    let params = if method == axum::http::Method::POST { form_body(&headers, &body)? } else { Vec::new() };
    let mut store = shared.lock();
    let Some(key) = store.keys.get_mut(sid).filter(|k| k.account_sid == account) else {
        return Err(not_found(&path));
    };
    match method {
        axum::http::Method::GET => Ok(Json(v2010_key_json(key, false)).into_response()),
        axum::http::Method::POST => {
            reject_unknown(&params, &["FriendlyName"])?;
            check_friendly_name(param(&params, "FriendlyName"))?;
            if let Some(name) = param(&params, "FriendlyName") {
                key.friendly_name = name.to_string();
            }
            key.date_updated = Timestamp::now();
            Ok(Json(v2010_key_json(key, false)).into_response())
        }
        _ => {
            store.keys.remove(sid);
            store.deleted.push(sid.to_string());
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// `GET /2010-04-01/Accounts/{Sid}.json`: what a client does to check that a key pair works.
/// Any key of the account authenticates here, Standard and Restricted included.
async fn v2010_account(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(sid_json): Path<String>) -> Answer {
    let path = format!("/2010-04-01/Accounts/{sid_json}");
    let Some(sid) = strip_json(&sid_json) else {
        return Err(not_found(&path));
    };
    let (Principal::Manager(account) | Principal::KeyUser(account)) = authenticate(&shared, &headers)?;
    let store = shared.lock();
    let details = store.account_details.get(sid).cloned();
    // The account itself, or (with its auth token or Main key) the account that owns it.
    let owner_asks = details.as_ref().is_some_and(|d| d.owner == account && d.owner != sid);
    if account != sid && !owner_asks {
        return Err(forbidden_account());
    }
    Ok(Json(account_json(sid, details.as_ref(), None)).into_response())
}

/// An account as v2010 answers it; its auth token only when it was just created.
fn account_json(sid: &str, details: Option<&AccountDetails>, auth_token: Option<&str>) -> Value {
    let now = Timestamp::now();
    let (owner, name, status, created, updated) = match details {
        Some(d) => (d.owner.as_str(), d.friendly_name.as_str(), d.status.as_str(), d.created, d.updated),
        None => (sid, "fake account", "active", now, now),
    };
    json!({
        "auth_token": auth_token,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(updated),
        "friendly_name": name,
        "owner_account_sid": owner,
        "sid": sid,
        "status": status,
        "subresource_uris": {"keys": format!("/2010-04-01/Accounts/{sid}/Keys.json")},
        "type": "Full",
        "uri": format!("/2010-04-01/Accounts/{sid}.json"),
    })
}

fn random_token() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// The account whose auth token (primary or secondary) authenticated the request: auth tokens
/// are managed with an auth token, not with an API key, not even a Main key.
fn token_holder(shared: &Shared, headers: &HeaderMap) -> Result<String, ApiError> {
    let account = manager_of(shared, headers)?;
    if basic_user(headers).as_deref() != Some(account.as_str()) {
        return Err(twilio_error(
            StatusCode::FORBIDDEN,
            20003,
            "Permission Denied: auth tokens are managed with the account's auth token",
        ));
    }
    Ok(account)
}

/// `POST /v1/AuthTokens/Secondary` (Accounts v1): a new secondary auth token, shown this once;
/// it replaces any earlier secondary. Until it is promoted or deleted, both tokens authenticate.
async fn create_secondary_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Answer {
    let account = token_holder(&shared, &headers)?;
    let token = random_token();
    let now = Timestamp::now();
    shared.lock().secondary_tokens.insert(account.clone(), (token.clone(), now));
    let body = json!({
        "account_sid": account,
        "date_created": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "date_updated": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "secondary_auth_token": token,
        "url": "https://accounts.twilio.com/v1/AuthTokens/Secondary",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/AuthTokens/Secondary`: the secondary auth token no longer authenticates.
async fn delete_secondary_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Answer {
    let account = token_holder(&shared, &headers)?;
    match shared.lock().secondary_tokens.remove(&account) {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(not_found("/v1/AuthTokens/Secondary")),
    }
}

/// `POST /v1/AuthTokens/Promote`: the secondary auth token becomes the primary; the old primary
/// fails from this request on.
async fn promote_secondary_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Answer {
    let account = token_holder(&shared, &headers)?;
    let mut store = shared.lock();
    let Some((token, created)) = store.secondary_tokens.remove(&account) else {
        return Err(bad_request("There is no secondary auth token to promote"));
    };
    if let Some(entry) = store.accounts.get_mut(&account) {
        entry.auth_token = token.clone();
    }
    let now = Timestamp::now();
    let body = json!({
        "account_sid": account,
        "auth_token": token,
        "date_created": created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "date_updated": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "url": "https://accounts.twilio.com/v1/AuthTokens/Promote",
    });
    Ok(Json(body).into_response())
}

/// `POST /2010-04-01/Accounts.json`: a subaccount of the requesting (main) account, with its own
/// auth token, shown this once.
async fn create_subaccount(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Answer {
    let parent = manager_of(&shared, &headers)?;
    let params = form_body(&headers, &body)?;
    reject_unknown(&params, &["FriendlyName"])?;
    let mut store = shared.lock();
    if store.account_details.get(&parent).is_some_and(|d| d.owner != parent) {
        return Err(twilio_error(
            StatusCode::FORBIDDEN,
            20003,
            "Permission Denied: a subaccount cannot create subaccounts",
        ));
    }
    let sid = format!("AC{:032x}", rand::rng().random::<u128>());
    let token = random_token();
    let now = Timestamp::now();
    let name = param(&params, "FriendlyName")
        .map(str::to_string)
        .unwrap_or_else(|| format!("SubAccount Created at {}", now.strftime("%Y-%m-%d %I:%M %p")));
    let details =
        AccountDetails { owner: parent, friendly_name: name, status: "active".into(), created: now, updated: now };
    store.accounts.insert(sid.clone(), FakeAccount { sid: sid.clone(), auth_token: token.clone() });
    store.account_details.insert(sid.clone(), details.clone());
    Ok((StatusCode::CREATED, Json(account_json(&sid, Some(&details), Some(&token)))).into_response())
}

/// `GET /2010-04-01/Accounts.json`: the requesting account and its subaccounts, filtered by
/// FriendlyName and Status (exact matches), oldest first, one page of PageSize (at most 1000).
async fn list_accounts(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(params): Query<Params>) -> Answer {
    let asking = manager_of(&shared, &headers)?;
    reject_unknown(&params, &["FriendlyName", "Status", "PageSize", "Page", "PageToken"])?;
    let (size, _, _) = paging(&params)?;
    let store = shared.lock();
    let mut accounts: Vec<(Timestamp, String, Value)> = store
        .accounts
        .keys()
        .filter_map(|sid| {
            let details = store.account_details.get(sid);
            let owner = details.map_or(sid.as_str(), |d| d.owner.as_str());
            (sid == &asking || owner == asking).then(|| {
                let created = details.map_or(Timestamp::UNIX_EPOCH, |d| d.created);
                (created, sid.clone(), account_json(sid, details, None))
            })
        })
        .filter(|(_, _, json)| {
            param(&params, "FriendlyName").is_none_or(|name| json["friendly_name"] == name)
                && param(&params, "Status").is_none_or(|status| json["status"] == status)
        })
        .collect();
    accounts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let page: Vec<Value> = accounts.into_iter().take(size).map(|(_, _, json)| json).collect();
    let uri = format!("/2010-04-01/Accounts.json?PageSize={size}&Page=0");
    Ok(Json(json!({
        "accounts": page,
        "end": page.len().saturating_sub(1),
        "first_page_uri": uri,
        "next_page_uri": null,
        "page": 0,
        "page_size": size,
        "previous_page_uri": null,
        "start": 0,
        "uri": uri,
    }))
    .into_response())
}

/// `POST /2010-04-01/Accounts/{Sid}.json`: renames an account or changes its status (active,
/// suspended, closed), asked by the account itself or the account that owns it. Closed is final.
async fn update_account(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid_json): Path<String>,
    body: String,
) -> Answer {
    let path = format!("/2010-04-01/Accounts/{sid_json}");
    let Some(sid) = strip_json(&sid_json) else {
        return Err(not_found(&path));
    };
    let asking = manager_of(&shared, &headers)?;
    let params = form_body(&headers, &body)?;
    reject_unknown(&params, &["FriendlyName", "Status"])?;
    let mut store = shared.lock();
    if !store.accounts.contains_key(sid) {
        return Err(not_found(&path));
    }
    let now = Timestamp::now();
    let details = store.account_details.entry(sid.to_string()).or_insert_with(|| AccountDetails {
        owner: sid.to_string(),
        friendly_name: "fake account".into(),
        status: "active".into(),
        created: now,
        updated: now,
    });
    if asking != sid && details.owner != asking {
        return Err(forbidden_account());
    }
    if let Some(status) = param(&params, "Status") {
        if !["active", "suspended", "closed"].contains(&status) {
            return Err(bad_request(format!("Status must be active, suspended or closed, not {status:?}")));
        }
        if details.status == "closed" && status != "closed" {
            return Err(bad_request("A closed account cannot be reopened"));
        }
        details.status = status.to_string();
    }
    if let Some(name) = param(&params, "FriendlyName") {
        details.friendly_name = name.to_string();
    }
    details.updated = now;
    let details = details.clone();
    Ok(Json(account_json(sid, Some(&details), None)).into_response())
}

/// The account's messages: always none (the fake sends no messages). What it checks is who may
/// read them: the account's auth token or Main key, a Standard key of the account, or a
/// Restricted key whose policy allows `/twilio/messaging/messages/read`; anyone else gets 401,
/// a key of the account without that permission 403.
async fn v2010_messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(account): Path<String>) -> Answer {
    let principal = authenticate(&shared, &headers)?;
    let (Principal::Manager(owner) | Principal::KeyUser(owner)) = &principal;
    if *owner != account {
        return Err(forbidden_account());
    }
    if let Principal::KeyUser(_) = principal {
        let user = basic_user(&headers).unwrap_or_default();
        let store = shared.lock();
        let allowed = store.keys.get(&user).is_some_and(|key| match key.key_type {
            FakeKeyType::Restricted => key.policy.as_ref().is_some_and(|policy| {
                policy["allow"]
                    .as_array()
                    .is_some_and(|allow| allow.iter().any(|p| p.as_str() == Some("/twilio/messaging/messages/read")))
            }),
            _ => true,
        });
        if !allowed {
            return Err(twilio_error(StatusCode::FORBIDDEN, 20003, "Permission Denied"));
        }
    }
    let uri = format!("/2010-04-01/Accounts/{account}/Messages.json?PageSize=1&Page=0");
    Ok(Json(json!({
        "messages": [],
        "end": 0,
        "first_page_uri": uri,
        "next_page_uri": Value::Null,
        "page": 0,
        "page_size": 1,
        "previous_page_uri": Value::Null,
        "start": 0,
        "uri": uri,
    }))
    .into_response())
}

/// The user name of a request's Basic credentials.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    decoded.split_once(':').map(|(user, _)| user.to_string())
}

fn form_body(headers: &HeaderMap, body: &str) -> Result<Params, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !body.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(twilio_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            20001,
            "Request body must be application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_str(body).map_err(|_| bad_request("Malformed form body"))
}

fn operation_of(method: &axum::http::Method, path: &str) -> &'static str {
    let one_key = !(path.ends_with("/Keys") || path.ends_with("/Keys.json"));
    let keys = path.contains("/Keys");
    match (method.as_str(), keys, one_key) {
        ("POST", true, false) => "create_key",
        ("GET", true, false) => "list_keys",
        ("GET", true, true) => "fetch_key",
        ("POST", true, true) => "update_key",
        ("DELETE", true, true) => "delete_key",
        ("GET", false, _) if path.ends_with("/Messages.json") => "list_messages",
        ("GET", false, _) if path == "/2010-04-01/Accounts.json" => "list_accounts",
        ("GET", false, _) => "fetch_account",
        ("POST", false, _) if path == "/v1/AuthTokens/Secondary" => "create_secondary_auth_token",
        ("DELETE", false, _) if path == "/v1/AuthTokens/Secondary" => "delete_secondary_auth_token",
        ("POST", false, _) if path == "/v1/AuthTokens/Promote" => "promote_auth_token",
        ("POST", false, _) if path == "/2010-04-01/Accounts.json" => "create_account",
        ("POST", false, _) if path.starts_with("/2010-04-01/Accounts/") => "update_account",
        _ => "other",
    }
}

/// Faults, latency, counters and the request log, around every Twilio endpoint.
async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let operation = operation_of(&method, &path);
    let faults = shared.lock().faults;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let planned = {
        let mut store = shared.lock();
        let index = store.planned_failures.iter().position(|f| f.operation == operation);
        index.map(|i| store.planned_failures.remove(i))
    };
    let planned_error = |status: u16| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        twilio_error(status, 20500, "Planned failure").into_response()
    };
    let injected = faults.error_rate > 0.0 && rand::rng().random_bool(faults.error_rate.clamp(0.0, 1.0));
    let (response, recorded) = if let Some(planned) = planned {
        if planned.after_effect {
            drop(next.run(request).await);
        }
        (planned_error(planned.status), None)
    } else if injected {
        let error = if rand::rng().random_bool(0.5) {
            twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests")
        } else {
            twilio_error(StatusCode::SERVICE_UNAVAILABLE, 20500, "Service Unavailable")
        };
        (error.into_response(), None)
    } else if shared.lock().record {
        let query: Params = serde_urlencoded::from_str(request.uri().query().unwrap_or("")).unwrap_or_default();
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let form: Params = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let response = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
        let json = serde_json::from_slice(&bytes).ok();
        let record = RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query,
            form,
            content_type,
            status: parts.status.as_u16(),
            response: json,
        };
        (Response::from_parts(parts, axum::body::Body::from(bytes)), Some(record))
    } else {
        (next.run(request).await, None)
    };
    {
        let mut store = shared.lock();
        *store.counts.entry(format!("{operation} {}", response.status().as_u16())).or_default() += 1;
        if let Some(record) = recorded {
            store.recorded.push(record);
        }
    }
    if faults.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.response_delay_ms)).await;
    }
    response
}

#[derive(Serialize)]
struct KeyView {
    sid: String,
    account_sid: String,
    friendly_name: String,
    key_type: FakeKeyType,
    policy: Option<Value>,
    date_created: String,
}

async fn admin_keys(State(shared): State<Arc<Shared>>) -> Json<Vec<KeyView>> {
    let store = shared.lock();
    Json(
        store
            .keys
            .values()
            .filter(|k| k.key_type != FakeKeyType::Main)
            .map(|k| KeyView {
                sid: k.sid.clone(),
                account_sid: k.account_sid.clone(),
                friendly_name: k.friendly_name.clone(),
                key_type: k.key_type,
                policy: k.policy.clone(),
                date_created: k.date_created.to_string(),
            })
            .collect(),
    )
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, u64>> {
    Json(shared.lock().counts.clone())
}

/// How each user's requests authenticated: `{"SK...": {"accepted": 12, "refused": 0}, ...}`.
async fn admin_authentications(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, Authentications>> {
    Json(shared.lock().authentications.clone())
}

async fn admin_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<Faults>) -> StatusCode {
    shared.lock().faults = faults;
    StatusCode::NO_CONTENT
}

fn router(shared: Arc<Shared>) -> Router {
    let twilio = Router::new()
        .route("/v1/Keys", get(v1_list).post(v1_create))
        .route("/v1/Keys/{sid}", get(v1_fetch).post(v1_update).delete(v1_delete))
        .route("/2010-04-01/Accounts/{account}/Keys.json", get(v2010_list).post(v2010_create))
        .route("/2010-04-01/Accounts/{account}/Keys/{sid}", get(v2010_key).post(v2010_key).delete(v2010_key))
        .route("/2010-04-01/Accounts.json", get(list_accounts).post(create_subaccount))
        .route("/2010-04-01/Accounts/{sid}", get(v2010_account).post(update_account))
        .route("/v1/AuthTokens/Secondary", axum::routing::post(create_secondary_token).delete(delete_secondary_token))
        .route("/v1/AuthTokens/Promote", axum::routing::post(promote_secondary_token))
        .route("/2010-04-01/Accounts/{account}/Messages.json", get(v2010_messages))
        .route_layer(middleware::from_fn_with_state(shared.clone(), observe));
    let admin = Router::new()
        .route("/_fake/keys", get(admin_keys))
        .route("/_fake/stats", get(admin_stats))
        .route("/_fake/authentications", get(admin_authentications))
        .route("/_fake/faults", axum::routing::put(admin_faults));
    twilio.merge(admin).with_state(shared)
}
