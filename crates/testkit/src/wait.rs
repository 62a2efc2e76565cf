//! Polling with a time limit: `poll_until` returns an error, the tests' `wait_until` and
//! `wait_up_to` panic.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use kube::Client;
use kube::api::Api;
use twilio_operator::api::TwilioAccount;

use crate::is_ready;

/// Polls `check` every 200 ms until it yields a value; an error from `check` ends the wait at
/// once, and so does `limit`.
pub async fn poll_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` until it yields a value, failing the test after two minutes.
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_up_to(Duration::from_secs(120), what, check).await
}

/// Polls `check` until it yields a value, failing the test after `limit`.
pub async fn wait_up_to<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let checked = poll_until(limit, what, || {
        let check = check();
        async move { Ok(check.await) }
    });
    checked.await.unwrap_or_else(|error| panic!("{error}"))
}

/// Waits until the TwilioAccount `name` is Ready.
pub async fn wait_account_ready(client: &Client, namespace: &str, name: &str, limit: Duration) -> anyhow::Result<()> {
    let accounts: Api<TwilioAccount> = Api::namespaced(client.clone(), namespace);
    poll_until(limit, &format!("TwilioAccount {name} to be Ready"), || async {
        let account = accounts.get(name).await?;
        Ok(account.status.is_some_and(|s| is_ready(&s.conditions)).then_some(()))
    })
    .await
}
