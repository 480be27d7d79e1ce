"""The package's import layers, enforced: an AST scan of every import in ``aitune_ci/``.

Layers, top to bottom (README "How the code is laid out"): a module may import its own layer or
any layer below it, never one above; nothing imports ``plugin`` or ``cli``; the module graph has
no circle; an in-package import inside a function is allowed only where a ``# lazy:`` comment
says why (it keeps torch or an optional library off a path that must stay cheap); and the pure
core never imports torch, checked in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aitune_ci"

#: Top to bottom. A module belongs to the first layer one of whose prefixes matches its dotted
#: name (below ``aitune_ci.``); the most specific prefix wins.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("plugin", "cli"),
    ("check", "options"),
    ("github",),
    ("report", "compare"),
    (
        "engine",
        "jit",
        "store.artifact",
        "store.build_cache",
        "store.build_inputs",
        "store.result_cache",
        "store.runs",
        "verdict",
    ),
    ("spec", "examples"),
    ("backends",),
    (
        "measure",
        "accuracy",
        "strategies",
        "modules",
        "sanity",
        "task_metrics",
        "peak_memory",
        "compile_warmup",
        "isa_probe",
    ),
    (
        "samples",
        "digests",
        "stats",
        "tolerance",
        "config",
        "task_metric_gates",
        "caught_warnings",
        "setup_logs",
        "result",
        "status",
        "environment",
        "cpu_load",
        "gpus",
        "gpu_health",
        "dynamic",
        "fixture",
        "atomic",
        "formatting",
        "frame_stack",
        "gc_pause",
        "hints",
        "store.baseline",
        "store.history",
        "store",
        "version",
    ),
    ("errors",),
)

#: Modules that must import without torch (nor anything that pulls it in).
PURE_CORE = (
    "aitune_ci.verdict",
    "aitune_ci.report",
    "aitune_ci.report.view",
    "aitune_ci.report.markdown",
    "aitune_ci.report.terminal",
    "aitune_ci.report.pytest_benchmark",
    "aitune_ci.store.baseline",
    "aitune_ci.store.history",
    "aitune_ci.store.runs",
    "aitune_ci.result",
    "aitune_ci.config",
    "aitune_ci.status",
    "aitune_ci.stats",
    "aitune_ci.github",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    """The layer index of ``module`` (0 = top); its most specific matching prefix decides."""
    short = module.removeprefix("aitune_ci").removeprefix(".")
    if not short:
        return 0  # the package's lazy __init__ re-exports the public API: it sits on top
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if short == prefix or short.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[1]


class _Import:
    def __init__(self, source: str, target: str, line: int, in_function: bool, lazy_comment: bool) -> None:
        self.source, self.target, self.line = source, target, line
        self.in_function, self.lazy_comment = in_function, lazy_comment

    def __repr__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known_module(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``from a.b import c``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _says_lazy(lines: list[str], first: int, last: int) -> bool:
    """A ``# lazy:`` comment on the import, or above it in the block of imports and comments it starts."""
    if any("# lazy:" in line for line in lines[first - 1 : last]):
        return True
    row = first - 2
    while row >= 0 and lines[row].strip().startswith(("#", "import ", "from ")):
        if "# lazy:" in lines[row]:
            return True
        row -= 1
    return False


def _imports_of(path: Path, modules: set[str]) -> list[_Import]:
    module = _module_name(path)
    source_lines = path.read_text(encoding="utf-8").splitlines()
    found: list[_Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never executed
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                else:
                    base = _resolve(module, path.name == "__init__.py", child)
                    names = [f"{base}.{a.name}" for a in child.names]
                lazy = _says_lazy(source_lines, child.lineno, child.end_lineno or child.lineno)
                for name in names:
                    target = _known_module(name, modules)
                    if target is not None and target != module:
                        found.append(_Import(module, target, child.lineno, in_function, lazy))
                continue
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse("\n".join(source_lines)), False)
    return found


def _scan() -> tuple[set[str], list[_Import]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return modules, [i for path in files for i in _imports_of(path, modules)]


MODULES, PACKAGE_IMPORTS = _scan()


def test_every_module_has_a_layer() -> None:
    for module in sorted(MODULES):
        if module != "aitune_ci":
            _layer(module)


def test_no_import_runs_back_up_a_layer() -> None:
    upward = [
        f"{i!r} (layer {_layer(i.source)} imports layer {_layer(i.target)})"
        for i in PACKAGE_IMPORTS
        if i.source != "aitune_ci" and _layer(i.target) < _layer(i.source)
    ]
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def test_nothing_imports_plugin_or_cli() -> None:
    bad = [
        repr(i)
        for i in PACKAGE_IMPORTS
        for top in ("aitune_ci.plugin", "aitune_ci.cli")
        if (i.target == top or i.target.startswith(top + "."))
        and not (i.source == top or i.source.startswith(top + "."))
    ]
    assert not bad, "only the plugin and the CLI themselves may import them:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_no_import_circles() -> None:
    edges: dict[str, set[str]] = {}
    for i in PACKAGE_IMPORTS:
        if i.source == "aitune_ci":
            continue  # the lazy top-level __init__ re-exports; its imports run on attribute access
        # A package's __init__ importing its own submodule is how packages work, not a circle.
        if i.target.startswith(i.source + "."):
            continue
        edges.setdefault(i.source, set()).add(i.target)
    assert not _cycles(edges)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_in_function_imports_say_why_they_are_lazy() -> None:
    hidden = [repr(i) for i in PACKAGE_IMPORTS if i.in_function and not i.lazy_comment and i.source != "aitune_ci"]
    assert not hidden, (
        "imports inside functions hide the real graph; move them to the top, or add a `# lazy: <why>` "
        "comment where they keep torch or an optional library off a cheap path:\n" + "\n".join(hidden)
    )


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_imports_no_torch(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_torch_probe_sees_torch_when_it_is_imported() -> None:
    code = "import sys, aitune_ci.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True"
