#!/usr/bin/env bash
# The operator's main job on embedded defaults: a local control plane, the fake Twilio, the
# operator, and examples/ applied; then the resulting resources and the Secrets' keys (never
# their values) are shown. Everything it starts is stopped when it ends, unless --keep is given.
#
# With --pods (as root), the cluster has a node, and two Pods consume a key's Secret: they call
# the fake Twilio with it twice a second. The key is rotated once, and the Events show the Pods
# restarted and the old key deleted only after they rolled out (examples/rollout-restart.yaml).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
keep=false
pods=false
for arg in "$@"; do
  case $arg in
    --keep) keep=true ;;
    --pods) pods=true ;;
    *) echo "usage: $0 [--keep] [--pods]" >&2; exit 2 ;;
  esac
done
if $pods && [ "$(id -u)" != 0 ]; then
  echo "--pods needs root (containerd, a bridge, iptables)" >&2
  exit 1
fi

echo "== building Kubernetes $(hack/control-plane.sh version)" \
  "from its Go modules (about 7 minutes on 2 cores, once; cached in ~/.cache/twilio-operator)"
# kubectl of the same release, from the same build.
PATH="$(hack/control-plane.sh build):$PATH"
if $pods; then
  echo "== building the node (kubelet, kube-proxy, kube-scheduler; about 5 minutes, once)"
  hack/control-plane.sh build-node > /dev/null
fi
echo "== building the operator and the fake Twilio"
cargo build --quiet -p twilio-operator -p fake-twilio -p kubectl-twilio --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/twilio-operator-demo.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  hack/control-plane.sh down "$state/cluster" || true
}
if ! $keep; then trap cleanup EXIT; fi

twilio_host=127.0.0.1
if $pods; then
  echo "== starting etcd, kube-apiserver, kube-controller-manager and a node (containerd, kubelet,"
  echo "   kube-proxy, kube-scheduler) on a bridge of their own"
  hack/control-plane.sh up-node "$state/cluster" crds/*.yaml > /dev/null
  # Pods reach this machine on the node's address.
  twilio_host=$(sed -n 's/^NODE_IP=//p' "$state/cluster/env")
else
  echo "== starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1"
  hack/control-plane.sh up "$state/cluster" crds/*.yaml > /dev/null
fi
export KUBECONFIG="$state/cluster/kubeconfig"
kubectl version | sed 's/^/   /'
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
twilio_port=$(port)
metrics_port=$(port)
twilio_url="http://$twilio_host:$twilio_port"

echo "== starting the fake Twilio on $twilio_host:$twilio_port"
target/debug/fake-twilio --listen "$twilio_host:$twilio_port" \
  --account AC11111111111111111111111111111111:demo-auth-token > "$state/fake-twilio.log" 2>&1 &
pids+=($!)

echo "== applying examples/"
kubectl apply -f examples/00-namespace.yaml
kubectl apply -f examples/
echo "== turning on the auth token's rotation (commented out in examples/account.yaml: on a real"
echo "   account, every copy of the token the operator does not deliver stops working at promotion)"
kubectl patch twilioaccount main -n payments --type merge \
  -p '{"spec":{"credentialRotation":{"interval":"2160h","deliverTo":[{"secretName":"twilio-auth-token"}]}}}'

echo "== starting the operator (log: $state/operator.log)"
# Accounts are listed (and their keys counted) at every resync: 15 s here, 10 minutes by default.
target/debug/twilio-operator run --twilio-api-url "$twilio_url" --resync-interval 15s \
  --metrics-addr "127.0.0.1:$metrics_port" > "$state/operator.log" 2>&1 &
pids+=($!)

kubectl wait --for=condition=Ready twilioapikeys --all -n payments --timeout=120s
# The subaccount (examples/subaccount.yaml) first: its TwilioAccount is made once it exists.
kubectl wait --for=condition=Ready twiliosubaccounts --all -n payments --timeout=60s
kubectl wait --for=condition=Ready twilioaccounts --all -n payments --timeout=60s
kubectl wait --for=condition=Ready clustertwilioaccounts --all --timeout=60s
echo
echo "== kubectl get twilio -A"
kubectl get twilio -A
echo
for secret in $(kubectl get twkey -n payments -o jsonpath='{.items[*].status.secretName}'); do
  echo "== Secret $secret holds the keys (values not shown):"
  kubectl get secret "$secret" -n payments -o go-template='{{range $k, $v := .data}}  {{$k}}{{"\n"}}{{end}}'
done
echo
echo "== the account's auth token: rotation (every 90 days) and where it is delivered (values not shown)"
kubectl get twilioaccount main -n payments -o jsonpath='{.status.credentialRotation}{"\n"}'
kubectl get secret twilio-auth-token -n payments -o go-template='{{range $k, $v := .data}}  {{$k}}{{"\n"}}{{end}}'
echo
echo "== keys in the fake Twilio (GET /_fake/keys)"
curl -fsS "$twilio_url/_fake/keys" | python3 -m json.tool
echo
echo "== Events"
kubectl get events -n payments --field-selector involvedObject.kind=TwilioApiKey -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message 2>/dev/null \
  || kubectl get events -n payments
echo
echo "== a key made by hand in the account (as in the Twilio Console), which no TwilioApiKey manages"
curl -fsS -u AC11111111111111111111111111111111:demo-auth-token \
  -d AccountSid=AC11111111111111111111111111111111 -d FriendlyName="made by hand" \
  "$twilio_url/v1/Keys" | python3 -c 'import json, sys; print("created", json.load(sys.stdin)["sid"])'
for _ in $(seq 60); do
  unmanaged=$(kubectl get twilioaccount main -n payments -o jsonpath='{.status.keys.unmanaged}')
  [ "${unmanaged:-0}" -ge 1 ] && break
  sleep 1
done
echo "== kubectl twilio keys -n payments: every key of the account, and who manages it"
target/debug/kubectl-twilio keys -n payments
if $pods; then
  echo
  echo "== two Pods consume Secret checkout-api (Deployment checkout, hack/consumer/consume.sh)"
  hack/image.sh busybox twilio-consumer:demo --cmd '["/bin/sh", "/consume.sh"]' \
    --output "$state/consumer.tar" hack/consumer/consume.sh:/consume.sh 2> /dev/null
  hack/control-plane.sh import-image "$state/cluster" "$state/consumer.tar" > /dev/null
  kubectl apply -n payments -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout}
spec:
  replicas: 2
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: consumer
        image: twilio-consumer:demo
        imagePullPolicy: Never
        envFrom: [{secretRef: {name: checkout-api}}]
        env: [{name: TWILIO_URL, value: "$twilio_url"}]
        securityContext: {runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
YAML
  kubectl rollout status deployment/checkout -n payments --timeout=120s
  kubectl get pods -n payments -l app=checkout -o wide
  old=$(kubectl get twkey checkout-api -n payments -o jsonpath='{.status.keySid}')
  echo
  echo "== rotating checkout-api (its grace period shortened to 5s for the demo; examples/ says 5m)"
  kubectl patch twkey checkout-api -n payments --type merge -p '{"spec": {"rotation": {"gracePeriod": "5s"}}}'
  kubectl annotate twkey checkout-api -n payments twilio-operator.dev/rotate="$(date +%s)" --overwrite
  for _ in $(seq 120); do
    sid=$(kubectl get twkey checkout-api -n payments -o jsonpath='{.status.keySid}')
    retiring=$(kubectl get twkey checkout-api -n payments -o jsonpath='{.status.retiringKeys}')
    [ "$sid" != "$old" ] && [ -z "$retiring" ] && break
    sleep 1
  done
  echo "the old key $old is deleted; the Pods now use $sid"
  echo
  echo "== Events of checkout-api, oldest first"
  kubectl get events -n payments --field-selector involvedObject.name=checkout-api \
    --sort-by=.metadata.name -o custom-columns=REASON:.reason,MESSAGE:.message
  echo
  echo "== the Pods now, and their calls to Twilio (from kubectl logs)"
  kubectl get pods -n payments -l app=checkout
  for pod in $(kubectl get pods -n payments -l app=checkout -o name); do
    log=$(kubectl logs -n payments "$pod" 2> /dev/null || true)
    # A terminating Pod's log may be gone already.
    echo "$log" | head -n 1 | grep -q ' using key ' || continue
    echo "$pod: $(echo "$log" | head -n 1 | cut -d' ' -f2-); calls accepted: $(echo "$log" | grep -c ' accepted$'), refused: $(echo "$log" | grep -c ' refused: '), failed: $(echo "$log" | grep -c ' call failed: ')"
    echo "$log" | grep -E ' (refused|call failed): ' | head -n 3 || true
  done
  echo
  echo "== every call made with a key, as the fake Twilio counted them (GET /_fake/authentications)"
  curl -fsS "$twilio_url/_fake/authentications" | python3 -c '
import json, sys
for user, calls in json.load(sys.stdin).items():
    if user.startswith("SK"):
        print("  %s: accepted %d, refused %d" % (user, calls["accepted"], calls["refused"]))
'

fi
if $keep; then
  echo
  echo "Still running. KUBECONFIG=$KUBECONFIG; fake Twilio at $twilio_url"
  echo "Stop with: kill ${pids[*]}; hack/control-plane.sh down $state/cluster"
fi
