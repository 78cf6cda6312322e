"""Fail on an import cycle between the modules of the Rust core (issue 19).

Each ``.rs`` file under ``src/`` is one module (``lib.rs`` is the crate root,
``x/mod.rs`` is ``x``). Module A depends on module B when A's code, outside
its ``#[cfg(test)]`` items, names B: a ``use crate::…`` or ``use super::…``
tree, a ``crate::…`` path in an expression or type, or a ``mod b;``
declaration of a child. A path names the longest module it starts with, so
``crate::discovery::state::Book`` is a dependency on ``discovery::state``.
Nothing depends on the crate root: it only declares and wires.

Prints each cycle (a strongly connected group of modules) with the line that
makes each of its edges, and exits 1 if there is one.

Usage: ``python3 scripts/modcycles.py [--src DIR] [--max-lines N]``
(``--max-lines`` also fails on a file longer than N lines).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = "crate"
"""The crate root's module name; never a dependency."""

_BLANKED = re.compile(
    r"""
      /\*.*?\*/                     # block comment (not nested: none in src/)
    | //[^\n]*                      # line comment
    | r(\#*)".*?"\1                 # raw string
    | b?"(?:\\.|[^"\\])*"           # string
    | b?'(?:\\.|[^'\\])'            # char (a lifetime has no closing quote)
    """,
    re.S | re.X,
)
"""What cannot hold a dependency but can hold braces or paths."""

_ANCHOR = r"(?:crate|self|super)(?:::super)*"
_USE = re.compile(rf"\buse\s+({_ANCHOR})::([^;]+);")
_PATH = re.compile(rf"\b({_ANCHOR})((?:::\w+)+)")
_CHILD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
_TEST_ITEM = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")


@dataclass(frozen=True)
class Edge:
    """One dependency and the first line of code that makes it."""

    target: str
    line: int


def module_name(path: Path, src: Path) -> str:
    """The module a source file defines, as a path below the crate root."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts == ["lib"] or parts == ["main"]:
        return ROOT
    if parts[-1] == "mod":
        parts.pop()
    return "::".join(parts)


def blank(text: str) -> str:
    """`text` with comments and literals replaced by spaces, lines kept."""
    return _BLANKED.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def drop_test_items(text: str) -> str:
    """`text` without its ``#[cfg(test)] mod … { … }`` blocks (tests may
    reach anywhere); their lines are kept blank so line numbers hold."""
    while match := _TEST_ITEM.search(text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        start, end = match.start(), end + 1
        text = text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]
    return text


def expand(tree: str) -> list[str]:
    """The paths a use tree names: ``a::{b, c::{d as e}}`` is ``a::b``,
    ``a::c::d``."""
    tree = " ".join(tree.split())
    brace = tree.find("{")
    if brace < 0:
        return [re.split(r"\s+as\s+", tree)[0].strip()]
    head = tree[:brace].rstrip(":").strip()
    body = tree[brace + 1 : tree.rindex("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(body + ","):
        if ch in "{}":
            depth += 1 if ch == "{" else -1
        elif ch == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
    paths = []
    for item in items:
        for path in expand(item) if item.strip() else []:
            if path == "self":
                paths.append(head)
            else:
                paths.append(f"{head}::{path}" if head else path)
    return paths


def dependencies(module: str, text: str, modules: set[str]) -> dict[str, Edge]:
    """The modules `module` depends on, each with its first line."""

    def within(base: str, path: str) -> str:
        return path if base == ROOT else f"{base}::{path}"

    def anchored(anchor: str) -> str:
        """The module ``crate``, ``self`` or ``super::super`` stands for."""
        base = module
        for word in anchor.split("::"):
            if word == "crate":
                base = ROOT
            elif word == "super":
                base = base.rpartition("::")[0] if "::" in base else ROOT
        return base

    named: list[tuple[str, int]] = []
    for match in _USE.finditer(text):
        base = anchored(match.group(1))
        line = text.count("\n", 0, match.start()) + 1
        named += [(within(base, p), line) for p in expand(match.group(2))]
    for match in _PATH.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        named.append((within(anchored(match.group(1)), match.group(2)[2:]), line))
    for match in _CHILD.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        named.append((within(module, match.group(1)), line))

    found: dict[str, Edge] = {}
    for path, line in named:
        parts = path.split("::")
        target = next(
            (
                "::".join(parts[:n])
                for n in range(len(parts), 0, -1)
                if "::".join(parts[:n]) in modules
            ),
            None,
        )
        if target in (None, ROOT, module):
            continue
        if target not in found or line < found[target].line:
            found[target] = Edge(target, line)
    return found


def cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's
    algorithm, iterative so a deep chain cannot overflow the stack)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in order:
            continue
        work = [(root, iter(sorted(graph[root])))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--src", type=Path, default=Path("src"))
    parser.add_argument("--max-lines", type=int, default=0)
    args = parser.parse_args()

    files = {module_name(p, args.src): p for p in sorted(args.src.rglob("*.rs"))}
    modules = set(files)
    graph = {
        module: dependencies(module, drop_test_items(blank(path.read_text())), modules)
        for module, path in files.items()
    }
    found = cycles(graph)
    for group in found:
        print(f"cycle: {' <-> '.join(group)}")
        for module in group:
            for target in sorted(set(graph[module]) & set(group)):
                edge = graph[module][target]
                print(f"  {module} -> {target}  ({files[module]}:{edge.line})")
    lines = {m: len(p.read_text().splitlines()) for m, p in files.items()}
    too_long = sorted(
        (m for m in files if args.max_lines and lines[m] > args.max_lines),
        key=lambda m: -lines[m],
    )
    for module in too_long:
        print(f"too long: {files[module]} {lines[module]} lines (> {args.max_lines})")
    edges = sum(len(e) for e in graph.values())
    largest = max(files, key=lambda m: lines[m])
    print(
        f"{len(files)} modules, {edges} dependencies, {len(found)} cycles; "
        f"largest {files[largest]} ({lines[largest]} lines)"
    )
    return 1 if found or too_long else 0


if __name__ == "__main__":
    sys.exit(main())
