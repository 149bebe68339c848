"""The import rules of docs/ARCHITECTURE.md, checked over the source (static: every import, top-level or inside a function).

- every module of ours is in a room of the rooms table, and imports only what its room's "may import"
  column allows (ROOMS below, which must be the table in docs/ARCHITECTURE.md, row for row);
- probes/ imports nothing of ours;
- remediations/ imports nothing of agent/ but the event types (agent.core.events), the container engine
  package (agent.engines) and the leaf modules agent.tls (the one TLS type) and agent.secretfile (the one
  secret-file reader), which import nothing of ours;
- nothing of the product (agent/, probes/, remediations/) imports the lab;
- no command (agent/commands/<name>.py) imports another;
- no import circles between our modules, counting the imports made for type hints only
  (`if TYPE_CHECKING:`) and the package `__init__` every import of a submodule runs.
"""
from __future__ import annotations

import ast
import os
import re
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


def _runtime_nodes(tree: ast.AST, type_only: bool = False):
    """Every node but those under `if TYPE_CHECKING:` (annotations only: never imported at run time);
    with TYPE_ONLY, those too."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_only:
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, type_only: bool = False) -> set[str]:
    """Our modules that NAME imports; `from P import x` counts as P.x when that is a module of ours.

    type_only: also the imports under `if TYPE_CHECKING:`.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree, type_only):
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
# with the type-only imports, and the package __init__s an import runs (importing a.b.c runs a and a.b)
FULL_GRAPH = {name: {p for t in _imports(name, path, type_only=True)
                     for p in [t, *(t.rsplit(".", k)[0] for k in range(1, t.count(".") + 1))]
                     if p in MODULES and not (name == p or name.startswith(p + "."))}
              for name, path in MODULES.items()}

# ---- the rooms table: room -> what it may import (a room or a module: itself and what is under it) ----------
# The product is agent, probes and remediations. A module's room is the longest room that is it or holds it.
PRODUCT = ("agent", "probes", "remediations")
ROOMS: dict[str, tuple[str, ...]] = {
    "probes": (),
    "agent.core": ("probes", "remediations", "agent.checks", "agent.atomic", "agent.storage.points",
                   "agent.storage.defaults", "agent.forensics", "agent.tls", "agent.secretfile", "agent.timeparse"),
    "agent.checks": ("probes", "agent.engines"),
    "agent.bus": (),
    "agent.audit": (),
    "agent.prober": ("probes", "agent.core"),
    "agent.pipeline": ("probes", "agent.core", "agent.atomic", "agent.bus", "agent.listeners", "agent.prober"),
    "agent.listeners": ("agent.audit", "agent.core", "agent.storage", "agent.forensics", "agent.atomic", "agent.redact",
                        "remediations.model", "remediations.httpserver", "agent.tls", "agent.secretfile"),
    "agent.wiring": PRODUCT,
    "agent.schedule": (),
    "agent.storage": ("agent.atomic", "agent.storage.points", "agent.tls", "agent.secretfile"),
    "agent.storage.points": (),
    "agent.forensics": ("probes", "agent.atomic", "agent.redact", "agent.core.events", "agent.engines"),
    "agent.report": ("probes", "agent.core", "agent.storage"),
    "agent.status": ("probes", "agent.storage", "agent.timeparse", "agent.listeners.status"),
    "agent.live": ("agent.status", "agent.timeparse", "probes", "agent.core.events"),
    "agent.timeparse": (),
    "agent.maintenance": ("agent.core", "agent.atomic"),
    "agent.discovery": ("agent.core", "agent.engines"),
    "agent.engines": ("remediations.model",),
    "agent.auditor": ("agent.audit", "agent.atomic", "agent.checks"),
    "agent.resolve": ("agent.core",),
    "agent.atomic": (),
    "agent.tls": (),
    "agent.secretfile": (),
    "agent.redact": (),
    "agent.netns": (),
    "agent.ops": ("remediations", "agent.core", "agent.storage", "agent.redact", "agent.tls", "agent.secretfile",
                  "agent.engines"),
    "agent.commands": PRODUCT,
    "agent.cli": ("agent.commands", "agent.ops", "agent.netns", "agent.version"),
    "agent.version": (),
    "agent": ("agent.cli",),   # the package itself and __main__ (`python -m agent`)
    "remediations": ("agent.core.events", "agent.tls", "agent.secretfile", "agent.engines"),
    "grafana": ("probes",),
    "lab": (*PRODUCT, "lab"),
}


def _under(module: str, entry: str) -> bool:
    return module == entry or module.startswith(entry + ".")


def room_of(module: str) -> str | None:
    """The room a module lives in (the longest room that is it or holds it), None when it has no row."""
    rooms = [r for r in ROOMS if _under(module, r)]
    return max(rooms, key=len) if rooms else None


def _violations(prefix: str, allowed: callable) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in GRAPH.items() if m == prefix or m.startswith(prefix + ".")
                  for t in ts if not allowed(t))


def test_the_graph_is_read():
    """The rules below mean something only if imports are found (guards against a parser that sees nothing)."""
    assert "agent.core.freeze" in GRAPH["agent.pipeline"]
    assert "probes.exchange" in GRAPH["probes.icmp"]
    assert len(GRAPH) > 60


def test_every_module_has_a_room():
    assert sorted(m for m in MODULES if room_of(m) is None) == []


def test_every_import_is_allowed_by_the_may_import_column():
    bad = sorted(f"{m} imports {t} ({room_of(m)} may import: {', '.join(ROOMS[room_of(m)]) or 'nothing of ours'})"
                 for m, ts in GRAPH.items() for t in ts
                 if room_of(m) != room_of(t) and not any(_under(t, e) for e in ROOMS[room_of(m)]))
    assert bad == []


def test_the_column_check_sees_a_forbidden_import():
    """room_of and the column check mean something: an import up from the core is caught."""
    m, t = "agent.core.freeze", "agent.pipeline"
    assert room_of(m) == "agent.core" and room_of(t) == "agent.pipeline"
    assert not any(_under(t, e) for e in ROOMS[room_of(m)])
    assert room_of("agent.storage.points") == "agent.storage.points" and room_of("agent.storage.store") == "agent.storage"


def _doc_rooms() -> dict[str, tuple[str, ...]]:
    """The rooms table of docs/ARCHITECTURE.md: the first cell's path -> the backticked paths of "may import"."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[str, ...]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        path = re.findall(r"`([^`]+)`", cells[0])
        assert len(path) == 1, f"one path per row: {line}"
        # the backticked paths outside parentheses (those say why)
        allowed = tuple(_dotted(x) for x in re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        out[_dotted(path[0])] = allowed
    return out


def _dotted(path: str) -> str:
    return path.rstrip("/").removesuffix(".py").replace("/", ".")


def test_the_table_here_is_the_table_of_the_architecture_doc():
    doc = {room: allowed for room, allowed in _doc_rooms().items()
           if any(_under(m, room) for m in MODULES)}   # rooms of code (not tests/, prometheus/)
    assert set(doc) == set(ROOMS)
    assert {room: sorted(allowed) for room, allowed in doc.items()} == \
        {room: sorted(ROOMS[room]) for room in doc}


def test_probes_import_nothing_of_ours():
    assert _violations("probes", lambda t: t.split(".")[0] == "probes") == []


def test_remediations_import_only_the_event_types_of_the_agent():
    # agent.tls and agent.secretfile import nothing of ours (checked below): every room may use them
    # agent.engines (the container engine: client, decoders, traits) is the engines' room, shared with checks,
    # forensics and discovery
    assert _violations("remediations", lambda t: not t.startswith(("agent", "lab", "grafana"))
                       or t in ("agent.core.events", "agent.tls", "agent.secretfile")
                       or t == "agent.engines" or t.startswith("agent.engines.")) == []


@pytest.mark.parametrize("module", ["agent.tls", "agent.secretfile"])
def test_the_shared_leaf_modules_import_nothing_of_ours(module):
    assert GRAPH[module] == set()


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
    # leave out the edges from a submodule to its own package's __init__ (FULL_GRAPH has none).
    assert _cycles(FULL_GRAPH) == []


def test_the_full_graph_counts_type_only_imports_and_package_inits():
    assert "probes.exchange" in FULL_GRAPH["probes.types"]   # under `if TYPE_CHECKING:`
    assert "probes.exchange" not in GRAPH["probes.types"]
    # importing agent.storage.points runs agent/storage/__init__ (the config's runtime check, agent/core/config/)
    assert "agent.storage" in FULL_GRAPH["agent.core.config.runtime"]
