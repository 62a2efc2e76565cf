#!/usr/bin/env python3
"""Helm v4 without a helm binary, through the helm-sdkpy bindings (Helm's Go library).

    hack/helm.py lint CHART [--set k=v ...] [--values FILE ...]
    hack/helm.py template CHART [--namespace NS] [--release NAME] [--set k=v ...] [--values FILE ...]
                          [--include-crds] [--skip-tests] [--kube-version 1.30.0]
                          [--api-versions GROUP/VERSION/Kind ...]
    hack/helm.py install CHART RELEASE --namespace NS --kubeconfig FILE [--set k=v ...]
                         [--values FILE ...] [--create-namespace] [--wait true|false] [--timeout SECONDS]
    hack/helm.py upgrade RELEASE CHART --namespace NS --kubeconfig FILE [--set k=v ...]
                         [--values FILE ...] [--take-ownership] [--reuse-values] [--reset-values]
                         [--wait true|false] [--timeout SECONDS]
    hack/helm.py uninstall RELEASE --namespace NS --kubeconfig FILE [--wait true|false]

Values follow the helm CLI: --values files are merged in order, then --set (nested keys a.b=c,
lists {a,b}, indexes a[0]=b, typed true/false/null/integers), --set-string (always strings) and
--set-json (a JSON value) are applied in that order.

Needs: pip install --ignore-requires-python helm-sdkpy cffi pyyaml
(the wheel declares Python 3.12 but runs on 3.11).

helm-sdkpy exposes Helm's lint, install, upgrade, uninstall and status actions, but neither
`helm template` nor a client-only dry run, and its lint results carry no message text. So:
  * `template` installs into a throwaway in-process API server that accepts every object and
    stores nothing, with Helm's in-memory release driver, and prints the release manifest and
    then its hooks (each under its `# Source:` line); like `helm template`, it leaves out crds/
    unless --include-crds is given, and test hooks with --skip-tests.
  * `upgrade` takes RELEASE before CHART, as `helm upgrade` does; --take-ownership lets the
    release adopt objects that exist without Helm's ownership labels and annotations (Helm
    3.17 and later), e.g. CRDs an older chart version installed from its crds/ directory.
  * `lint` with --set/--values lints a copy of the chart whose values.yaml holds the merged
    values (Helm's lint action takes no values), and, when lint finds a problem, renders the
    chart to show the error text lint did not pass on.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("hack/helm.py needs PyYAML: pip install pyyaml")

INSTALL_HINT = "pip install --ignore-requires-python helm-sdkpy cffi"

# Helm's lint severities (pkg/chart/v2/lint/support).
SEVERITIES = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
WARNING = 2
# The text of messages that a path and severity identify: Helm's only INFO rule on Chart.yaml.
KNOWN_MESSAGES = {(1, "Chart.yaml"): "icon is recommended"}


def helm_sdkpy():
    try:
        import helm_sdkpy
    except ImportError:
        sys.exit(f"hack/helm.py needs helm-sdkpy: {INSTALL_HINT}")
    return helm_sdkpy


# ---------------------------------------------------------------------------------------------
# Values: --values files, --set, --set-string, --set-json, merged as the helm CLI merges them.


def split_unescaped(text: str, separator: str, keep_braces: bool = False) -> list[str]:
    """Splits on `separator` where it is not escaped with a backslash (and, with keep_braces,
    not inside {...}). Escapes are kept for the next stage."""
    parts, current, depth, i = [], [], 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if keep_braces and char == "{":
            depth += 1
        elif keep_braces and char == "}":
            depth = max(0, depth - 1)
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def typed(text: str) -> Any:
    """Helm's --set typing: true/false, null and integers are typed, everything else a string."""
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null":
        return None
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
        return int(text)
    return text


def parse_value(text: str, as_string: bool) -> Any:
    if text.startswith("{") and text.endswith("}"):
        inner = text[1:-1]
        items = [] if inner == "" else split_unescaped(inner, ",")
        return [unescape(item) if as_string else typed(unescape(item)) for item in items]
    return unescape(text) if as_string else typed(unescape(text))


KEY_PART = re.compile(r"^(?P<name>[^\[]*)(?P<indexes>(\[[0-9]+\])*)$")


def set_path(values: dict, key: str, value: Any) -> None:
    """Sets a.b[0].c = value, creating maps and lists on the way."""
    steps: list[str | int] = []
    for part in split_unescaped(key, "."):
        match = KEY_PART.match(part)
        if not match or (not match.group("name") and not match.group("indexes")):
            raise ValueError(f"invalid key {key!r}")
        if match.group("name"):
            steps.append(unescape(match.group("name")))
        steps.extend(int(index) for index in re.findall(r"\[([0-9]+)\]", match.group("indexes")))
    node: Any = values
    for step, following in zip(steps, steps[1:] + [None]):
        fresh: Any = None if following is None else ([] if isinstance(following, int) else {})
        if isinstance(step, int):
            if not isinstance(node, list):
                raise ValueError(f"{key!r}: [{step}] indexes something that is not a list")
            node.extend([None] * (step + 1 - len(node)))
            if following is None:
                node[step] = value
            elif not isinstance(node[step], (dict, list)):
                node[step] = fresh
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"{key!r}: .{step} names a field of something that is not a map")
            if following is None:
                node[step] = value
            elif not isinstance(node.get(step), (dict, list)):
                node[step] = fresh
            node = node[step]


def apply_set(values: dict, expression: str, kind: str) -> None:
    if kind == "set-json":
        apply_set_json(values, expression)
        return
    for assignment in split_unescaped(expression, ",", keep_braces=True):
        if assignment == "":
            continue
        key, separator, raw = assignment.partition("=")
        if not separator:
            raise ValueError(f"--{kind} {assignment!r}: expected key=value")
        set_path(values, key, parse_value(raw, as_string=(kind == "set-string")))


def apply_set_json(values: dict, expression: str) -> None:
    """key=<JSON>[,key=<JSON>...]: each value is read as one JSON document."""
    decoder, rest = json.JSONDecoder(), expression
    while rest:
        key, separator, rest = rest.partition("=")
        if not separator or not key:
            raise ValueError(f"--set-json {expression!r}: expected key=<JSON>")
        value, end = decoder.raw_decode(rest)
        set_path(values, key, value)
        rest = rest[end:]
        if rest and not rest.startswith(","):
            raise ValueError(f"--set-json {expression!r}: expected ',' after the value of {key!r}")
        rest = rest[1:]


def deep_merge(base: dict, override: dict) -> dict:
    """Maps merge recursively; anything else in `override` replaces what `base` has."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def drop_nulls(values: dict) -> dict:
    """A null removes a default, as in Helm's coalescing."""
    return {k: drop_nulls(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}


def user_values(args: argparse.Namespace) -> dict:
    values: dict = {}
    for path in args.values or []:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: values must be a map")
        values = deep_merge(values, loaded)
    # The helm CLI applies --set, --set-string and --set-json each as a group, in this order.
    for kind, expressions in (("set", args.set), ("set-string", args.set_string), ("set-json", args.set_json)):
        for expression in expressions or []:
            apply_set(values, expression, kind)
    return values


# ---------------------------------------------------------------------------------------------
# A throwaway API server for `template`: discovery for the kinds charts use, every write
# accepted and echoed, every read a 404. Nothing is stored.

CORE = [
    ("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("services", "Service", True),
    ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True), ("events", "Event", True),
    ("persistentvolumeclaims", "PersistentVolumeClaim", True), ("limitranges", "LimitRange", True),
    ("resourcequotas", "ResourceQuota", True), ("namespaces", "Namespace", False),
]
GROUPS: dict[str, list[tuple[str, str, bool]]] = {
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True),
                ("daemonsets", "DaemonSet", True), ("replicasets", "ReplicaSet", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterroles", "ClusterRole", False),
                                     ("clusterrolebindings", "ClusterRoleBinding", False)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
    "policy/v1beta1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "coordination.k8s.io/v1": [("leases", "Lease", True)],
    "events.k8s.io/v1": [("events", "Event", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
    "admissionregistration.k8s.io/v1": [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True), ("podmonitors", "PodMonitor", True),
                                 ("prometheusrules", "PrometheusRule", True)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def discovery(kube_version: tuple[int, int], extra: list[str]) -> dict[str, list[tuple[str, str, bool]]]:
    groups = copy.deepcopy(GROUPS)
    if kube_version >= (1, 21):
        del groups["policy/v1beta1"]  # removed in 1.25; Helm templates should prefer policy/v1
    else:
        del groups["policy/v1"]
    for entry in extra:
        group_version, _, kind = entry.rpartition("/")
        if not group_version or "/" not in group_version:
            raise ValueError(f"--api-versions {entry!r}: expected GROUP/VERSION/Kind")
        resources = groups.setdefault(group_version, [])
        resources.append((kind.lower() + "s", kind, True))
    return groups


def fake_api_server(kube_version: tuple[int, int], extra: list[str]) -> ThreadingHTTPServer:
    groups = discovery(kube_version, extra)

    def resource_list(group_version: str, resources: list[tuple[str, str, bool]]) -> dict:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": [{"name": name, "singularName": kind.lower(), "namespaced": namespaced,
                               "kind": kind, "verbs": VERBS} for name, kind, namespaced in resources]}

    group_list: dict[str, list[str]] = {}
    for group_version in groups:
        group, version = group_version.split("/")
        group_list.setdefault(group, []).append(version)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def not_found(self) -> None:
            self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404, "message": "not found"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0].rstrip("/")
            if path == "/version":
                major, minor = kube_version
                return self.reply(200, {"major": str(major), "minor": str(minor),
                                        "gitVersion": f"v{major}.{minor}.0", "platform": "linux/amd64"})
            if path == "/api":
                return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
            if path == "/api/v1":
                return self.reply(200, resource_list("v1", CORE))
            if path == "/apis":
                return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                    {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                     "preferredVersion": {"groupVersion": f"{group}/{versions[-1]}", "version": versions[-1]}}
                    for group, versions in group_list.items()]})
            match = re.fullmatch(r"/apis/([^/]+/[^/]+)", path)
            if match and match.group(1) in groups:
                return self.reply(200, resource_list(match.group(1), groups[match.group(1)]))
            return self.not_found()

        def echo(self, code: int) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b"{}"
            try:
                obj = json.loads(body)
            except ValueError:  # not JSON (e.g. protobuf): nothing to echo
                obj = {}
            if isinstance(obj, dict):
                obj.setdefault("metadata", {}).setdefault("uid", "00000000-0000-0000-0000-000000000000")
                obj["metadata"].setdefault("resourceVersion", "1")
            self.reply(code, obj)

        def do_POST(self) -> None:  # noqa: N802
            self.echo(201)

        def do_PUT(self) -> None:  # noqa: N802
            self.echo(200)

        def do_PATCH(self) -> None:  # noqa: N802
            self.echo(200)

        def do_DELETE(self) -> None:  # noqa: N802
            self.reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def kubeconfig_for(server: ThreadingHTTPServer, namespace: str) -> str:
    host, port = server.server_address[:2]
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "template",
        "clusters": [{"name": "template", "cluster": {"server": f"http://{host}:{port}"}}],
        "users": [{"name": "template", "user": {}}],
        "contexts": [{"name": "template", "context": {"cluster": "template", "user": "template",
                                                      "namespace": namespace}}],
    })


def parse_kube_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?", text)
    if not match:
        raise ValueError(f"--kube-version {text!r}: expected e.g. 1.30.0")
    return int(match.group(1)), int(match.group(2))


def copy_chart(chart: Path, destination: Path, skip_crds: bool) -> Path:
    target = destination / chart.resolve().name

    def ignore(directory: str, names: list[str]) -> list[str]:
        at_root = Path(directory).resolve() == chart.resolve()
        return ["crds"] if skip_crds and at_root and "crds" in names else []

    shutil.copytree(chart, target, ignore=ignore)
    return target


def render(chart: Path, release: str, namespace: str, values: dict, kube_version: tuple[int, int],
           api_versions: list[str], skip_tests: bool = False) -> str:
    """The chart's manifests and hooks, rendered by Helm's install action against the throwaway
    server (hooks after the manifests, as `helm template` prints them)."""
    helm = helm_sdkpy()
    server = fake_api_server(kube_version, api_versions)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            copied = copy_chart(chart, Path(scratch), skip_crds=True)
            config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig_for(server, namespace))
            result = asyncio.run(helm.Install(config).run(release, str(copied), values=values or None, wait=False))
            manifest = result.get("manifest", "")
            for hook in result.get("hooks") or []:
                if skip_tests and is_test_hook(hook):
                    continue
                body = hook.get("manifest", "").strip("\n")
                manifest = manifest.rstrip("\n") + f"\n---\n# Source: {hook.get('path', '')}\n{body}\n"
            return manifest
    finally:
        server.shutdown()


def is_test_hook(hook: dict) -> bool:
    events = hook.get("events") or []
    if events:
        return "test" in events or "test-success" in events
    document = yaml.safe_load(hook.get("manifest", "")) or {}
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    return "test" in str(annotations.get("helm.sh/hook", "")).split(",")


def crd_sources(chart: Path) -> str:
    documents = []
    for path in sorted((chart / "crds").glob("*.y*ml")):
        text = path.read_text()
        documents.append(f"---\n# Source: {chart.resolve().name}/crds/{path.name}\n{text.rstrip()}\n")
    return "".join(documents)


# ---------------------------------------------------------------------------------------------
# Subcommands


def cmd_lint(args: argparse.Namespace) -> int:
    helm = helm_sdkpy()
    chart = Path(args.chart)
    values = user_values(args)
    print(f"==> Linting {chart}" + (" with the given values" if values else ""))
    with tempfile.TemporaryDirectory() as scratch:
        target = chart
        if values:
            target = copy_chart(chart, Path(scratch), skip_crds=False)
            defaults = yaml.safe_load((target / "values.yaml").read_text()) or {}
            merged = drop_nulls(deep_merge(defaults, values))
            (target / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        config = helm.Configuration(namespace=args.namespace)
        result = asyncio.run(helm.Lint(config).run(str(target)))
    messages = result.get("Messages") or []
    worst = max((m.get("Severity", 0) for m in messages), default=0)
    for message in messages:
        severity, path = message.get("Severity", 0), message.get("Path", "")
        text = message.get("Err")
        if not (isinstance(text, str) and text):
            text = KNOWN_MESSAGES.get((severity, path), "(helm-sdkpy passes no message text)")
        print(f"[{SEVERITIES.get(severity, '?')}] {path}: {text}")
    failed = worst >= WARNING or bool(result.get("Errors"))
    print(f"\n{result.get('TotalChartsLinted', 0)} chart(s) linted, {1 if failed else 0} chart(s) failed")
    if failed:
        # Lint dropped the text; rendering the same chart and values reports the first error.
        try:
            render(chart, "lint", args.namespace, values, parse_kube_version(args.kube_version), [])
        except Exception as error:  # noqa: BLE001 - reporting whatever Helm said
            print(f"\nrendering the chart reports:\n{error}", file=sys.stderr)
        return 1
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    chart = Path(args.chart)
    manifest = render(chart, args.release, args.namespace, user_values(args),
                      parse_kube_version(args.kube_version), args.api_versions or [], args.skip_tests)
    if args.include_crds:
        sys.stdout.write(crd_sources(chart))
    sys.stdout.write(manifest if manifest.endswith("\n") or not manifest else manifest + "\n")
    return 0


def print_release(release: dict) -> None:
    info = release.get("info", {})
    print(f"NAME: {release.get('name')}")
    print(f"LAST DEPLOYED: {info.get('last_deployed')}")
    print(f"NAMESPACE: {release.get('namespace')}")
    print(f"STATUS: {info.get('status')}")
    print(f"REVISION: {release.get('version')}")
    if info.get("description"):
        print(f"DESCRIPTION: {info['description']}")
    if info.get("notes"):
        print(f"\nNOTES:\n{info['notes']}")


def cmd_install(args: argparse.Namespace) -> int:
    helm = helm_sdkpy()
    config = helm.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    installed = asyncio.run(helm.Install(config).run(
        args.release, args.chart, values=user_values(args) or None, create_namespace=args.create_namespace,
        wait=args.wait, timeout=args.timeout))
    status = asyncio.run(helm.Status(config).run(args.release))
    # Status may leave out the notes; the install result has them.
    status.setdefault("info", {}).setdefault("notes", installed.get("info", {}).get("notes"))
    print_release(status)
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    helm = helm_sdkpy()
    config = helm.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    upgraded = asyncio.run(helm.Upgrade(config).run(
        args.release, args.chart, values=user_values(args) or None, wait=args.wait, timeout=args.timeout,
        take_ownership=args.take_ownership, reuse_values=args.reuse_values, reset_values=args.reset_values))
    status = asyncio.run(helm.Status(config).run(args.release))
    status.setdefault("info", {}).setdefault("notes", upgraded.get("info", {}).get("notes"))
    print_release(status)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    helm = helm_sdkpy()
    config = helm.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    result = asyncio.run(helm.Uninstall(config).run(args.release, wait=args.wait, timeout=args.timeout)) or {}
    # Helm's UninstallReleaseResponse: the release, and `info`, a text naming the resources kept
    # by helm.sh/resource-policy: keep (the helm CLI prints it before "uninstalled").
    kept = result.get("info")
    if isinstance(kept, str) and kept.strip():
        print(kept.strip())
    release = result.get("release")
    info = release.get("info", {}) if isinstance(release, dict) else {}
    if isinstance(kept, dict):  # older helm-sdkpy answers: the release's info itself
        info = kept
    description = info.get("description") if isinstance(info, dict) else None
    print(f'release "{args.release}" uninstalled' + (f" ({description})" if description else ""))
    return 0


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hack/helm.py", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)

    def with_values(command: argparse.ArgumentParser) -> None:
        command.add_argument("--values", "-f", action="append", metavar="FILE", help="a values file (repeatable)")
        command.add_argument("--set", action="append", metavar="K=V", help="a.b=c, list={x,y} (repeatable)")
        command.add_argument("--set-string", action="append", metavar="K=V", help="like --set, always strings")
        command.add_argument("--set-json", action="append", metavar="K=JSON", help="a JSON value, e.g. x=[1,2]")

    kubeconfig = os.environ.get("KUBECONFIG")

    lint = commands.add_parser("lint", help="lint a chart; non-zero on any warning or error")
    lint.add_argument("chart")
    lint.add_argument("--namespace", "-n", default="default")
    lint.add_argument("--kube-version", default="1.30.0", help="for rendering the cause of a failure")
    with_values(lint)
    lint.set_defaults(run=cmd_lint)

    template = commands.add_parser("template", help="print the rendered manifests")
    template.add_argument("chart")
    template.add_argument("--namespace", "-n", default="default")
    template.add_argument("--release", default="release-name", help="release name (default: release-name)")
    template.add_argument("--include-crds", action="store_true", help="print the chart's crds/ first")
    template.add_argument("--skip-tests", action="store_true", help="leave out the test hooks")
    template.add_argument("--kube-version", default="1.30.0", help="Kubernetes version of .Capabilities")
    template.add_argument("--api-versions", action="append", metavar="GROUP/VERSION/Kind",
                          help="an extra API the cluster is said to serve (repeatable)")
    with_values(template)
    template.set_defaults(run=cmd_template)

    install = commands.add_parser("install", help="install a release and print its status")
    install.add_argument("chart")
    install.add_argument("release")
    install.add_argument("--namespace", "-n", required=True)
    install.add_argument("--kubeconfig", required=kubeconfig is None, default=kubeconfig)
    install.add_argument("--create-namespace", action="store_true")
    install.add_argument("--wait", type=boolean, default=True, metavar="true|false",
                         help="wait until the resources are ready (default: true)")
    install.add_argument("--timeout", type=int, default=300, metavar="SECONDS")
    with_values(install)
    install.set_defaults(run=cmd_install)

    upgrade = commands.add_parser("upgrade", help="upgrade a release and print its status")
    upgrade.add_argument("release")
    upgrade.add_argument("chart")
    upgrade.add_argument("--namespace", "-n", required=True)
    upgrade.add_argument("--kubeconfig", required=kubeconfig is None, default=kubeconfig)
    upgrade.add_argument("--take-ownership", action="store_true",
                         help="adopt existing objects that lack Helm's ownership metadata")
    upgrade.add_argument("--reuse-values", action="store_true", help="merge the last release's values")
    upgrade.add_argument("--reset-values", action="store_true", help="only the chart's defaults and these")
    upgrade.add_argument("--wait", type=boolean, default=True, metavar="true|false",
                         help="wait until the resources are ready (default: true)")
    upgrade.add_argument("--timeout", type=int, default=300, metavar="SECONDS")
    with_values(upgrade)
    upgrade.set_defaults(run=cmd_upgrade)

    uninstall = commands.add_parser("uninstall", help="uninstall a release")
    uninstall.add_argument("release")
    uninstall.add_argument("--namespace", "-n", required=True)
    uninstall.add_argument("--kubeconfig", required=kubeconfig is None, default=kubeconfig)
    uninstall.add_argument("--wait", type=boolean, default=True, metavar="true|false")
    uninstall.add_argument("--timeout", type=int, default=300, metavar="SECONDS")
    uninstall.set_defaults(run=cmd_uninstall)
    return root


def main() -> int:
    args = parser().parse_args()
    if args.command in ("lint", "template") and os.environ.get("HELM_DRIVER") != "memory":
        # Renders keep their release record in memory instead of writing a Secret. Go reads the
        # environment the process started with, not later changes, hence the re-exec.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})
    try:
        return args.run(args)
    except (ValueError, OSError, yaml.YAMLError, json.JSONDecodeError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - Helm's errors, printed as the helm CLI does
        if type(error).__module__.startswith("helm_sdkpy"):
            print(f"Error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
