//! `twilio-operator probe URL`, which the chart's `helm test` Pod runs: it succeeds once the URL
//! answers 2xx, and fails (exit 1) when it never does.

use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `status`.
async fn answering(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{address}/readyz")
}

async fn probe(url: String) -> std::process::Output {
    let binary = twilio_operator_testkit::operator_binary();
    tokio::task::spawn_blocking(move || {
        Command::new(binary).args(["probe", &url, "--attempts", "2", "--interval", "0"]).output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_passes_on_2xx_and_fails_otherwise() {
    let ready = probe(answering("200 OK").await).await;
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert!(String::from_utf8_lossy(&ready.stdout).contains("answered 200 OK"));

    let unavailable = probe(answering("503 Service Unavailable").await).await;
    assert_eq!(unavailable.status.code(), Some(1));
    let told = String::from_utf8_lossy(&unavailable.stderr);
    assert!(told.contains("attempt 2") && told.contains("did not answer 2xx"), "{told}");

    let nobody = probe("http://127.0.0.1:9/readyz".into()).await;
    assert_eq!(nobody.status.code(), Some(1), "nothing listening");
}
