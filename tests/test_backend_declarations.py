"""Every backend states its facts once, on its class, and the registry, pyproject and README agree with them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aitune_ci.backends import registry
from aitune_ci.backends.base import PRECISIONS, Payload
from aitune_ci.backends.registry import backend_names, builtin_modules, fingerprint, get_backend
from aitune_ci.environment import BASE_LIBRARIES, compared_fields, software_fields

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aitune_ci" / "backends"
#: A backend's libraries that no extra brings, because torch itself depends on them.
TORCH_BRINGS = {"triton"}
#: A distribution's name as pip normalises it (PEP 503): what ``importlib.metadata.version`` is asked.
PIP_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _extras() -> dict[str, set[str]]:
    """``{extra: {distribution, ...}}`` from pyproject.toml's optional dependencies."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = data["project"]["optional-dependencies"]
    return {
        name: {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in reqs} for name, reqs in extras.items()
    }


def _readme_rows() -> dict[str, list[str]]:
    """``{backend: [precision, payload, devices, extra]}`` from the table in README's Backends section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Backends\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([^`]+)` \|(.*)\|", line.strip())
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def _builtin(name: str) -> bool:
    return type(get_backend(name)).__module__.startswith("aitune_ci.backends.")


BUILTIN_NAMES = [name for name in backend_names() if _builtin(name)]


def test_every_module_of_the_package_but_helpers_is_a_backend_module_and_registers_one():
    modules = builtin_modules()
    on_disk = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "base", "registry"}
    assert set(modules) == {m for m in on_disk if not m.startswith("_")}
    registered_from = {type(get_backend(name)).__module__.rsplit(".", 1)[1] for name in BUILTIN_NAMES}
    assert registered_from == set(modules), "a module of aitune_ci/backends registers no backend: prefix it with _"


def test_registration_order_puts_the_reference_first_and_is_stable():
    assert backend_names()[0] == "eager"
    assert builtin_modules()[:2] == ("eager", "inductor")


def test_importing_one_backend_module_first_does_not_reorder_the_backends():
    """``first-wins`` without a backend list tries them in this order, so it must not depend on who imported what."""
    code = (
        "import aitune_ci.backends.aoti\nfrom aitune_ci.backends.registry import backend_names\nprint(backend_names())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip().splitlines()[-1] == str(backend_names())


@pytest.mark.parametrize("name", backend_names())
def test_a_backend_declares_precision_payload_libraries_and_an_existing_extra(name):
    backend = get_backend(name)
    extras = _extras()
    assert backend.precision in PRECISIONS
    assert isinstance(backend.payload, Payload)
    assert backend.device_types and backend.device_types <= {"cpu", "cuda"}
    assert isinstance(backend.libraries, tuple)
    for library in backend.libraries:
        assert PIP_NAME.fullmatch(library), f"{name}: library {library!r} is not a normalised pip name"
    if not _builtin(name):
        return  # a third-party backend's extra belongs to its own package
    if backend.extra is not None:
        assert backend.extra in extras, f"{name}: extra {backend.extra!r} is not in pyproject.toml"
        assert extras[backend.extra] & set(backend.libraries), (
            f"{name}: extra {backend.extra!r} brings none of its libraries"
        )
    brought = set().union(*extras.values()) | TORCH_BRINGS
    assert set(backend.libraries) <= brought, f"{name}: no extra installs {set(backend.libraries) - brought}"


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_the_readme_table_lists_the_backend_with_its_declarations(name):
    rows = _readme_rows()
    assert name in rows, f"README.md's Backends table has no row for {name!r}"
    precision, payload, devices, extra = rows[name]
    backend = get_backend(name)
    assert (precision, payload) == (backend.precision, backend.payload.value)
    assert extra.split()[0] == (backend.extra or "–")
    listed = set(re.findall(r"\b(cpu|cuda)\b", devices))
    assert listed and listed <= backend.device_types, (
        f"{name}: README lists {devices!r}, it runs on {backend.device_types}"
    )


def test_the_readme_table_names_no_backend_that_is_not_registered():
    assert set(_readme_rows()) <= set(backend_names())


def test_a_readme_without_a_row_fails_the_check(monkeypatch):
    """The README check can fail: a backend missing from the table is reported."""
    monkeypatch.setattr(registry, "_registry", {**registry._registry, "brand-new": registry._registry["eager"]})
    assert "brand-new" in backend_names() and "brand-new" not in _readme_rows()
    with pytest.raises(AssertionError, match="no row for 'brand-new'"):
        test_the_readme_table_lists_the_backend_with_its_declarations("brand-new")


def test_the_environment_records_and_compares_every_backends_libraries():
    env = fingerprint("cpu")
    declared = {lib for name in backend_names() for lib in get_backend(name).libraries}
    assert declared <= set(env)
    assert declared <= set(compared_fields(env))
    assert declared | set(BASE_LIBRARIES) <= set(software_fields(env))
    assert not set(BASE_LIBRARIES) & set(compared_fields(env))


def test_only_backends_shown_to_time_alike_built_or_loaded_let_a_relative_base_load_where_the_head_built():
    # aoti: a loaded package over the fresh one read 1.0002 on the H200 (reports/h200/aoti_fresh_vs_loaded.md).
    # inductor stays like with like: a cache-loaded build once timed ~7% slower than a fresh one.
    from aitune_ci.check import _loads_as_built
    from aitune_ci.result import BackendResult
    from aitune_ci.status import BackendStatus

    declaring = {name for name in registry.backend_names() if registry.get_backend(name).loads_as_built}
    assert declaring == {"aoti"}

    rows = [
        BackendResult(backend=name, status=BackendStatus.OK, module=module)
        for name, module in [("aoti", ""), ("inductor", ""), ("aoti", "head"), ("onnxruntime", ""), ("no-such", "")]
    ]
    assert _loads_as_built(rows) == {("", "aoti"), ("head", "aoti")}
