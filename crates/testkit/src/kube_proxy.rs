//! A proxy in front of the real API server that injects the faults a healthy server does not
//! produce on demand: a write that is carried out but answered with an error (as when the answer
//! is lost on the way back), or a request that fails before it reaches the server. Both are
//! answered 500, which kube's client does not retry by itself (it retries 429, 503 and 504).
//! Everything else passes through unchanged, watches included.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use kube::config::Kubeconfig;

use super::ControlPlane;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// The request is forwarded and carried out; the client is answered 500.
    CommitThenFail,
    /// The request is not forwarded; the client is answered 500.
    FailBeforeSending,
}

struct Fault {
    method: String,
    path: String,
    mode: FaultMode,
    remaining: usize,
}

#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    server: String,
    token: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    served: Arc<Mutex<usize>>,
}

pub struct KubeProxy {
    /// A kubeconfig whose server is this proxy.
    pub kubeconfig: PathBuf,
    upstream: Upstream,
}

impl KubeProxy {
    pub async fn start(plane: &ControlPlane) -> KubeProxy {
        let dir = plane.dir.as_ref().expect("the proxy fronts a control plane the suite started");
        let config = Kubeconfig::read_from(&plane.kubeconfig).expect("read kubeconfig");
        let cluster = config.clusters[0].cluster.clone().expect("a cluster");
        let ca = std::fs::read(dir.join("ca.crt")).expect("read the CA");
        let token = std::fs::read_to_string(dir.join("admin.token")).expect("read the admin token");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
            .build()
            .expect("http client");
        let upstream = Upstream {
            http,
            server: cluster.server.expect("a server"),
            token: token.trim().to_string(),
            faults: Arc::default(),
            served: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new().fallback(forward).with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kubeconfig = plane.kubeconfig.with_file_name(format!("proxy-{}.kubeconfig", address.port()));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster: {{server: \"http://{address}\"}}\n\
             users:\n- name: user\n  user: {{token: \"via-proxy\"}}\ncontexts:\n- name: proxy\n  context: {{cluster: proxy, user: user}}\n\
             current-context: proxy\n"
        );
        std::fs::write(&kubeconfig, text).expect("write kubeconfig");
        KubeProxy { kubeconfig, upstream }
    }

    /// The next `times` requests with this method and exact path get the fault.
    pub fn inject(&self, method: &str, path: &str, mode: FaultMode, times: usize) {
        let fault = Fault { method: method.into(), path: path.into(), mode, remaining: times };
        self.upstream.faults.lock().unwrap().push(fault);
    }

    /// How many faults were served so far.
    pub fn faults_served(&self) -> usize {
        *self.upstream.served.lock().unwrap()
    }
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let fault = {
        let mut faults = upstream.faults.lock().unwrap();
        faults.iter_mut().find(|f| f.remaining > 0 && f.method == parts.method.as_str() && f.path == path).map(|f| {
            f.remaining -= 1;
            f.mode
        })
    };
    if fault.is_some() {
        *upstream.served.lock().unwrap() += 1;
    }
    if fault == Some(FaultMode::FailBeforeSending) {
        return status_response(500, "injected failure before the request reached the API server");
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map_or(path.clone(), |p| p.to_string());
    let mut outgoing = upstream
        .http
        .request(parts.method.clone(), format!("{}{path_and_query}", upstream.server))
        .bearer_auth(&upstream.token)
        .body(body);
    for name in [http::header::CONTENT_TYPE, http::header::ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let mut response = match outgoing.send().await {
        Ok(response) => response,
        Err(error) => return status_response(502, &format!("proxy: {error}")),
    };
    if fault == Some(FaultMode::CommitThenFail) {
        while let Ok(Some(_)) = response.chunk().await {}
        return status_response(500, "injected: the request was carried out, the answer lost");
    }
    let status = response.status();
    let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
    let chunks = futures::stream::unfold(response, |mut response| async move {
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(chunk), response)),
            _ => None,
        }
    });
    let mut builder = Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from_stream(chunks)).expect("response")
}

fn status_response(code: u16, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code,
    });
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}
