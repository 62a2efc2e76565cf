#!/usr/bin/env bash
# The operator's main job on embedded defaults: a local control plane, the fake Twilio, the
# operator, and examples/ applied; then the resulting resources and the Secrets' keys (never
# their values) are shown. Everything it starts is stopped when it ends, unless --keep is given.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
keep=false
[ "${1:-}" = "--keep" ] && keep=true

hack/control-plane.sh build > /dev/null
if ! command -v kubectl > /dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing kubectl (Debian's kubernetes-client)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client > /dev/null
  else
    echo "kubectl is missing; as root: apt-get install -y kubernetes-client" >&2
    exit 1
  fi
fi
echo "== building the operator and the fake Twilio"
cargo build --quiet -p twilio-operator -p fake-twilio --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/twilio-operator-demo.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  hack/control-plane.sh down "$state/cluster" || true
}
if ! $keep; then trap cleanup EXIT; fi

echo "== starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1"
hack/control-plane.sh up "$state/cluster" crds/*.yaml > /dev/null
export KUBECONFIG="$state/cluster/kubeconfig"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
twilio_port=$(port)
metrics_port=$(port)

echo "== starting the fake Twilio on 127.0.0.1:$twilio_port"
target/debug/fake-twilio --listen "127.0.0.1:$twilio_port" \
  --account AC11111111111111111111111111111111:demo-auth-token > "$state/fake-twilio.log" 2>&1 &
pids+=($!)

echo "== applying examples/"
kubectl apply -f examples/00-namespace.yaml
kubectl apply -f examples/

echo "== starting the operator (log: $state/operator.log)"
target/debug/twilio-operator run --twilio-api-url "http://127.0.0.1:$twilio_port" \
  --metrics-addr "127.0.0.1:$metrics_port" > "$state/operator.log" 2>&1 &
pids+=($!)

kubectl wait --for=condition=Ready twilioapikeys --all -n twilio-demo --timeout=120s
kubectl wait --for=condition=Ready twilioaccounts --all -n twilio-demo --timeout=60s
kubectl wait --for=condition=Ready clustertwilioaccounts --all --timeout=60s
echo
echo "== kubectl get twilio -A"
kubectl get twilio -A
echo
for secret in $(kubectl get twkey -n twilio-demo -o jsonpath='{.items[*].status.secretName}'); do
  echo "== Secret $secret holds the keys (values not shown):"
  kubectl get secret "$secret" -n twilio-demo -o go-template='{{range $k, $v := .data}}  {{$k}}{{"\n"}}{{end}}'
done
echo
echo "== keys in the fake Twilio (GET /_fake/keys)"
curl -fsS "http://127.0.0.1:$twilio_port/_fake/keys" | python3 -m json.tool
echo
echo "== Events"
kubectl get events -n twilio-demo --field-selector involvedObject.kind=TwilioApiKey -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message 2>/dev/null \
  || kubectl get events -n twilio-demo
if $keep; then
  echo
  echo "Still running. KUBECONFIG=$KUBECONFIG; fake Twilio at http://127.0.0.1:$twilio_port"
  echo "Stop with: kill ${pids[*]}; hack/control-plane.sh down $state/cluster"
fi
