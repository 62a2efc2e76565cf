//! The operator's Twilio client listing keys against the project's fake Twilio when the listing
//! misbehaves: next-page URLs naming another host or path, repeating, or never ending. The client
//! must never send the account's credential anywhere but its base URL, and must stop with a clear
//! error instead of paging forever. Also checks the fake's listing-related test hooks.

use twilio_operator_testkit as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fake_twilio::{FakeTwilio, ListingFault};
use twilio_operator::twilio::{AccountConnection, Endpoint, MAX_LIST_PAGES, RetryPolicy, TwilioClient, TwilioError};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "paging-token-do-not-leak";

async fn fake() -> FakeTwilio {
    support::start_fake_twilio(ACCOUNT, TOKEN).await.expect("start fake Twilio")
}

fn connection(fake: &FakeTwilio) -> AccountConnection {
    support::fake_connection(fake, ACCOUNT, TOKEN)
}

fn client(endpoint: Endpoint, page_size: u32) -> TwilioClient {
    let retry =
        RetryPolicy { attempts: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(20) };
    TwilioClient::new(endpoint, retry).unwrap().with_page_size(page_size)
}

/// `Endpoint::Twilio` is what the operator uses against the real hosts; pointing an account's base
/// URL at the fake lets the test exercise that mode's rules.
fn endpoints(fake: &FakeTwilio) -> [(&'static str, Endpoint); 2] {
    [("twilio", Endpoint::Twilio), ("override", Endpoint::Override(fake.url()))]
}

fn create_keys(fake: &FakeTwilio, n: usize) -> Vec<String> {
    (0..n).map(|i| fake.create_key_directly(ACCOUNT, &format!("key {i}"))).collect()
}

/// A TCP listener on another loopback address that counts the connections it gets.
async fn foreign_host() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind 127.0.0.2");
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (origin, connections)
}

async fn list(client: &TwilioClient, account: &AccountConnection) -> Result<Vec<String>, TwilioError> {
    let keys = tokio::time::timeout(Duration::from_secs(60), client.list_keys(account))
        .await
        .expect("list_keys must end instead of paging forever")?;
    Ok(keys.into_iter().map(|k| k.sid).collect())
}

fn assert_clear_error(err: &TwilioError, expected: &str) {
    let message = err.to_string();
    assert!(matches!(err, TwilioError::Decode(_)), "{message}");
    assert!(message.contains(expected), "{message:?} should say {expected:?}");
    assert!(!message.contains(TOKEN), "the credential leaked into {message:?}");
}

#[tokio::test]
async fn listing_walks_every_page() {
    let fake = fake().await;
    let mut created = create_keys(&fake, 7);
    created.sort();
    for (name, endpoint) in endpoints(&fake) {
        let before = fake.list_requests();
        let mut listed = list(&client(endpoint, 2), &connection(&fake)).await.unwrap();
        listed.sort();
        assert_eq!(listed, created, "{name}: every key, once");
        assert_eq!(fake.list_requests() - before, 4, "{name}: 7 keys at 2 per page");
    }
}

#[tokio::test]
async fn a_next_page_on_another_host_is_never_requested() {
    let fake = fake().await;
    let mut created = create_keys(&fake, 5);
    created.sort();
    let (origin, connections) = foreign_host().await;
    fake.set_listing_fault(Some(ListingFault::NextPageOrigin(origin.clone())));

    // Against Twilio's hosts the credential must not follow the link to another host.
    let before = fake.list_requests();
    let err = list(&client(Endpoint::Twilio, 2), &connection(&fake)).await.unwrap_err();
    assert_clear_error(&err, &format!("{origin}/v1/Keys"));
    assert_clear_error(&err, &format!("not on {}", fake.url()));
    assert_eq!(fake.list_requests() - before, 1, "only the first page was requested");

    // With an overridden endpoint every page is requested from it: the listing completes there.
    let mut listed = list(&client(Endpoint::Override(fake.url()), 2), &connection(&fake)).await.unwrap();
    listed.sort();
    assert_eq!(listed, created);

    assert_eq!(connections.load(Ordering::SeqCst), 0, "the other host was never contacted");
}

#[tokio::test]
async fn a_next_page_that_is_not_the_keys_list_is_never_requested() {
    let fake = fake().await;
    create_keys(&fake, 3);
    let (origin, connections) = foreign_host().await;
    for next in [
        format!("{origin}/evil?AccountSid={ACCOUNT}&PageSize=2"),
        format!("{}/v1/Keys/SK0123456789abcdef0123456789abcdef", fake.url()),
        format!("{}/2010-04-01/Accounts/{ACCOUNT}/Keys.json?PageSize=2", fake.url()),
    ] {
        fake.set_listing_fault(Some(ListingFault::NextPageUrl(next.clone())));
        for (name, endpoint) in endpoints(&fake) {
            let before = fake.request_counts().values().sum::<u64>();
            let err = list(&client(endpoint, 2), &connection(&fake)).await.unwrap_err();
            let foreign = next.starts_with(&origin) && name == "twilio";
            assert_clear_error(&err, if foreign { "is not on http://127.0.0.1" } else { "its path is not /v1/Keys" });
            let requests = fake.request_counts().values().sum::<u64>() - before;
            assert_eq!(requests, 1, "{name}, {next}: only the first page was requested");
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the other host was never contacted");
}

#[tokio::test]
async fn a_repeating_next_page_ends_the_listing() {
    let fake = fake().await;
    create_keys(&fake, 5);
    let list_url = format!("{}/v1/Keys?AccountSid={ACCOUNT}&PageSize=2", fake.url());
    for repeated in [format!("{list_url}&Page=1&PageToken=PT2"), list_url.clone()] {
        fake.set_listing_fault(Some(ListingFault::NextPageUrl(repeated.clone())));
        for (name, endpoint) in endpoints(&fake) {
            let before = fake.list_requests();
            let err = list(&client(endpoint, 2), &connection(&fake)).await.unwrap_err();
            assert_clear_error(&err, "repeats an earlier page");
            let requests = fake.list_requests() - before;
            assert!(requests <= 2, "{name}, {repeated}: stopped at the first repeat, after {requests} requests");
        }
    }
}

#[tokio::test]
async fn an_endless_listing_is_bounded() {
    let fake = fake().await;
    create_keys(&fake, 3);
    fake.set_listing_fault(Some(ListingFault::EndlessPages));
    let before = fake.list_requests();
    let err = list(&client(Endpoint::Override(fake.url()), 2), &connection(&fake)).await.unwrap_err();
    assert_clear_error(&err, &format!("more than {MAX_LIST_PAGES} pages"));
    assert_eq!(fake.list_requests() - before, MAX_LIST_PAGES as u64);

    fake.set_listing_fault(None);
    assert_eq!(list(&client(Endpoint::Twilio, 2), &connection(&fake)).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_hidden_key_is_missing_from_listings_but_fetchable() {
    let fake = fake().await;
    let sids = create_keys(&fake, 5);
    let account = connection(&fake);
    let twilio = client(Endpoint::Override(fake.url()), 2);

    fake.hide_from_listings(&sids[2], 1);
    assert_eq!(fake.listings_hidden_left(&sids[2]), 1);
    let listed = list(&twilio, &account).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert!(!listed.contains(&sids[2]), "hidden from one listing");
    let fetched = twilio.fetch_key(&account, &sids[2]).await.unwrap();
    assert_eq!(fetched.friendly_name.as_deref(), Some("key 2"), "fetch still finds it");
    assert_eq!(fake.listings_hidden_left(&sids[2]), 0);
    assert!(list(&twilio, &account).await.unwrap().contains(&sids[2]), "listed again afterwards");

    fake.hide_from_listings(&sids[4], usize::MAX);
    for _ in 0..3 {
        assert!(!list(&twilio, &account).await.unwrap().contains(&sids[4]), "hidden until cleared");
    }
    fake.show_in_listings(&sids[4]);
    assert_eq!(list(&twilio, &account).await.unwrap().len(), 5);
}

#[tokio::test]
async fn fetch_delete_and_the_fakes_accessors() {
    let fake = fake().await;
    let account = connection(&fake);
    let twilio = client(Endpoint::Override(fake.url()), 50);
    let sid = fake.create_key_directly(ACCOUNT, "made by a person");
    assert_eq!(fake.friendly_name(&sid).as_deref(), Some("made by a person"));
    assert_eq!(fake.request_counts().values().sum::<u64>(), 0, "created out of band, no request");

    let key = twilio.fetch_key(&account, &sid).await.unwrap();
    assert_eq!((key.sid.as_str(), key.friendly_name.as_deref()), (sid.as_str(), Some("made by a person")));
    let unknown = "SK0123456789abcdef0123456789abcdef";
    assert!(matches!(twilio.fetch_key(&account, unknown).await, Err(TwilioError::NotFound { code: Some(20404) })));

    assert_eq!(fake.delete_calls(&sid), 0);
    assert!(twilio.delete_key(&account, &sid).await.unwrap());
    assert!(!twilio.delete_key(&account, &sid).await.unwrap(), "already gone");
    assert_eq!(fake.delete_calls(&sid), 2);
    assert_eq!(fake.deleted_sids(), vec![sid.clone()]);
    assert_eq!(fake.friendly_name(&sid), None);
    assert!(matches!(twilio.fetch_key(&account, &sid).await, Err(TwilioError::NotFound { .. })));
}
