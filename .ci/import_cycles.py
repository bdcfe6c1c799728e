#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a circle.

For each crate under crates/, every `crate::`, `super::` and child-module path in a file's
non-test code is an edge from its module to the longest module prefix the path names
(`crate::steps::validate::Rejects` -> `steps::validate`). Edges to the crate root are left
out: `lib.rs` declares every module, and `crate::Result` names a re-export. Comments are
skipped, so a doc link is not an import. A circle is reported with the modules in it.

Text, not a Rust parser: a path built by a macro is not seen. It is meant to catch the
circles that creep in when a helper lives wherever it was first needed.
"""
import os
import re
import sys


def modules(src):
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            with open(path, encoding="utf-8") as file:
                found["::".join(parts)] = file.read()
    return found


def code_of(text):
    test = text.find("#[cfg(test)]")
    if test >= 0:
        text = text[:test]
    text = re.sub(r"//[^\n]*", "", text)

    def expand(match):
        return " ".join(
            f"{match.group(1)}::{item.strip()}"
            for item in match.group(2).split(",")
            if item.strip()
        )

    return re.sub(r"\b(crate|super)::\{([^}]*)\}", expand, text)


def edges(mods):
    graph = {name: set() for name in mods}
    for name, text in mods.items():
        code = code_of(text)
        here = name.split("::") if name else []
        for kind, path in re.findall(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", code):
            segments = path.strip(":").split("::")
            full = segments if kind == "crate" else here[:-1] + segments
            target = next(
                ("::".join(full[:i]) for i in range(len(full), 0, -1) if "::".join(full[:i]) in mods),
                "::".join(here[:-1]) if kind == "super" else None,
            )
            if target and target != name:
                graph[name].add(target)
        for child in re.findall(r"^(?:pub )?use ([a-z_][a-z0-9_]*)::", code, re.M):
            target = "::".join(here + [child])
            if target in mods:
                graph[name].add(target)
    return graph


def circles(graph):
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "crates"
    failed = False
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if not os.path.isdir(src):
            continue
        graph = edges(modules(src))
        graph = {name: {t for t in targets if t} for name, targets in graph.items() if name}
        for circle in circles(graph):
            failed = True
            print(f"{crate}: modules import each other: {', '.join(circle)}")
    if failed:
        sys.exit(1)
    print("no import circles")


if __name__ == "__main__":
    main()
