"""Layers point one way and packages import each other without cycles (ARCHITECTURE.md), checked on the
source with ``ast``: every ``import``/``from ... import`` of an edgekit module, including the ones inside
functions (a function-level import hides a cycle from Python, not from this test)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest layer first. A module may import modules of its own layer or of a lower one, never a higher one.
# Entries are module prefixes; a module belongs to its longest matching entry. Most entries are whole
# packages; a few modules sit in a different layer than their package and are listed on their own:
#   - profiling's measurement (latency, artifacts, estimate, robustness) sits below compile: compile units
#     go "through the same ... profiler and estimator" (issue 13), i.e. compile calls the profiler;
#   - profiling.bench/remote (`edgekit bench`) merge results into a bundle and re-render its reports,
#     so they sit above bundle/reports, with the other commands built on bundles;
#   - split spans layers: the SplitModel and its head/tail/transfer helpers are built by a stage;
#     split.bundle reads a split bundle, split.client/server/profile run one (its report section is reports.split).
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["edgekit._version", "edgekit.errors", "edgekit.spec", "edgekit.registry", "edgekit.resources",
                    "edgekit.ui", "edgekit.target", "edgekit.locks", "edgekit.vocab"]),
    ("models", ["edgekit.models"]),
    # runtime is a leaf (stdlib + numpy, shipped to devices as is), so it sits below data: the host's
    # image-folder decoding uses runtime.preprocess, the very function the device runner uses (issue 16).
    ("runtime", ["edgekit.runtime"]),
    ("data", ["edgekit.data", "edgekit.calibration"]),
    ("training", ["edgekit.training"]),
    ("stages", ["edgekit.stages", "edgekit.pruning", "edgekit.split", "edgekit.split.model",
                "edgekit.split.transfer", "edgekit.recipe"]),
    # quant_debug measures an INT8 file against its FP32 sibling per layer through the runtime; a backend's
    # mixed-precision search ranks layers with it, so it sits with the backends.
    ("backends", ["edgekit.backends", "edgekit.quant_debug"]),
    ("measure", ["edgekit.profiling"]),
    ("compile", ["edgekit.compilation", "edgekit.mixed_precision", "edgekit.decisions", "edgekit.decision_records"]),
    ("bundle/reports", ["edgekit.bundle", "edgekit.manifest", "edgekit.reports", "edgekit.gates", "edgekit.verdicts",
                        "edgekit.split.bundle"]),
    ("commands", ["edgekit.pipeline", "edgekit.quant_debug.bundle", "edgekit.search", "edgekit.profiling.bench", "edgekit.profiling.remote",
                  "edgekit.split.profile", "edgekit.split.client", "edgekit.split.server", "edgekit.split.netns"]),
    # The public API over every command; the package facade (``edgekit/__init__.py``) re-exports it.
    ("api", ["edgekit", "edgekit.api"]),
    ("cli", ["edgekit.cli", "edgekit.__main__"]),
]

# Edges allowed against the table above, each with its reason: none (keep it that way).
ALLOWED_UNTIL_MERGE: set[tuple[str, str]] = set()

UNIT_OF = {prefix: layer for layer, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported edgekit module, line) for every import statement anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from edgekit.x import y`` imports the module edgekit.x.y when there is one
            names = [f"{target}.{alias.name}" for alias in node.names]
            found += [(name if name in modules else target, node.lineno) for name in names]
    return [(name, line) for name, line in found if name == "edgekit" or name.startswith("edgekit.")]


def _unit(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in UNIT_OF:
            return prefix
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def _edges() -> dict[tuple[str, str], list[str]]:
    """(unit, imported unit) -> where, for imports between different units."""
    modules = _modules()
    edges: dict[tuple[str, str], list[str]] = {}
    for module, path in modules.items():
        for imported, line in _imports(module, path, modules):
            a, b = _unit(module), _unit(imported)
            if a != b:
                edges.setdefault((a, b), []).append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return edges


def test_every_module_has_a_layer():
    for module in _modules():
        _unit(module)


def test_only_the_package_facade_falls_back_to_the_api_layer():
    """``edgekit`` (the facade) sits on top, so a module missing from LAYERS would silently land there too."""
    assert [m for m in _modules() if _unit(m) == "edgekit"] == ["edgekit"]


def test_the_walker_sees_function_level_imports():
    """The checker itself: an import inside a function counts (the cycles this test exists for were hidden
    exactly that way)."""
    source = ROOT / "edgekit" / "recipe.py"
    assert any(name == "edgekit.stages" for name, _ in _imports("edgekit.recipe", source, _modules()))


def test_layers_point_one_way():
    upward = []
    for (a, b), where in sorted(_edges().items()):
        if UNIT_OF[b] > UNIT_OF[a] and (a, b) not in ALLOWED_UNTIL_MERGE:
            upward.append(f"{a} ({LAYERS[UNIT_OF[a]][0]}) -> {b} ({LAYERS[UNIT_OF[b]][0]}): {where[0]}")
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def test_allowed_until_merge_lists_only_live_edges():
    """Each allowed edge still exists (so the set shrinks as the other branch lands, and is not a blanket)."""
    edges = _edges()
    assert all(edge in edges for edge in ALLOWED_UNTIL_MERGE), [e for e in ALLOWED_UNTIL_MERGE if e not in edges]


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for (a, b) in _edges():
        if (a, b) not in ALLOWED_UNTIL_MERGE:
            graph.setdefault(a, set()).add(b)
    done, stack = set(), []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
