//! The operator as Pods on a real node (hack/control-plane.sh up-node: containerd, kubelet,
//! kube-proxy, kube-scheduler): its image built without Docker from the binary these tests run
//! (hack/image.sh), the chart installed with Helm, the Pod Ready through its own probes under
//! the chart's security context (seen from this machine: the process runs as 65532 with a
//! read-only root filesystem and no capabilities), in-cluster credentials from its
//! ServiceAccount (the API server's audit log names the ServiceAccount and the Pod's address),
//! keys made Ready against the fake Twilio on the node's address; then two replicas, one
//! leading, and the Lease handed over when the leader Pod is deleted. The release namespace
//! enforces Pod Security's `restricted` profile, so the chart's Pod is admitted under it.
//!
//! It needs root (containerd, a bridge, iptables); without root it is skipped, except in CI.

use twilio_operator_testkit as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{
    ACCOUNT_SID, AUTH_TOKEN, NodeCluster, create_key, node_cluster, ready_sid, repo_root, setup_namespace,
    start_fake_twilio_on, wait_up_to,
};
use twilio_operator::api::TwilioApiKey;

const IMAGE: &str = "twilio-operator:dev";
const RELEASE: &str = "op";

fn helm(args: &[&str]) -> String {
    let (succeeded, text) = support::helm(args);
    assert!(succeeded, "helm {args:?} failed:\n{text}");
    text
}

/// The operator Pods of the release, by name.
async fn operator_pods(pods: &Api<Pod>) -> BTreeMap<String, Pod> {
    let selector = format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=twilio-operator");
    let list = pods.list(&ListParams::default().labels(&selector)).await.expect("list the operator Pods");
    list.items.into_iter().map(|pod| (pod.metadata.name.clone().unwrap_or_default(), pod)).collect()
}

fn is_pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.map_or(0, |s| s.iter().map(|c| c.restart_count).sum())
}

fn pod_ip(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default()
}

/// The Pods as `kubectl get pods` would show them, and which holds the Lease.
fn show(stage: &str, pods: &BTreeMap<String, Pod>, holder: Option<&str>) {
    println!("-- {stage}");
    for (name, pod) in pods {
        let status = pod.status.as_ref();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        println!(
            "   {name}  phase={} ready={} restarts={} ip={}{}{}",
            status.and_then(|s| s.phase.as_deref()).unwrap_or("?"),
            is_pod_ready(pod),
            restarts(pod),
            pod_ip(pod),
            if terminating { "  (terminating)" } else { "" },
            if holder == Some(name.as_str()) { "  <- holds the Lease" } else { "" },
        );
    }
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt("twilio-operator").await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits for `count` Ready operator Pods that are not being deleted.
async fn wait_ready_pods(pods: &Api<Pod>, count: usize) -> BTreeMap<String, Pod> {
    wait_up_to(Duration::from_secs(180), &format!("{count} Ready operator Pods"), || async {
        let all = operator_pods(pods).await;
        let ready: BTreeMap<_, _> =
            all.into_iter().filter(|(_, pod)| is_pod_ready(pod) && pod.metadata.deletion_timestamp.is_none()).collect();
        (ready.len() == count).then_some(ready)
    })
    .await
}

/// What this machine sees of the operator's process in `pod`: its /proc status and whether the
/// root filesystem it sees is read-only.
fn operator_process(pod: &Pod) -> (String, bool) {
    let uid = pod.metadata.uid.as_deref().expect("Pod uid");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !cmdline.starts_with(b"/twilio-operator\0") {
            continue;
        }
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        if !cgroup.contains(&format!("pod{uid}")) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("the process' status");
        let mountinfo = std::fs::read_to_string(dir.join("mountinfo")).expect("the process' mounts");
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ...
        let root_read_only = mountinfo.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            fields.get(4) == Some(&"/") && fields.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"))
        });
        return (status, root_read_only);
    }
    panic!("no /twilio-operator process in the cgroup of Pod {uid}")
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{field} missing from the process' status"))
}

/// GET http://<pod IP>:8080/<path> from this machine (the Pod network is the node's bridge).
async fn from_pod(pod: &Pod, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}:8080{path}", pod_ip(pod))).await.expect("reach the Pod");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// The requests the API server's audit log shows from this ServiceAccount and address.
fn audited(cluster: &NodeCluster, user: &str, source_ip: &str) -> Vec<serde_json::Value> {
    let events = cluster.audit_events().expect("the API server's audit log");
    events
        .into_iter()
        .filter(|e| {
            e["user"]["username"] == user
                && e["sourceIPs"].as_array().is_some_and(|ips| ips.contains(&json!(source_ip)))
        })
        .collect()
}

/// A key's status written by this ServiceAccount from this address.
fn wrote_key_status(events: &[serde_json::Value], namespace: &str, key: &str) -> bool {
    events.iter().any(|e| {
        let object = &e["objectRef"];
        object["resource"] == "twilioapikeys"
            && object["subresource"] == "status"
            && object["namespace"] == namespace
            && object["name"] == key
            && ["patch", "update"].contains(&e["verb"].as_str().unwrap_or_default())
            && e["responseStatus"]["code"].as_i64().is_some_and(|code| (200..300).contains(&code))
    })
}

/// Creates a TwilioApiKey and waits until it is Ready and its Secret holds a pair Twilio accepts.
async fn key_made_ready(client: &Client, fake: &fake_twilio::FakeTwilio, namespace: &str, name: &str) -> String {
    create_key(client, namespace, name, json!({})).await.expect("create TwilioApiKey");
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
    let sid = wait_up_to(Duration::from_secs(120), &format!("TwilioApiKey {name} Ready"), || async {
        ready_sid(&keys.get(name).await.ok()?).map(str::to_string)
    })
    .await;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace).get(name).await.expect("the key's Secret");
    let data = secret.data.expect("Secret data");
    let value = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert_eq!(value("TWILIO_API_KEY"), sid, "the Secret holds the key the status names");
    assert!(fake.accepts_key_pair(ACCOUNT_SID, &sid, &value("TWILIO_API_SECRET")), "Twilio accepts the delivered pair");
    sid
}

#[tokio::test]
async fn the_chart_runs_the_operator_image_on_a_node_and_hands_the_lease_over() {
    if support::node_tests_skip() {
        return;
    }
    let started = Instant::now();
    let cluster = node_cluster();
    println!(
        "node cluster up in {:.1} s: node {} at {}",
        started.elapsed().as_secs_f64(),
        cluster.node_name,
        cluster.node_ip
    );
    let client = cluster.client().await.expect("a client of the node cluster");

    let tar = cluster.load_operator_image(IMAGE).expect("build and import the operator image");
    let size = std::fs::metadata(&tar).expect("the image tar").len();
    println!(
        "operator image {IMAGE}: {:.1} MiB tar, from {}",
        size as f64 / 1048576.0,
        support::operator_binary().display()
    );

    // The fake Twilio listens on the node's address, where the Pods reach this machine.
    let fake = start_fake_twilio_on(cluster.node_ip.into(), ACCOUNT_SID, AUTH_TOKEN).await.expect("start fake Twilio");
    let team = format!("team-{:04x}", rand::random::<u16>());
    setup_namespace(&client, &team, ACCOUNT_SID, AUTH_TOKEN).await.expect("set up the team namespace");
    // The release namespace enforces Pod Security's `restricted` profile, as a careful platform
    // team sets it: the API server admits only Pods that meet it.
    let system = format!("twilio-system-{:04x}", rand::random::<u16>());
    let restricted = json!({"metadata": {"name": system, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(restricted).unwrap())
        .await
        .expect("create the release namespace");
    // It is enforced: a Pod without the profile's securityContext is refused at admission.
    let loose = json!({"metadata": {"name": "loose"}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &system);
    match pods.create(&PostParams::default(), &serde_json::from_value(loose).unwrap()).await {
        Err(kube::Error::Api(status)) => {
            println!("Pod Security Admission in {system}: {}", status.message);
            assert!(status.message.contains("violates PodSecurity \"restricted:latest\""), "{}", status.message);
        }
        other => panic!("a Pod that breaks `restricted` is refused in {system}: {other:?}"),
    }

    let chart = repo_root().join("charts/twilio-operator");
    let chart = chart.to_str().unwrap();
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_string();
    let twilio_url = format!("twilioApiUrl={}", fake.url());
    let installed = helm(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        &system,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "image.repository=twilio-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Never",
        // The node cluster was started with the CRDs of crds/.
        "--set",
        "crds.enabled=false",
        "--set",
        &twilio_url,
        "--wait=watcher",
        "--timeout",
        "180s",
    ]);
    println!("{}", installed.lines().take(5).collect::<Vec<_>>().join("\n"));

    let leases: Api<Lease> = Api::namespaced(client.clone(), &system);
    let ready = wait_ready_pods(&pods, 1).await;
    show("one replica, after helm install --wait", &ready, None);
    let (name, pod) = ready.iter().next().unwrap();
    assert_eq!(restarts(pod), 0, "{name} never restarted");

    // The chart's Pod, as the API server holds it: this image, never pulled, no kubeconfig.
    let spec = pod.spec.as_ref().unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some(IMAGE));
    assert_eq!(container.image_pull_policy.as_deref(), Some("Never"));
    let env_names: Vec<_> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(!env_names.contains(&"KUBECONFIG"), "no kubeconfig: {env_names:?}");
    let service_account = spec.service_account_name.clone().expect("a ServiceAccount");
    assert_eq!(service_account, "op-twilio-operator");
    let security = container.security_context.as_ref().expect("a container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(spec.security_context.as_ref().and_then(|s| s.run_as_user), Some(65532));
    let image_status = &pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    assert_eq!(image_status.image, format!("docker.io/library/{IMAGE}"), "the image imported into containerd");

    // What actually runs: this machine sees the container's process.
    let (status, root_read_only) = operator_process(pod);
    println!(
        "operator process: Uid {} | Gid {} | CapEff {} | NoNewPrivs {} | Seccomp {} | root filesystem read-only: {root_read_only}",
        status_field(&status, "Uid"),
        status_field(&status, "Gid"),
        status_field(&status, "CapEff"),
        status_field(&status, "NoNewPrivs"),
        status_field(&status, "Seccomp"),
    );
    assert_eq!(status_field(&status, "Uid"), "65532\t65532\t65532\t65532", "runs as 65532");
    assert_eq!(status_field(&status, "Gid"), "65532\t65532\t65532\t65532");
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000", "no capabilities");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "allowPrivilegeEscalation: false");
    assert_eq!(status_field(&status, "Seccomp"), "2", "seccomp RuntimeDefault (a filter)");
    assert!(root_read_only, "the root filesystem is read-only");
    // Ready through its own probes: the kubelet asked /readyz on the Pod's address, as this does.
    assert_eq!(from_pod(pod, "/readyz").await, (200, "ok".to_string()));

    // In-cluster credentials: the key is made by the Pod, authenticated as its ServiceAccount.
    let first = key_made_ready(&client, &fake, &team, "in-a-pod").await;
    let user = format!("system:serviceaccount:{system}:{service_account}");
    let by_pod = audited(cluster, &user, &pod_ip(pod));
    println!("audit log: {} requests by {user} from {}", by_pod.len(), pod_ip(pod));
    assert!(wrote_key_status(&by_pod, &team, "in-a-pod"), "the Pod wrote the key's status as {user}");
    println!("TwilioApiKey in-a-pod Ready: {first}");

    // Two replicas: leader election is on, one Pod leads.
    helm(&[
        "upgrade",
        RELEASE,
        chart,
        "--namespace",
        &system,
        "--kubeconfig",
        &kubeconfig,
        "--reuse-values",
        "--set",
        "replicaCount=2",
        "--wait=watcher",
        "--timeout",
        "180s",
    ]);
    let ready = wait_ready_pods(&pods, 2).await;
    let leader = wait_up_to(Duration::from_secs(60), "a Pod to hold the Lease", || async {
        lease_holder(&leases).await.filter(|holder| ready.contains_key(holder))
    })
    .await;
    show("two replicas, after helm upgrade --set replicaCount=2", &ready, Some(&leader));
    let standby = ready.keys().find(|name| **name != leader).unwrap().clone();
    let leading = |metrics: &str| metrics.lines().any(|line| line == "twilio_operator_leader 1");
    assert!(leading(&from_pod(&ready[&leader], "/metrics").await.1), "{leader} says it leads");
    assert!(!leading(&from_pod(&ready[&standby], "/metrics").await.1), "{standby} says it stands by");

    // The leader's node is cordoned and the leader Pod deleted (SIGTERM: it releases the
    // Lease). Its replacement cannot be scheduled: the standby takes over.
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = |unschedulable: bool| {
        let nodes = nodes.clone();
        async move {
            let patch = json!({"spec": {"unschedulable": unschedulable}});
            nodes.patch(&cluster.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("cordon");
        }
    };
    cordon(true).await;
    let standby_ip = pod_ip(&ready[&standby]);
    pods.delete(&leader, &DeleteParams::default()).await.expect("delete the leader Pod");
    let deleted_at = Instant::now();
    let holder = wait_up_to(Duration::from_secs(60), "the Lease to move", || async {
        lease_holder(&leases).await.filter(|holder| *holder != leader)
    })
    .await;
    println!("the Lease moved from {leader} to {holder} {:.1} s after the delete", deleted_at.elapsed().as_secs_f64());
    let now = operator_pods(&pods).await;
    show("node cordoned, leader Pod deleted", &now, Some(&holder));
    assert_eq!(holder, standby, "the standby Pod took the Lease over");
    // Pods of the one-replica release may still be terminating: the replacement is the new one.
    let replacement = now
        .iter()
        .find(|(name, pod)| **name != leader && **name != standby && pod.metadata.deletion_timestamp.is_none())
        .map(|(_, pod)| pod);
    let phase = replacement.and_then(|pod| pod.status.as_ref()?.phase.clone());
    assert_eq!(phase.as_deref(), Some("Pending"), "the replacement waits for a schedulable node");

    let second = key_made_ready(&client, &fake, &team, "after-handover").await;
    let by_standby = audited(cluster, &user, &standby_ip);
    assert!(wrote_key_status(&by_standby, &team, "after-handover"), "the new leader ({standby}) made the key");
    println!("TwilioApiKey after-handover Ready: {second}, made by {standby}");

    cordon(false).await;
    let ready = wait_ready_pods(&pods, 2).await;
    show("node uncordoned, the replacement Pod Ready", &ready, lease_holder(&leases).await.as_deref());
    assert!(!ready.contains_key(&leader), "the deleted Pod is gone");
    assert_eq!(lease_holder(&leases).await.as_deref(), Some(standby.as_str()), "the new leader keeps the Lease");

    // The same on a schedulable node: the Lease moves to a Pod that runs, whichever is first (a
    // standby checks the Lease again when the holder's term would end; a new Pod takes a
    // released Lease at once).
    let leader = standby;
    pods.delete(&leader, &DeleteParams::default()).await.expect("delete the leader Pod");
    let deleted_at = Instant::now();
    let holder = wait_up_to(Duration::from_secs(60), "the Lease to move", || async {
        lease_holder(&leases).await.filter(|holder| *holder != leader)
    })
    .await;
    let moved_after = deleted_at.elapsed().as_secs_f64();
    let ready = wait_ready_pods(&pods, 2).await;
    let role = if now.contains_key(&holder) { "the standby" } else { "the replacement Pod" };
    println!("the Lease moved from {leader} to {holder} ({role}) {moved_after:.1} s after the delete");
    show("leader Pod deleted on a schedulable node", &ready, Some(&holder));
    assert!(ready.contains_key(&holder), "the Lease is held by a Ready Pod");
    let third = key_made_ready(&client, &fake, &team, "after-second-handover").await;
    let by_holder = audited(cluster, &user, &pod_ip(&ready[&holder]));
    assert!(wrote_key_status(&by_holder, &team, "after-second-handover"), "the new leader ({holder}) made the key");
    println!("TwilioApiKey after-second-handover Ready: {third}, made by {holder}");
    assert_eq!(fake.keys().len(), 3, "one Twilio key per TwilioApiKey across the handovers");

    let gone = wait_up_to(Duration::from_secs(60), "the deleted Pods to be gone", || async {
        let all = operator_pods(&pods).await;
        (all.len() == 2).then_some(all)
    })
    .await;
    println!("the deleted leader Pod was gone {:.1} s after the delete", deleted_at.elapsed().as_secs_f64());
    show("at the end", &gone, lease_holder(&leases).await.as_deref());
    assert!(gone.values().all(|pod| restarts(pod) == 0), "no operator container restarted");
}
