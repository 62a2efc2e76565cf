#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on 127.0.0.1,
# without Docker or internet: Kubernetes (1.37 by default, TWILIO_OPERATOR_KUBERNETES=1.33 for
# the oldest the operator supports) and its etcd are built once from their Go modules
# (hack/k8s/vX.Y/go.mod, through the Go module proxy) and cached outside the repository, keyed by
# version. `up-node` adds a node (containerd, kubelet, kube-proxy, kube-scheduler) so that Pods run,
# and cluster DNS (CoreDNS) as every real cluster has it.
#
#   hack/control-plane.sh build            build (or reuse) the cached binaries; prints their directory
#   hack/control-plane.sh up DIR [CRD...]  start a control plane whose state lives in DIR; the CRD
#                                          files are created before the controller manager starts
#                                          (its garbage collector only discovers types at start-up)
#   hack/control-plane.sh down DIR [--discard]
#                                          stop the processes started by `up DIR` (or `up-node`);
#                                          --discard also removes the cluster's data (etcd's, the
#                                          node's containers and images), keeping logs and kubeconfig
#   hack/control-plane.sh restart-apiserver DIR SECONDS
#                                          stop the API server, wait, start it again (same etcd, port)
#   hack/control-plane.sh build-node       build (or reuse) kubelet, kube-proxy, kube-scheduler
#                                          and CoreDNS
#   hack/control-plane.sh up-node DIR [CRD...]
#                                          `up` plus a node, as root: the API server on the node's
#                                          address (a bridge of its own, 10.123.X.1), Services in
#                                          10.96.0.0/24, cluster DNS at 10.96.0.10 (Service
#                                          kube-system/kube-dns); one node cluster per machine
#   hack/control-plane.sh import-image DIR TAR...
#                                          import OCI image tars (hack/image.sh) into the node
#   hack/control-plane.sh find-go          the Go that builds (hack/tools.sh uses it too)
#   hack/control-plane.sh version          the Kubernetes release that would be built and run
#
# `up` writes DIR/kubeconfig (admin) and DIR/env (with a node: NODE_IP, NODE_NAME, POD_CIDR,
# SERVICE_CIDR, CONTAINERD_ADDRESS too). With WATCH_PID=<pid>, the control plane stops by itself
# when that process exits and its data is discarded (etcd alone preallocates 64 MB), so a test
# run, even a killed one, leaves only logs behind.
set -Eeuo pipefail

# Which Kubernetes: a Go module per minor version in hack/k8s/ (v1.37, the newest, by default; v1.33,
# the oldest that the operator's client supports, for the compatibility run). Its go.mod pins the
# exact release and, through go.sum, every dependency.
KUBERNETES=${TWILIO_OPERATOR_KUBERNETES:-1.37}
KUBERNETES=${KUBERNETES#v}
HACK_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
MODULE_DIR="$HACK_DIR/k8s/v$KUBERNETES"
if [ ! -f "$MODULE_DIR/go.mod" ]; then
  echo "control-plane: no recipe for Kubernetes $KUBERNETES (TWILIO_OPERATOR_KUBERNETES); there are:" \
    "$(cd "$HACK_DIR/k8s" && ls -d v*/ | tr -d / | tr '\n' ' ')" >&2
  exit 2
fi
K8S_VERSION=$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9.]+)$/\2/p' "$MODULE_DIR/go.mod")
[ -n "$K8S_VERSION" ] || { echo "control-plane: $MODULE_DIR/go.mod requires no k8s.io/kubernetes" >&2; exit 2; }
# Bumped when the way the binaries are built changes (the cache then rebuilds them).
RECIPE_REVISION="1"
CACHE_ROOT="${TWILIO_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twilio-operator}"
BIN_DIR="$CACHE_ROOT/kubernetes-$K8S_VERSION-r$RECIPE_REVISION/bin"
# The module and build caches of Go, shared by every version and by hack/tools.
GO_CACHE_ENV=(GOMODCACHE="$CACHE_ROOT/go-mod" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0)
# The control plane: etcd (the version this Kubernetes' go.mod pins), the API server, the
# controller manager, and kubectl for the people and tests that use it.
CONTROL_PLANE_COMMANDS=(etcd kube-apiserver kube-controller-manager kubectl)
APT_PACKAGES=(openssl curl python3)
# The node: kubelet, kube-proxy and kube-scheduler from the same module, and what they run on.
NODE_COMMANDS=(kubelet kube-proxy kube-scheduler)
# Cluster DNS: CoreDNS (the DNS server of kubeadm, kind and most distributions), as Kubernetes
# $K8S_VERSION's kubeadm would install it, built from its own Go module at this version.
COREDNS_VERSION=v1.15.0
NODE_APT_PACKAGES=(containerd runc containernetworking-plugins iptables nftables conntrack iproute2
  busybox-static python3 util-linux)

log() { echo "control-plane: $*" >&2; }

# The Go package of a command of the module.
go_package() {
  case "$1" in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}

# A Go that can build the module: the one on PATH or /usr/local/go (Go 1.21 and later fetch the
# toolchain the module asks for through the module proxy when they are older, unless GOTOOLCHAIN
# says otherwise).
find_go() {
  local go version
  for go in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
    [ -n "$go" ] && [ -x "$go" ] || continue
    version=$("$go" env GOVERSION 2>/dev/null || true)
    case "$version" in
      go1.2[1-9]* | go1.[3-9][0-9]* | go[2-9]*) echo "$go"; return 0 ;;
    esac
  done
  log "building Kubernetes $K8S_VERSION needs Go 1.21 or later (https://go.dev/dl/; found: $(go version 2>/dev/null || echo none))"
  exit 1
}

missing_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  echo "${missing[@]:-}"
}

ensure_packages() {
  local missing
  missing=$(missing_packages "$@")
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: $missing"
    log "run as root: apt-get update && apt-get install -y --no-install-recommends $missing"
    exit 1
  fi
  log "installing $missing"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

# Builds the named commands of the module that are not in BIN_DIR yet, one `go build` each (the
# packages they share are compiled once, into Go's build cache), printing the time of each. Go's
# build cache is emptied once they are built: it grows to some 6 GB a version, and only a rebuild
# would use it, which a new version makes anyway.
build_commands() {
  local missing=() cmd
  for cmd in "$@"; do
    [ -x "$BIN_DIR/$cmd" ] || missing+=("$cmd")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  local go started minor=${K8S_VERSION#v1.}
  go=$(find_go)
  minor=${minor%%.*}
  mkdir -p "$BIN_DIR"
  local ldflags="-s -w" versionpkg
  for versionpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $versionpkg.gitVersion=$K8S_VERSION -X $versionpkg.gitMajor=1 -X $versionpkg.gitMinor=$minor"
    ldflags+=" -X $versionpkg.gitTreeState=clean"
  done
  started=$SECONDS
  log "downloading the Go modules of Kubernetes $K8S_VERSION (once; cached in $CACHE_ROOT/go-mod)"
  (cd "$MODULE_DIR" && env "${GO_CACHE_ENV[@]}" "$go" mod download >&2)
  log "go mod download took $((SECONDS - started)) s"
  for cmd in "${missing[@]}"; do
    log "go build $cmd $K8S_VERSION (minutes, once; cached in $BIN_DIR)"
    started=$SECONDS
    (cd "$MODULE_DIR" && env "${GO_CACHE_ENV[@]}" "$go" build -trimpath -ldflags "$ldflags" \
      -o "$BIN_DIR/$cmd.tmp" "$(go_package "$cmd")" >&2)
    mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    log "go build $cmd $K8S_VERSION took $((SECONDS - started)) s"
  done
  (cd "$MODULE_DIR" && env "${GO_CACHE_ENV[@]}" "$go" clean -cache)
}

build() {
  ensure_packages "${APT_PACKAGES[@]}"
  build_commands "${CONTROL_PLANE_COMMANDS[@]}"
}

build_node() {
  ensure_packages "${APT_PACKAGES[@]}"
  build_commands "${CONTROL_PLANE_COMMANDS[@]}" "${NODE_COMMANDS[@]}"
  build_coredns
  ensure_packages "${NODE_APT_PACKAGES[@]}"
}

# CoreDNS, from its module at COREDNS_VERSION (its own go.mod and go.sum pin the rest), into
# BIN_DIR beside the node's commands.
build_coredns() {
  [ -x "$BIN_DIR/coredns-$COREDNS_VERSION" ] && return 0
  local go started
  go=$(find_go)
  mkdir -p "$BIN_DIR"
  log "go install coredns $COREDNS_VERSION (once; cached in $BIN_DIR)"
  started=$SECONDS
  local scratch
  scratch=$(mktemp -d)
  (cd "$scratch" && env "${GO_CACHE_ENV[@]}" GOFLAGS= GOBIN="$scratch/bin" "$go" install -trimpath \
    -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" >&2)
  mv "$scratch/bin/coredns" "$BIN_DIR/coredns-$COREDNS_VERSION"
  rm -rf "$scratch"
  (cd "$MODULE_DIR" && env "${GO_CACHE_ENV[@]}" "$go" clean -cache)
  log "go install coredns $COREDNS_VERSION took $((SECONDS - started)) s"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not become ready in ${seconds}s"
  return 1
}

# The CA, the API server's serving certificate (its IP SANs: 127.0.0.1 and the extra ones given),
# the service account key pair and the static tokens of the admin and the controller manager.
pki() {
  local dir=$1 extra_sans=${2:-}
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=twilio-operator-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    cat > serving.ext <<EXT
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local$extra_sans
EXT
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout serving.key -out serving.csr 2>/dev/null
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local admin_token cm_token
    admin_token=$(openssl rand -hex 24)
    cm_token=$(openssl rand -hex 24)
    printf '%s,admin,admin-uid,"system:masters"\n%s,system:kube-controller-manager,kcm-uid,"system:masters"\n' \
      "$admin_token" "$cm_token" > tokens.csv
    echo "$admin_token" > admin.token
    echo "$cm_token" > kcm.token
  )
}

kubeconfig() {
  local file=$1 server=$2 ca=$3 token=$4
  cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority: "$ca"}
users:
- name: user
  user: {token: "$token"}
contexts:
- name: local
  context: {cluster: local, user: user, namespace: default}
current-context: local
KC
}

up() {
  local dir=$1; shift
  build
  [ "${NODE:-0}" != 1 ] || node_preflight
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  : > "$dir/pids"
  # Whatever was started is stopped again if start-up fails half-way, or when WATCH_PID exits.
  trap 'down "$dir"; exit 1' ERR
  if [ -n "${WATCH_PID:-}" ]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" down "$3" --discard' \
      watchdog "$WATCH_PID" "$(readlink -f "$0")" "$dir" > /dev/null 2>&1 < /dev/null &
  fi
  local api_host=127.0.0.1
  if [ "${NODE:-0}" = 1 ]; then
    node_claim "$dir"
    node_network "$dir"
    api_host=$NODE_IP
    pki "$dir" ",IP:$NODE_IP,IP:$SERVICE_IP"
    node_pki "$dir"
  else
    pki "$dir"
  fi
  local etcd_port etcd_peer_port api_port
  etcd_port=$(free_port); etcd_peer_port=$(free_port); api_port=$(free_port)
  local etcd_url="http://127.0.0.1:$etcd_port"
  setsid "$BIN_DIR/etcd" --name local --data-dir "$dir/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new \
    > "$dir/etcd.log" 2>&1 < /dev/null &
  echo $! >> "$dir/pids"
  wait_for etcd 30 sh -c "curl -fsS $etcd_url/health | grep -q true"

  start_apiserver "$dir" "$etcd_url" "$api_port"
  local server="https://$api_host:$api_port"
  kubeconfig "$dir/kubeconfig" "$server" "$dir/ca.crt" "$(cat "$dir/admin.token")"
  kubeconfig "$dir/kcm.kubeconfig" "$server" "$dir/ca.crt" "$(cat "$dir/kcm.token")"
  cat > "$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
ETCD_URL=$etcd_url
API_PORT=$api_port
ENV
  [ "${NODE:-0}" != 1 ] || cat "$dir/node/env" >> "$dir/env"

  for crd in "$@"; do
    curl -fsS --show-error --cacert "$dir/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
      -H 'Content-Type: application/yaml' --data-binary "@$crd" \
      "$server/apis/apiextensions.k8s.io/v1/customresourcedefinitions" > /dev/null
  done
  # Served once Established: until then the API server answers 404 for their resources.
  [ "$#" = 0 ] || "$BIN_DIR/kubectl" --kubeconfig "$dir/kubeconfig" --cache-dir "$dir/kubectl-cache" \
    wait --for=condition=Established crd --all --timeout=60s > /dev/null

  setsid "$BIN_DIR/kube-controller-manager" --kubeconfig="$dir/kcm.kubeconfig" \
    --secure-port=0 --leader-elect=false --controllers='*' \
    --use-service-account-credentials=false --service-account-private-key-file="$dir/sa.key" \
    --root-ca-file="$dir/ca.crt" --cluster-signing-cert-file="$dir/ca.crt" \
    --cluster-signing-key-file="$dir/ca.key" \
    > "$dir/kube-controller-manager.log" 2>&1 < /dev/null &
  echo $! >> "$dir/pids"
  [ "${NODE:-0}" != 1 ] || node_up "$dir" "$server"
  trap - ERR
  log "ready: Kubernetes $K8S_VERSION, KUBECONFIG=$dir/kubeconfig"
  echo "$dir/kubeconfig"
}

# Split out so that tests can restart the API server on the same etcd and port.
start_apiserver() {
  local dir=$1 etcd_url=$2 api_port=$3
  local api_host=127.0.0.1 service_cidr=127.0.100.0/24 node_args=(--endpoint-reconciler-type=none)
  if [ -f "$dir/node/env" ]; then
    # With a node: the API server listens on and advertises the node's address, and the
    # `kubernetes` Service (first address of the Service range) has it as its endpoint.
    # shellcheck disable=SC1091
    . "$dir/node/env"
    api_host=$NODE_IP
    service_cidr=$SERVICE_CIDR
    node_args=(--kubelet-client-certificate="$dir/kubelet-client.crt" --kubelet-client-key="$dir/kubelet-client.key"
      --kubelet-preferred-address-types=InternalIP
      --audit-policy-file="$dir/node/audit-policy.yaml" --audit-log-path="$dir/audit.log" --audit-log-format=json)
  fi
  setsid "$BIN_DIR/kube-apiserver" --etcd-servers="$etcd_url" \
    --bind-address="$api_host" --advertise-address="$api_host" --secure-port="$api_port" \
    --tls-cert-file="$dir/serving.crt" --tls-private-key-file="$dir/serving.key" \
    --client-ca-file="$dir/ca.crt" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-cluster-ip-range="$service_cidr" "${node_args[@]}" --allow-privileged=true \
    >> "$dir/kube-apiserver.log" 2>&1 < /dev/null &
  echo $! > "$dir/apiserver.pid"
  echo $! >> "$dir/pids"
  wait_for kube-apiserver 60 sh -c \
    "curl -fsS --cacert '$dir/ca.crt' -H 'Authorization: Bearer $(cat "$dir/admin.token")' https://$api_host:$api_port/readyz | grep -q ok"
}

down() {
  local dir=$1
  [ ! -d "$dir" ] || dir=$(cd "$dir" && pwd)
  if [ -d "$dir/node" ]; then
    node_down "$dir"
    return 0
  fi
  [ -f "$dir/pids" ] || return 0
  # The API server and the controller manager first, then etcd (the first line): an API server
  # whose etcd went first never finishes its graceful shutdown (1.37's stayed up for good), so
  # SIGTERM, and SIGKILL whatever still runs after 5 s.
  local pids=()
  mapfile -t pids < <(grep -E '^[0-9]+$' "$dir/pids")
  # (`|| true`: not under errexit, for a pid already gone, such as a restarted API server's.)
  [ "${#pids[@]}" -lt 2 ] || stop_processes 5 "${pids[@]:1}" || true
  [ "${#pids[@]}" = 0 ] || stop_processes 5 "${pids[0]}" || true
  : > "$dir/pids"
}

# The cluster's data, once `down` stopped it: etcd's, and the node's (containerd's root with the
# images and the containers' filesystems) unless something is still mounted there.
discard() {
  local dir=$1
  [ -d "$dir" ] || return 0
  rm -rf "${dir:?}/etcd"
  if [ -d "$dir/node" ] || [ -d "$dir/images" ]; then
    if awk -v d="$(cd "$dir" && pwd)/" 'index($5, d) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
      log "$dir: mounts are left under it, so the node's data stays"
      return 0
    fi
    rm -rf "${dir:?}/node" "${dir:?}/images"
  fi
}

restart_apiserver() {
  local dir=$1 seconds=$2
  # shellcheck disable=SC1091
  . "$dir/env"
  kill -9 "$(cat "$dir/apiserver.pid")" 2>/dev/null || true
  sleep "$seconds"
  start_apiserver "$dir" "$ETCD_URL" "$API_PORT"
}

# ---------------------------------------------------------------------------------------------
# The node: a bridge whose address is the node's, containerd, kubelet, kube-proxy (iptables) and
# kube-scheduler. One node cluster per machine: kube-proxy's and the kubelet's iptables chains
# (KUBE-*), the bridge and the cgroup tree are the host's, so a second `up-node` waits for the
# first to be stopped (NODE_WAIT seconds, 120 by default) and then gives up, naming it.

NODE_NAME=twilio-operator-node
NODE_BRIDGE=twop-node0
NODE_CGROUP=twilio-operator-node
NODE_NETWORK=twilio-operator-node
NODE_OWNER=/run/twilio-operator-node.owner
NODE_LOCK=/run/twilio-operator-node.lock
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
PAUSE_IMAGE=docker.io/library/twilio-operator-pause:busybox
# Directories of the machine that the kubelet, containerd and the CNI plugins write to
# whatever their own directories are; `down` removes what appeared in them.
NODE_HOST_DIRS=(/var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd /run/mount)

node_preflight() {
  if [ "$(id -u)" != 0 ]; then
    log "a node needs root (containerd, runc, a bridge, iptables, mounts and cgroups)"
    exit 1
  fi
  build_node
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    log "warning: only cgroup v2 is mounted; this recipe's kubelet is checked on cgroup v1 only"
  fi
}

# Whether the node cluster in $1 still runs, or is being stopped: one of its processes is alive
# (its command line names the directory), or a `down` of it is.
node_alive() {
  local dir=$1 pid
  if [ -f "$dir/node/stopping" ] && kill -0 "$(cat "$dir/node/stopping")" 2>/dev/null; then
    return 0
  fi
  [ -f "$dir/pids" ] || return 1
  while read -r pid; do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$dir/" &&
      return 0
  done < "$dir/pids"
  return 1
}

# Makes $1 the machine's node cluster: waits for another one to be stopped, and cleans up after
# one whose processes are gone without a `down`.
node_claim() {
  local dir=$1 deadline=$((SECONDS + ${NODE_WAIT:-120})) owner lock said=0
  while :; do
    exec {lock}> "$NODE_LOCK"
    flock "$lock"
    owner=$(cat "$NODE_OWNER" 2>/dev/null || true)
    if [ -n "$owner" ] && [ "$owner" != "$dir" ] && node_alive "$owner"; then
      exec {lock}>&-
      if [ $SECONDS -ge "$deadline" ]; then
        log "another node cluster runs in $owner, and only one can run on a machine (kube-proxy's"
        log "iptables chains, the bridge and the cgroups are the host's); stop it: $0 down $owner"
        exit 1
      fi
      [ "$said" = 1 ] || log "waiting for the node cluster in $owner to stop (one node cluster per machine)"
      said=1
      sleep 1
      continue
    fi
    if [ -n "$owner" ]; then
      exec {lock}>&-
      log "cleaning up after the node cluster of $owner, which was not stopped"
      node_down "$owner"
      continue
    fi
    # `down` removes every KUBE-* chain: refuse to start beside chains that are not ours.
    if iptables -t nat -S KUBE-SERVICES > /dev/null 2>&1; then
      exec {lock}>&-
      log "iptables holds kube-proxy's chains (KUBE-SERVICES) of no node cluster of this script:"
      log "this machine runs another Kubernetes node. A node cluster cannot run beside it."
      exit 1
    fi
    mkdir -p "$dir/node"
    echo "$dir" > "$NODE_OWNER"
    exec {lock}>&-
    return 0
  done
}

# The first 10.123.X.0/24 that no route or address of this machine overlaps.
free_subnet() {
  python3 - "$SERVICE_CIDR" <<'PY'
import ipaddress, subprocess, sys
taken = []
routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
for line in routes.splitlines():
    words = [w for w in line.split() if w not in ("broadcast", "local", "unicast", "multicast", "unreachable",
                                                  "blackhole", "prohibit", "throw", "anycast")]
    if words and words[0] != "default":
        try:
            taken.append(ipaddress.ip_network(words[0], strict=False))
        except ValueError:
            pass
for line in addresses.splitlines():
    words = line.split()
    if "inet" in words:
        taken.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
service = ipaddress.ip_network(sys.argv[1])
clash = [str(n) for n in taken if n.overlaps(service)]
if clash:
    sys.exit(f"the Service range {service} overlaps {', '.join(clash)} on this machine")
for x in range(256):
    if not any(n.overlaps(ipaddress.ip_network(f"10.123.{x}.0/24")) for n in taken):
        print(f"10.123.{x}")
        sys.exit(0)
sys.exit("no free 10.123.X.0/24")
PY
}

# The bridge the Pods hang off; its address is the node's. Nothing from the bridge is forwarded
# off the machine: the Pods' only routes are their /24 and the Service range (via the node), the
# bridge alone forwards (Pod -> Service -> Pod), and a rule drops what would leave it.
node_network() {
  local dir=$1 subnet host_dir
  # What the machine had before: `down` removes only what the node added.
  mkdir -p "$dir/node/host"
  iptables-save | awk '/^\*/ {print substr($1, 2)}' > "$dir/node/host/iptables-tables"
  for host_dir in "${NODE_HOST_DIRS[@]}"; do
    [ ! -d "$host_dir" ] || ls -A "$host_dir" > "$dir/node/host/$(echo "$host_dir" | tr / _)"
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  subnet=$(free_subnet)
  NODE_IP=$subnet.1
  cat > "$dir/node/env" <<ENV
NODE_IP=$NODE_IP
NODE_NAME=$NODE_NAME
POD_CIDR=$subnet.0/24
SERVICE_CIDR=$SERVICE_CIDR
CONTAINERD_ADDRESS=$dir/node/containerd/containerd.sock
ENV
  # What is changed machine-wide is restored by `down`.
  {
    echo "net.ipv4.conf.all.route_localnet=$(cat /proc/sys/net/ipv4/conf/all/route_localnet)"
    [ ! -f /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
      echo "net.bridge.bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
  } > "$dir/node/sysctl.orig"
  ip link add "$NODE_BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  echo 1 > "/proc/sys/net/ipv4/conf/$NODE_BRIDGE/forwarding"
  # Traffic between Pods of the bridge passes iptables (Service addresses are translated).
  [ ! -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
  iptables -I FORWARD 1 -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -m comment --comment "$NODE_NAME: Pods stay on this machine" -j DROP
}

# Certificates and tokens of the node's components: the API server's client certificate for
# the kubelet (logs, exec), and a token each for the kubelet, kube-proxy and the scheduler; and
# the API server's audit policy.
node_pki() {
  local dir=$1
  cat > "$dir/node/audit-policy.yaml" <<YAML
# What ServiceAccounts (Pods) do, so that a test can see who called the API server and from where.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
YAML
  (
    cd "$dir"
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout kubelet-client.key -out kubelet-client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > kubelet-client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile kubelet-client.ext -out kubelet-client.crt 2>/dev/null
    local component token
    for component in kubelet:system:node:$NODE_NAME kube-proxy:system:kube-proxy kube-scheduler:system:kube-scheduler \
      coredns:system:coredns; do
      token=$(openssl rand -hex 24)
      printf '%s,%s,%s-uid,"system:masters"\n' "$token" "${component#*:}" "${component%%:*}" >> tokens.csv
      echo "$token" > "${component%%:*}.token"
    done
  )
}

# Starts the scheduler, containerd, the kubelet and kube-proxy, and waits until the node is
# Ready and the `kubernetes` Service leads to the API server.
node_up() {
  local dir=$1 server=$2
  local n="$dir/node"
  # shellcheck disable=SC1091
  . "$n/env"
  local sock=$CONTAINERD_ADDRESS
  if [ "${#sock}" -gt 100 ]; then
    log "$dir is too deep: containerd's socket path ($sock) must stay under 108 bytes"
    return 1
  fi
  for component in kubelet kube-proxy kube-scheduler coredns; do
    kubeconfig "$n/$component.kubeconfig" "$server" "$dir/ca.crt" "$(cat "$dir/$component.token")"
  done

  setsid "$BIN_DIR/kube-scheduler" --kubeconfig="$n/kube-scheduler.kubeconfig" --leader-elect=false \
    --secure-port=0 > "$dir/kube-scheduler.log" 2>&1 < /dev/null &
  echo $! | tee "$n/kube-scheduler.pid" >> "$dir/pids"

  # cgroups: everything the kubelet starts lives under one tree of its own, in every hierarchy.
  local hierarchy
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    mkdir -p "$hierarchy/$NODE_CGROUP"
    if [ -f "$hierarchy/cpuset.cpus" ]; then
      cat "$hierarchy/cpuset.cpus" > "$hierarchy/$NODE_CGROUP/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" > "$hierarchy/$NODE_CGROUP/cpuset.mems"
    fi
  done

  # containerd with its own root, state and socket; the CRI settings this machine needs.
  mkdir -p "$n/containerd" "$n/cni/net.d" "$n/cni/ipam" "$n/kubelet"
  cat > "$n/containerd/config.toml" <<TOML
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  # No registry: the sandbox image is imported below.
  sandbox_image = "$PAUSE_IMAGE"
  # A negative oom_score_adj (the kubelet's -998 for sandboxes) is refused on this kind of
  # machine; containerd then clamps it instead of failing every sandbox.
  restrict_oom_score_adj = true
  # The Pods' network namespaces are mounted under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$n/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni/net.d"
TOML
  local pod_subnet=${POD_CIDR%.0/24}
  cat > "$n/cni/net.d/10-$NODE_NETWORK.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "$NODE_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$n/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "$pod_subnet.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR", "gw": "$NODE_IP"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  setsid containerd --config "$n/containerd/config.toml" > "$dir/containerd.log" 2>&1 < /dev/null &
  echo $! | tee "$n/containerd.pid" >> "$dir/pids"
  wait_for containerd 30 ctr --address "$sock" version
  "$HACK_DIR/image.sh" pause "$PAUSE_IMAGE" --output "$n/pause.tar" > /dev/null
  ctr --address "$sock" --namespace k8s.io images import "$n/pause.tar" > /dev/null

  local kubelet_port healthz_port proxy_healthz_port proxy_metrics_port
  kubelet_port=$(free_port); healthz_port=$(free_port); proxy_healthz_port=$(free_port); proxy_metrics_port=$(free_port)
  cat > "$n/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
# The API server's client certificate (logs, exec); nobody else.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
# This machine has cgroup v1, which the kubelet refuses since 1.35 unless told (KEP-5573).
failCgroupV1: false
cgroupRoot: /$NODE_CGROUP
failSwapOn: false
oomScoreAdj: 0
enforceNodeAllocatable: []
# Never collect the images imported by hand, never evict test Pods on a busy disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
YAML
  setsid "$BIN_DIR/kubelet" --config="$n/kubelet.yaml" --kubeconfig="$n/kubelet.kubeconfig" \
    --root-dir="$n/kubelet" --cert-dir="$n/kubelet-pki" --volume-plugin-dir="$n/kubelet-plugins" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    > "$dir/kubelet.log" 2>&1 < /dev/null &
  echo $! | tee "$n/kubelet.pid" >> "$dir/pids"

  cat > "$n/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $n/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$proxy_healthz_port
metricsBindAddress: 127.0.0.1:$proxy_metrics_port
# NodePorts only on the node's address, never on the machine's other interfaces.
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  setsid "$BIN_DIR/kube-proxy" --config="$n/kube-proxy.yaml" > "$dir/kube-proxy.log" 2>&1 < /dev/null &
  echo $! | tee "$n/kube-proxy.pid" >> "$dir/pids"

  wait_for "the node $NODE_NAME" 120 sh -c "'$BIN_DIR/kubectl' --kubeconfig '$dir/kubeconfig' --cache-dir '$n/kubectl-cache' get node $NODE_NAME \
    -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  wait_for "kube-proxy's rule for the kubernetes Service" 60 sh -c \
    "iptables -t nat -S KUBE-SERVICES | grep -qF '$SERVICE_IP/32'"
  node_dns "$dir"
}

# Cluster DNS: CoreDNS on the node's address (a port of its own), behind the Service
# kube-system/kube-dns at DNS_IP:53, whose endpoint is that address, as a cluster's DNS Pods
# would be; the kubelet gives every Pod DNS_IP as its nameserver. Names outside cluster.local go
# to the machine's resolver.
node_dns() {
  local dir=$1 n="$1/node" port forward=""
  port=$(free_port)
  # Other names go to the machine's resolver, if it has one (CoreDNS refuses a forward to none).
  grep -q '^nameserver' /etc/resolv.conf 2>/dev/null && forward="forward . /etc/resolv.conf"
  cat > "$n/Corefile" <<COREFILE
.:$port {
    bind $NODE_IP
    errors
    health 127.0.0.1:$(free_port)
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $n/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    $forward
    cache 5
}
COREFILE
  setsid "$BIN_DIR/coredns-$COREDNS_VERSION" -conf "$n/Corefile" > "$dir/coredns.log" 2>&1 < /dev/null &
  echo $! | tee "$n/coredns.pid" >> "$dir/pids"
  "$BIN_DIR/kubectl" --kubeconfig "$dir/kubeconfig" --cache-dir "$n/kubectl-cache" apply -f - > /dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $port}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: control-plane.sh}
addressType: IPv4
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
ports:
- {name: dns, port: $port, protocol: UDP}
- {name: dns-tcp, port: $port, protocol: TCP}
YAML
  # An A query for kubernetes.default.svc.cluster.local, through the kube-dns Service.
  local query='
import socket, struct, sys
name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
query = struct.pack(">HHHHHH", 0x7470, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(query, (sys.argv[1], 53))
sys.exit(0 if struct.unpack(">H", s.recv(512)[6:8])[0] > 0 else 1)
'
  wait_for "cluster DNS at $DNS_IP" 60 python3 -c "$query" "$DNS_IP"
}

# Processes that are gone or zombies are not alive.
alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# SIGTERM to the processes, SIGKILL to those still alive after $1 seconds.
stop_processes() {
  local seconds=$1 pid left
  shift
  for pid in "$@"; do kill "$pid" 2>/dev/null; done
  for _ in $(seq $((seconds * 5))); do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.2
  done
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null; done
}

# The processes of the node's cgroups (the containers) and the shims of its containerd.
node_leftovers() {
  local sock=$1 pid
  find /sys/fs/cgroup/ -path "*/$NODE_CGROUP/*" -name cgroup.procs -exec cat {} + 2>/dev/null
  for pid in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null < "$pid/cmdline" | grep -qF -- "-address $sock " && echo "${pid#/proc/}"
  done
  return 0
}

# Deletes iptables rules that jump to the chains of kube-proxy, the kubelet or the portmap
# plugin (KUBE-*, CNI-HOSTPORT-*, CNI-DN-*) or carry the node's comment, then those chains.
iptables_cleanup() {
  local table rule chain
  for table in filter nat mangle raw; do
    iptables -t "$table" -S 2>/dev/null |
      grep -E -- "^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(-j (KUBE-|CNI-HOSTPORT-|CNI-DN-)|$NODE_NAME: )" |
      while read -r rule; do
        eval "iptables -t $table -D ${rule#-A }" 2>/dev/null
      done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null
    done
  done
}

# Stops the node cluster in $1 and removes what it left on the machine: processes (containers
# and shims included), mounts, cgroups, the bridge (the Pods' interfaces and network namespaces
# go with their mounts), iptables rules, the CNI plugins' cache, the Pods' logs under /var/log,
# and the sysctl values it changed. Tolerant of a half-started or half-stopped cluster.
node_down() (
  set +e
  trap - ERR
  dir=$1
  n="$dir/node"
  [ ! -d "$n" ] || echo $$ > "$n/stopping"
  sock="$n/containerd/containerd.sock"
  # The kubelet first: it would restart what is stopped below.
  for component in kubelet kube-proxy kube-scheduler; do
    [ -f "$n/$component.pid" ] && stop_processes 10 "$(cat "$n/$component.pid")"
  done
  # Every container, through containerd while it runs: the shims unmount their root filesystems
  # and exit.
  if [ -f "$n/containerd.pid" ] && alive "$(cat "$n/containerd.pid")"; then
    for id in $(timeout 10 ctr --address "$sock" --namespace k8s.io tasks ls -q 2>/dev/null); do
      timeout 20 ctr --address "$sock" --namespace k8s.io tasks rm --force "$id" > /dev/null 2>&1
    done
  fi
  # The control plane and containerd. On SIGTERM, the API server (with the lease endpoint
  # reconciler) keeps trying to remove its endpoint through its own closed port: 3 s, then KILL.
  pids=()
  [ -f "$dir/pids" ] && mapfile -t pids < <(grep -E '^[0-9]+$' "$dir/pids")
  [ "${#pids[@]}" = 0 ] || stop_processes 3 "${pids[@]}"
  [ ! -f "$dir/pids" ] || : > "$dir/pids"
  # Whatever is left: containers and shims.
  for _ in $(seq 20); do
    mapfile -t left < <(node_leftovers "$sock" | sort -u)
    [ "${#left[@]}" = 0 ] && break
    kill -9 "${left[@]}" 2>/dev/null
    sleep 0.5
  done
  # The shims' sockets (their names are in the task state) and containerd's directory in /run.
  for address in "$n"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    [ -f "$address" ] && rm -f "$(sed 's|^unix://||' "$address")"
  done
  # Mounts: the kubelet's volumes and root, the containers' root filesystems, shm, network
  # namespaces. Deepest first; stacked mounts need more than one pass.
  for _ in $(seq 10); do
    mapfile -t mounts < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ "${#mounts[@]}" = 0 ] && break
    for mount in "${mounts[@]}"; do
      umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null
    done
  done
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    [ -d "$hierarchy/$NODE_CGROUP" ] || continue
    for _ in $(seq 20); do
      find "$hierarchy/$NODE_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null
      [ -d "$hierarchy/$NODE_CGROUP" ] || break
      sleep 0.5
    done
  done
  # The Pods' logs, the kubelet's device plugin socket, the CNI plugins' cache: the entries of
  # the machine's directories that were not there before (the directories too, if they were not).
  if [ -d "$n/host" ]; then
    for host_dir in "${NODE_HOST_DIRS[@]}"; do
      before="$n/host/$(echo "$host_dir" | tr / _)"
      if [ ! -f "$before" ]; then
        rm -rf "$host_dir"
        continue
      fi
      while IFS= read -r entry; do
        grep -qxF "$entry" "$before" || rm -rf "${host_dir:?}/$entry"
      done < <(ls -A "$host_dir" 2>/dev/null)
    done
  fi
  ip link del "$NODE_BRIDGE" 2>/dev/null
  [ -x "$BIN_DIR/kube-proxy" ] && "$BIN_DIR/kube-proxy" --cleanup > "$dir/kube-proxy-cleanup.log" 2>&1
  iptables_cleanup
  # Tables that only the node made (with nftables' iptables, empty tables stay, and a nat table
  # keeps connection tracking on).
  if [ -f "$n/host/iptables-tables" ] && iptables --version | grep -q nf_tables; then
    for table in filter nat mangle raw; do
      grep -qx "$table" "$n/host/iptables-tables" && continue
      [ -z "$(iptables -t "$table" -S 2>/dev/null | grep -v '^-P [A-Z]* ACCEPT$')" ] &&
        nft delete table ip "$table" 2>/dev/null
    done
  fi
  if [ -f "$n/env" ]; then
    # shellcheck disable=SC1091
    . "$n/env"
    conntrack -D -s "$POD_CIDR" > /dev/null 2>&1
    conntrack -D -d "$POD_CIDR" > /dev/null 2>&1
    conntrack -D -d "$SERVICE_CIDR" > /dev/null 2>&1
  fi
  if [ -f "$n/sysctl.orig" ]; then
    while IFS='=' read -r key value; do
      echo "$value" > "/proc/sys/${key//.//}"
    done < "$n/sysctl.orig"
  fi
  exec {lock}> "$NODE_LOCK"
  flock "$lock"
  [ "$(cat "$NODE_OWNER" 2>/dev/null)" != "$dir" ] || rm -f "$NODE_OWNER"
  rm -f "$n/stopping"
  return 0
)

# Imports OCI image tars (hack/image.sh) into the node's containerd, where the kubelet finds them.
import_image() {
  local dir=$1; shift
  # shellcheck disable=SC1091
  . "$dir/node/env"
  local tar
  for tar in "$@"; do
    ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io images import "$tar" >&2
  done
}

case "${1:-}" in
  build) build; echo "$BIN_DIR" ;;
  find-go) find_go ;;
  version) echo "$K8S_VERSION" ;;
  build-node) build_node; echo "$BIN_DIR" ;;
  up) [ $# -ge 2 ] || { echo "usage: $0 up DIR [CRD...]" >&2; exit 2; }; shift; up "$@" ;;
  up-node) [ $# -ge 2 ] || { echo "usage: $0 up-node DIR [CRD...]" >&2; exit 2; }; shift; NODE=1 up "$@" ;;
  down) [ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$3" = --discard ]; } \
      || { echo "usage: $0 down DIR [--discard]" >&2; exit 2; }
    down "$2"
    [ $# -eq 2 ] || discard "$2" ;;
  restart-apiserver) [ $# -eq 3 ] || { echo "usage: $0 restart-apiserver DIR SECONDS" >&2; exit 2; }
    restart_apiserver "$2" "$3" ;;
  import-image) [ $# -ge 3 ] || { echo "usage: $0 import-image DIR TAR..." >&2; exit 2; }; shift; import_image "$@" ;;
  *) awk 'NR > 1 && /^set -E/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2; exit 2 ;;
esac
