#!/usr/bin/env bash
# OCI images without Docker or a registry: a root filesystem put together here, written as an
# OCI image layout in one tar, which `ctr -n k8s.io images import` (containerd) and `skopeo copy
# oci-archive:...` accept. Each command prints the tar's path.
#
#   hack/image.sh operator [--binary PATH] [--name NAME] [--output TAR]
#       The operator image, FROM scratch: the binary as /twilio-operator, the shared libraries it
#       loads (from ldd), the CA bundle, user 65532:65532, entrypoint /twilio-operator, cmd run,
#       port 8080 and the Dockerfile's labels. Without --binary it runs
#       `cargo build --release -p twilio-operator`. NAME defaults to twilio-operator:dev.
#   hack/image.sh busybox NAME [--output TAR] [--entrypoint JSON] [--cmd JSON] [--user USER]
#                              [--env K=V]... [SRC[:DEST]]...
#       Debian's static BusyBox as /bin/busybox with a link per applet in /bin (sh, wget, sleep,
#       ...), /tmp, and the given files (DEST defaults to /<name of SRC>; modes are kept).
#       The command defaults to ["/bin/sh"].
#   hack/image.sh pause NAME [--output TAR]
#       The Pod sandbox ("pause") image: static BusyBox sleeping for ever.
#
# TAR defaults to target/images/<NAME with / and : as ->.tar. NAME is stored as containerd and
# the kubelet spell it (twilio-operator:dev is docker.io/library/twilio-operator:dev), so a Pod
# with `image: twilio-operator:dev` and `imagePullPolicy: Never` finds it.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo "image: $*" >&2; }
fail() { log "$*"; exit 1; }

# Runs the command named on the command line, with a scratch directory removed on exit.
main() {
  [ $# -ge 1 ] || usage
  local command=$1; shift
  work=$(mktemp -d "${TMPDIR:-/tmp}/twilio-operator-image.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  case "$command" in
    operator) operator_image "$@" ;;
    busybox) busybox_image "$@" ;;
    pause) pause_image "$@" ;;
    *) usage ;;
  esac
}

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

default_output() {
  echo "$root/target/images/$(echo "$1" | tr '/:@' '---').tar"
}

# Writes rootfs $1 as image $2 to tar $3 with the image config fields in JSON $4 (Entrypoint,
# Cmd, User, Env, ExposedPorts, Labels...). The tar is reproducible: fixed times and owners
# (root, or what $5 says for paths under it: "PATH=UID:GID,...").
write_image() {
  local rootfs=$1 name=$2 output=$3 config=$4 owners=${5:-}
  mkdir -p "$(dirname "$output")"
  python3 - "$rootfs" "$name" "$output" "$config" "$owners" <<'PY'
import gzip, hashlib, io, json, os, platform, sys, tarfile

rootfs, name, output, config_json, owners_spec = sys.argv[1:6]
owners = {}
for item in filter(None, owners_spec.split(",")):
    path, ids = item.split("=")
    uid, gid = ids.split(":")
    owners[path.strip("/")] = (int(uid), int(gid))

def normalized(reference):
    """As containerd and the kubelet name an image: docker.io/library/NAME:latest."""
    first, _, rest = reference.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        reference = "docker.io/" + (reference if rest else "library/" + reference)
    last = reference.rsplit("/", 1)[1]
    if ":" not in last and "@" not in last:
        reference += ":latest"
    return reference

# The layer: every file of rootfs, sorted, owned by root unless `owners` says otherwise.
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
    paths = []
    for directory, dirs, files in os.walk(rootfs):
        for entry in dirs + files:
            paths.append(os.path.relpath(os.path.join(directory, entry), rootfs))
    for path in sorted(paths):
        info = tar.gettarinfo(os.path.join(rootfs, path), arcname=path)
        info.uid, info.gid = owners.get(path, (0, 0))
        info.uname = info.gname = ""
        info.mtime = 0
        if info.isfile():
            with open(os.path.join(rootfs, path), "rb") as data:
                tar.addfile(info, data)
        else:
            tar.addfile(info)
layer_tar = layer.getvalue()
layer_gz = gzip.compress(layer_tar, compresslevel=6, mtime=0)

def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
epoch = "1970-01-01T00:00:00Z"
config = json.dumps({
    "created": epoch, "architecture": arch, "os": "linux",
    "config": json.loads(config_json),
    "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
    "history": [{"created": epoch, "created_by": "hack/image.sh"}],
}, sort_keys=True).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer_gz),
                "size": len(layer_gz)}],
}, sort_keys=True).encode()
full_name = normalized(name)
index = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {"io.containerd.image.name": full_name,
                        "org.opencontainers.image.ref.name": full_name.rsplit(":", 1)[1]},
    }],
}, sort_keys=True).encode()

with tarfile.open(output + ".tmp", mode="w", format=tarfile.PAX_FORMAT) as out:
    def add(path, data):
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        out.addfile(info, io.BytesIO(data))
    blobs = tarfile.TarInfo("blobs")
    blobs.type, blobs.mode = tarfile.DIRTYPE, 0o755
    out.addfile(blobs)
    sha = tarfile.TarInfo("blobs/sha256")
    sha.type, sha.mode = tarfile.DIRTYPE, 0o755
    out.addfile(sha)
    for blob in (layer_gz, config, manifest):
        add("blobs/sha256/" + digest(blob).split(":")[1], blob)
    add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add("index.json", index)
os.replace(output + ".tmp", output)
print(f"image: {full_name}: {len(layer_tar) / 2**20:.1f} MiB unpacked, {len(layer_gz) / 2**20:.1f} MiB compressed, "
      f"digest {digest(manifest)}", file=sys.stderr)
PY
  echo "$output"
}

operator_image() {
  local binary="" name="twilio-operator:dev" output=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --binary) binary=$2; shift 2 ;;
      --name) name=$2; shift 2 ;;
      --output) output=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  output=${output:-$(default_output "$name")}
  if [ -z "$binary" ]; then
    log "cargo build --release -p twilio-operator"
    (cd "$root" && cargo build --release --locked -p twilio-operator --bin twilio-operator >&2)
    binary="${CARGO_TARGET_DIR:-$root/target}/release/twilio-operator"
  fi
  [ -x "$binary" ] || fail "$binary is not an executable"
  local rootfs="$work/rootfs"
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$binary" "$rootfs/twilio-operator"
  # The dynamic loader and the libraries the binary loads (glibc, libgcc_s), at the paths ldd
  # reports, as files: distroless/cc puts them at the same paths.
  local lib
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  [ -f /etc/ssl/certs/ca-certificates.crt ] ||
    fail "/etc/ssl/certs/ca-certificates.crt is missing: apt-get install ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  # The user the image runs as has a name, as in distroless (nonroot, 65532).
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf" \
    "$rootfs/etc/ssl/certs/ca-certificates.crt"
  local config
  config=$(cat <<'JSON'
{
  "User": "65532:65532",
  "Entrypoint": ["/twilio-operator"],
  "Cmd": ["run"],
  "ExposedPorts": {"8080/tcp": {}},
  "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
  "WorkingDir": "/",
  "Labels": {
    "org.opencontainers.image.title": "twilio-operator",
    "org.opencontainers.image.description": "Twilio API keys as Kubernetes resources",
    "org.opencontainers.image.licenses": "Apache-2.0"
  }
}
JSON
  )
  write_image "$rootfs" "$name" "$output" "$config"
}

# A root filesystem with static BusyBox and its applets in /bin, in $1.
busybox_rootfs() {
  local rootfs=$1 busybox=/bin/busybox
  if ! [ -x "$busybox" ] || ldd "$busybox" > /dev/null 2>&1; then
    fail "$busybox is missing or not static: apt-get install busybox-static"
  fi
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$busybox" "$rootfs/bin/busybox"
  local applet
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$rootfs/etc/group"
}

busybox_image() {
  [ $# -ge 1 ] || usage
  local name=$1; shift
  local output="" entrypoint="null" cmd='["/bin/sh"]' user="" envs=() files=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --output) output=$2; shift 2 ;;
      --entrypoint) entrypoint=$2; shift 2 ;;
      --cmd) cmd=$2; shift 2 ;;
      --user) user=$2; shift 2 ;;
      --env) envs+=("$2"); shift 2 ;;
      -*) usage ;;
      *) files+=("$1"); shift ;;
    esac
  done
  output=${output:-$(default_output "$name")}
  local rootfs="$work/rootfs"
  busybox_rootfs "$rootfs"
  local file src dest
  for file in "${files[@]}"; do
    src=${file%%:*}
    dest=${file#*:}
    [ "$dest" != "$file" ] || dest="/$(basename "$src")"
    [ -f "$src" ] || fail "$src is not a file"
    mkdir -p "$rootfs$(dirname "$dest")"
    cp -p "$src" "$rootfs$dest"
  done
  local config
  config=$(python3 -c '
import json, sys
entrypoint, cmd, user, *env = sys.argv[1:]
config = {"Entrypoint": json.loads(entrypoint), "Cmd": json.loads(cmd),
          "Env": ["PATH=/bin"] + env, "WorkingDir": "/"}
if user:
    config["User"] = user
print(json.dumps({k: v for k, v in config.items() if v is not None}))
' "$entrypoint" "$cmd" "$user" "${envs[@]}")
  write_image "$rootfs" "$name" "$output" "$config"
}

pause_image() {
  [ $# -ge 1 ] || usage
  local name=$1; shift
  local output=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --output) output=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  output=${output:-$(default_output "$name")}
  local rootfs="$work/rootfs"
  mkdir -p "$rootfs/bin"
  busybox_rootfs "$work/busybox"
  install -m 0755 "$work/busybox/bin/busybox" "$rootfs/bin/busybox"
  # The sandbox only holds the Pod's namespaces; containerd stops it with SIGKILL.
  write_image "$rootfs" "$name" "$output" '{"Entrypoint": ["/bin/busybox", "sleep", "2147483647"], "User": "65535:65535"}'
}

main "$@"
