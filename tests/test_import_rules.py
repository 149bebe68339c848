"""The import rules of docs/ARCHITECTURE.md, checked over the source (static: every import, top-level or inside a function).

- probes/ imports nothing of ours;
- remediations/ imports nothing of agent/ but the event types (agent.core.events);
- nothing of the product (agent/, probes/, remediations/) imports the lab;
- no command (agent/commands/<name>.py) imports another;
- no import circles between our modules.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("agent", "probes", "remediations", "lab", "grafana")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in OURS:
        for dirpath, _, files in os.walk(ROOT / top):
            for f in files:
                if f.endswith(".py"):
                    p = Path(dirpath) / f
                    found[_module_name(p)] = p
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (annotations only: never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that NAME imports; `from P import x` counts as P.x when that is a module of ours."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] not in OURS:
                continue
            while t and t not in MODULES:  # `import agent.core.config.X`-style attributes: the module that has them
                t = t.rpartition(".")[0]
            if t:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _violations(prefix: str, allowed: callable) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in GRAPH.items() if m == prefix or m.startswith(prefix + ".")
                  for t in ts if not allowed(t))


def test_the_graph_is_read():
    """The rules below mean something only if imports are found (guards against a parser that sees nothing)."""
    assert "agent.core.freeze" in GRAPH["agent.pipeline"]
    assert "probes.exchange" in GRAPH["probes.icmp"]
    assert len(GRAPH) > 60


def test_probes_import_nothing_of_ours():
    assert _violations("probes", lambda t: t.split(".")[0] == "probes") == []


def test_remediations_import_only_the_event_types_of_the_agent():
    assert _violations("remediations", lambda t: not t.startswith(("agent", "lab", "grafana"))
                       or t == "agent.core.events") == []


@pytest.mark.parametrize("package", ["agent", "probes", "remediations"])
def test_the_product_never_imports_the_lab(package):
    assert _violations(package, lambda t: t.split(".")[0] != "lab") == []


def test_no_command_imports_another():
    bad = [f"{m} imports {t}" for m, ts in GRAPH.items() if m.startswith("agent.commands.")
           for t in ts if t.startswith("agent.commands.") and t != m]
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    # A package's __init__ that re-exports its own submodules is the usual pattern, not a circle:
    # leave out the edges from a submodule to its own package's __init__.
    graph = {m: {t for t in ts if not (m.startswith(t + "."))} for m, ts in GRAPH.items()}
    assert _cycles(graph) == []
