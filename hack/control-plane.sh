#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on 127.0.0.1,
# without Docker or internet: the API server and controller manager are built once from Debian
# bookworm's `kubernetes` source package and cached outside the repository.
#
#   hack/control-plane.sh build            build (or reuse) the cached binaries
#   hack/control-plane.sh up DIR [CRD...]  start a control plane whose state lives in DIR; the CRD
#                                          files are created before the controller manager starts
#                                          (its garbage collector only discovers types at start-up)
#   hack/control-plane.sh down DIR         stop the processes started by `up DIR`
#   hack/control-plane.sh restart-apiserver DIR SECONDS
#                                          stop the API server, wait, start it again (same etcd, port)
#
# `up` writes DIR/kubeconfig (admin) and DIR/env. With WATCH_PID=<pid>, the control plane stops by
# itself when that process exits, so a test run that is killed leaves nothing behind.
set -Eeuo pipefail

K8S_SOURCE_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
RECIPE_REVISION="1"
CACHE_ROOT="${TWILIO_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twilio-operator}"
BIN_DIR="$CACHE_ROOT/kubernetes-$K8S_VERSION-r$RECIPE_REVISION/bin"
APT_PACKAGES=(golang-go etcd-server rsync dpkg-dev openssl curl golang-github-modern-go-reflect2-dev)

log() { echo "control-plane: $*" >&2; }

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

ensure_deb_src() {
  if grep -rqs '^Types: .*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    log "no deb-src entry; as root, add one (Types: deb-src, same URIs/Suites as debian.sources) and run apt-get update"
    exit 1
  fi
  log "adding deb-src entries for Debian's kubernetes source package"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/twilio-operator-deb-src.sources
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
}

build() {
  if [ -x "$BIN_DIR/kube-apiserver" ] && [ -x "$BIN_DIR/kube-controller-manager" ]; then
    return 0
  fi
  ensure_packages "${APT_PACKAGES[@]}"
  ensure_deb_src
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/twilio-operator-k8s-build.XXXXXX")
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION in $work (about 5 minutes, once)"
  (cd "$work" && apt-get source -qq "kubernetes=$K8S_SOURCE_VERSION" >&2)
  local src
  src=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  # The vendored reflect2 1.0.1 crashes on Go >= 1.18; Debian ships 1.0.2.
  local reflect2="$src/vendor/github.com/modern-go/reflect2"
  rm -f "$reflect2"/*.go "$reflect2"/*.s
  find /usr/share/gocode/src/github.com/modern-go/reflect2/ -maxdepth 1 \( -name '*.go' -o -name '*.s' \) \
    ! -name '*_test.go' -exec cp {} "$reflect2/" \;
  # The generated OpenAPI definitions are not in the tarball.
  (cd "$src" && env -u GOPATH make gen_openapi >&2)
  # Go 1.19 rejects the module/vendor layout; build in GOPATH mode as 1.20's Makefile does.
  local gopath="$work/gopath"
  mkdir -p "$gopath/src/k8s.io"
  ln -s "$src" "$gopath/src/k8s.io/kubernetes"
  local pkg=k8s.io/kubernetes/vendor/k8s.io
  local ldflags="-s -w"
  for versionpkg in "$pkg/component-base/version" "$pkg/client-go/pkg/version"; do
    ldflags+=" -X $versionpkg.gitVersion=$K8S_VERSION -X $versionpkg.gitMajor=1 -X $versionpkg.gitMinor=20"
    ldflags+=" -X $versionpkg.gitTreeState=clean"
  done
  mkdir -p "$work/bin"
  for cmd in kube-apiserver kube-controller-manager; do
    log "go build $cmd"
    (cd "$gopath/src/k8s.io/kubernetes" &&
      GO111MODULE=off GOPATH="$gopath" CGO_ENABLED=0 GOPROXY=off GOFLAGS= \
        go build -ldflags "$ldflags" -o "$work/bin/$cmd" "./cmd/$cmd" >&2)
  done
  mkdir -p "$(dirname "$BIN_DIR")"
  rm -rf "$BIN_DIR.tmp" && mv "$work/bin" "$BIN_DIR.tmp" && mv "$BIN_DIR.tmp" "$BIN_DIR"
  rm -rf "$work"
  log "cached in $BIN_DIR"
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

pki() {
  local dir=$1
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=twilio-operator-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    cat > serving.ext <<EXT
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
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
  ensure_packages etcd-server openssl curl python3
  # kubectl is for the people and tests that use the control plane: any kubectl will do.
  command -v kubectl > /dev/null || ensure_packages kubernetes-client
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  : > "$dir/pids"
  # Whatever was started is stopped again if start-up fails half-way, or when WATCH_PID exits.
  trap 'down "$dir"' ERR
  if [ -n "${WATCH_PID:-}" ]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" down "$3"' \
      watchdog "$WATCH_PID" "$(readlink -f "$0")" "$dir" > /dev/null 2>&1 < /dev/null &
  fi
  pki "$dir"
  local etcd_port etcd_peer_port api_port
  etcd_port=$(free_port); etcd_peer_port=$(free_port); api_port=$(free_port)
  local etcd_url="http://127.0.0.1:$etcd_port"
  setsid etcd --name local --data-dir "$dir/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new \
    > "$dir/etcd.log" 2>&1 < /dev/null &
  echo $! >> "$dir/pids"
  wait_for etcd 30 sh -c "curl -fsS $etcd_url/health | grep -q true"

  start_apiserver "$dir" "$etcd_url" "$api_port"
  local server="https://127.0.0.1:$api_port"
  kubeconfig "$dir/kubeconfig" "$server" "$dir/ca.crt" "$(cat "$dir/admin.token")"
  kubeconfig "$dir/kcm.kubeconfig" "$server" "$dir/ca.crt" "$(cat "$dir/kcm.token")"
  cat > "$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
ETCD_URL=$etcd_url
API_PORT=$api_port
ENV

  for crd in "$@"; do
    curl -fsS --show-error --cacert "$dir/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
      -H 'Content-Type: application/yaml' --data-binary "@$crd" \
      "$server/apis/apiextensions.k8s.io/v1/customresourcedefinitions" > /dev/null
  done

  setsid "$BIN_DIR/kube-controller-manager" --kubeconfig="$dir/kcm.kubeconfig" \
    --port=0 --secure-port=0 --leader-elect=false --controllers='*' \
    --use-service-account-credentials=false --service-account-private-key-file="$dir/sa.key" \
    --root-ca-file="$dir/ca.crt" --cluster-signing-cert-file="$dir/ca.crt" \
    --cluster-signing-key-file="$dir/ca.key" \
    > "$dir/kube-controller-manager.log" 2>&1 < /dev/null &
  echo $! >> "$dir/pids"
  trap - ERR
  log "ready: KUBECONFIG=$dir/kubeconfig"
  echo "$dir/kubeconfig"
}

# Split out so that tests can restart the API server on the same etcd and port.
start_apiserver() {
  local dir=$1 etcd_url=$2 api_port=$3
  setsid "$BIN_DIR/kube-apiserver" --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" --insecure-port=0 \
    --tls-cert-file="$dir/serving.crt" --tls-private-key-file="$dir/serving.key" \
    --client-ca-file="$dir/ca.crt" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-cluster-ip-range=127.0.100.0/24 --endpoint-reconciler-type=none --allow-privileged=true \
    >> "$dir/kube-apiserver.log" 2>&1 < /dev/null &
  echo $! > "$dir/apiserver.pid"
  echo $! >> "$dir/pids"
  wait_for kube-apiserver 60 sh -c \
    "curl -fsS --cacert '$dir/ca.crt' -H 'Authorization: Bearer $(cat "$dir/admin.token")' https://127.0.0.1:$api_port/readyz | grep -q ok"
}

down() {
  local dir=$1
  [ -f "$dir/pids" ] || return 0
  while read -r pid; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done < "$dir/pids"
  : > "$dir/pids"
}

restart_apiserver() {
  local dir=$1 seconds=$2
  # shellcheck disable=SC1091
  . "$dir/env"
  kill -9 "$(cat "$dir/apiserver.pid")" 2>/dev/null || true
  sleep "$seconds"
  start_apiserver "$dir" "$ETCD_URL" "$API_PORT"
}

case "${1:-}" in
  build) build; echo "$BIN_DIR" ;;
  up) [ $# -ge 2 ] || { echo "usage: $0 up DIR [CRD...]" >&2; exit 2; }; shift; up "$@" ;;
  down) [ $# -eq 2 ] || { echo "usage: $0 down DIR" >&2; exit 2; }; down "$2" ;;
  restart-apiserver) [ $# -eq 3 ] || { echo "usage: $0 restart-apiserver DIR SECONDS" >&2; exit 2; }
    restart_apiserver "$2" "$3" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
