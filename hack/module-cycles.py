#!/usr/bin/env python3
"""Import cycles between the files of a Rust crate, which `cargo` does not forbid.

    hack/module-cycles.py [CRATE_SRC_DIR ...]     (default: src crates/api/src)

Reads every .rs file under each directory (lib.rs or main.rs is the crate root, `a.rs` or
`a/mod.rs` is module `a`), finds what each file refers to in its own crate (`use` trees,
including nested braces, and paths written in code: `crate::a::b`, `super::c`, `self::d`, or a
child module's name), maps each path to the file of the deepest module it names, and prints the
file-level dependency graph's cycles (strongly connected components of more than one file). A
module's own tests (`#[cfg(test)] mod ...` blocks) and comments are left out: a test may reach
anywhere. Exits 1 if there is a cycle, so that CI can run it.
"""

import os
import re
import sys


def module_files(root):
    """{module path tuple: file} for the crate whose sources are under root."""
    modules = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            elif len(parts) == 1 and parts[0] in ("lib", "main"):
                parts = []
            modules.setdefault(tuple(parts), path)
    return modules


def strip(text):
    """The code of a file without comments, string literals and #[cfg(test)] modules."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for match in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if match.start() < i:
            continue
        out.append(text[i : match.start()])
        depth, j = 1, match.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def use_paths(tree):
    """The paths of a use tree such as `a::{b, c::{d, e as f}, self}`."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    brace = tree.find("{")
    if brace < 0:
        yield tree.split("::")
        return
    prefix = [p for p in tree[:brace].split("::") if p]
    inner, depth, current, items = tree[brace + 1 : tree.rfind("}")], 0, "", []
    for c in inner:
        if c == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        current += c
    items.append(current)
    for item in filter(None, items):
        for rest in use_paths(item):
            yield prefix + [p for p in rest if p != "self"]


def references(code):
    """Every path the code refers to that may be its own crate's."""
    for match in re.finditer(r"\buse\s+([^;]+);", code):
        for path in use_paths(match.group(1)):
            yield [p for p in path if p]
    for match in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", code):
        yield match.group(1).split("::")


def resolve(path, here, modules):
    """The module a path starts from and names, as a tuple, or None for another crate."""
    if path[0] == "crate":
        base, rest = (), path[1:]
    elif path[0] in ("super", "self"):
        base, rest = here, path
        while rest and rest[0] in ("super", "self"):
            base = base[:-1] if rest[0] == "super" else base
            rest = rest[1:]
    elif here + (path[0],) in modules:
        base, rest = here, path
    elif (path[0],) in modules and here == ():
        base, rest = (), path
    else:
        return None
    target = base
    for part in rest:
        if target + (part,) in modules:
            target = target + (part,)
        else:
            break
    return target


def cycles(root):
    modules = module_files(root)
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            code = strip(f.read())
        edges = set()
        for reference in references(code):
            target = resolve(reference, module, modules)
            # A module's own descendants are its rooms, not a dependency; a reference to the
            # crate root names something the root re-exports from another crate.
            if target is None or target == module or target == ():
                continue
            edges.add(modules[target])
        graph[path] = edges
    return strongly_connected(graph)


def strongly_connected(graph):
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found, graph


def main():
    roots = sys.argv[1:] or ["src", "crates/api/src"]
    failed = False
    for root in roots:
        found, graph = cycles(root)
        edges = sum(len(e) for e in graph.values())
        if not found:
            print(f"{root}: {len(graph)} files, {edges} file-to-file imports, no cycle")
            continue
        failed = True
        for component in found:
            print(f"{root}: import cycle among {len(component)} files:")
            for member in component:
                inside = sorted(e for e in graph[member] if e in component)
                print(f"  {member} -> {', '.join(inside)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
