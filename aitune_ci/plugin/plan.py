"""Which items a tune fixture gets, known without calling it (so collection builds no model).

A plan is a prediction of a fixture's checks, taken from the first of:

1. its decorator: ``@ait.tune_fixture(backends=[...], modules=[...])`` (the user's own word);
2. the plan cached by an earlier run, if the file defining the fixture is unchanged since
   (``<aitune-dir>/plans/<fixture>.json``, exact: written from the spec the fixture returned);
3. the committed baseline's backends on this machine's hardware (what CI has on a fresh checkout);
4. none: the fixture is called at collection, once, and its plan cached for the next run.

The cache comes before the baseline because it is exact for the current source, while a baseline
holds every backend ever measured (a removed backend stays), in sorted order, and lacks backends
filtered out when it was written. It lives in the aitune dir but ignores itself (its own
``.gitignore``, as ``.pytest_cache`` does): it is derived from code and machine, so committing it
would only add churn and merge conflicts; the baseline already is the committed plan for CI.

A prediction can be wrong (a helper module changed the backends; the baseline is stale). When the
fixture is finally called, :class:`Drift` says how its spec differs from the items made, and no
check is lost: an item whose backend is gone is skipped with the reason, a backend without an item
is still tuned and judged under the fixture's ``[selection]`` item, and the cache is refreshed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aitune_ci.atomic import atomic_write_text
from aitune_ci.check import CheckOutcome, Outcome
from aitune_ci.fixture import Declared
from aitune_ci.hints import did_you_mean
from aitune_ci.plugin.discovery import FixturePlan, call_fixture, filter_checks, spec_backends

__all__ = [
    "PLAN_SCHEMA_VERSION",
    "Drift",
    "Plan",
    "PlanCache",
    "Planner",
    "evaluate_lazily",
    "plan_from_baseline",
    "plan_from_declaration",
]

PLAN_SCHEMA_VERSION = 1

#: The baseline format the baseline source reads (a newer one is left to the check to report).
_BASELINE_SCHEMA_VERSION = 1

MIXED = "mixed"

#: What a plan's origin is called in messages.
_ORIGIN_TEXT = {
    "decorator": "the @ait.tune_fixture(backends=...) declaration",
    "cache": "the plan cached by an earlier run",
    "baseline": "the committed baseline",
    "evaluated": "the fixture called at collection",
}


@dataclass(frozen=True)
class Plan:
    """A fixture's predicted backends (eager first, before ``--aitune-backends``) and whether ``mixed`` exists."""

    backends: tuple[str, ...]
    mixed: bool
    origin: str
    path: str | None = None

    def checks(self, backend_filter: list[str] | None) -> list[str]:
        return filter_checks(list(self.backends), self.mixed, backend_filter)


# -- sources (pure) ------------------------------------------------------------------------------
def plan_from_declaration(name: str, declaration: Declared, known: set[str]) -> Plan | str:
    """The plan the decorator declares, or the error text when it names an unknown backend."""
    for backend in declaration.backends:
        if backend not in known:
            return (
                f"{name}: @ait.tune_fixture(backends=...) names unknown backend {backend!r}"
                f"{did_you_mean(backend, known)}. Run `aitune-ci backends` to list them."
            )
    backends = list(declaration.backends)
    if "eager" not in backends:
        backends.insert(0, "eager")
    return Plan(tuple(backends), declaration.mixed, "decorator")


def plan_from_baseline(data: Any, path: str) -> Plan | None:
    """The backends a baseline file recorded (eager first, then sorted), or None when it cannot say.

    Keys are ``backend`` for the whole model, ``module/backend`` for a submodule, and ``mixed``.
    A corrupt or unknown file gives None: the check reports it, with its fix, when it runs.
    """
    if not isinstance(data, Mapping) or data.get("schema_version") != _BASELINE_SCHEMA_VERSION:
        return None
    entries = data.get("backends")
    if not isinstance(entries, Mapping) or not entries or not all(isinstance(k, str) for k in entries):
        return None
    whole = sorted(k for k in entries if "/" not in k and k not in ("eager", MIXED))
    mixed = MIXED in entries or any("/" in k for k in entries)
    return Plan(("eager", *whole), mixed, "baseline", path)


def _entry(fixture: str, backends: list[str], mixed: bool, source: Mapping[str, str], machine: str | None) -> str:
    data = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "fixture": fixture,
        "backends": backends,
        "mixed": mixed,
        "source": dict(source),
        "machine": machine,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class PlanCache:
    """``<aitune-dir>/plans/<fixture>.json``: the checks a fixture's spec had, for the file it was defined in.

    An entry is valid while the defining file's sha256 is unchanged and, for a spec that lets the
    machine decide its backends (``backends=None``), on the same machine.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, fixture: str) -> Path:
        return self.root / f"{fixture}.json"

    def read(self, fixture: str, sha256: str, machine: Callable[[], str]) -> Plan | None | str:
        """The cached plan, None when there is none valid, or a note when the file is corrupt (it is rewritten)."""
        path = self.path(fixture)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return f"ignoring the unreadable plan cache {path} ({exc}); it is rewritten after this run"
        if not isinstance(data, dict) or data.get("schema_version") != PLAN_SCHEMA_VERSION:
            version = data.get("schema_version") if isinstance(data, dict) else None
            return (
                f"ignoring the plan cache {path} (schema_version {version!r} unknown); it is rewritten after this run"
            )
        backends, mixed, source = data.get("backends"), data.get("mixed"), data.get("source")
        if (
            data.get("fixture") != fixture
            or not isinstance(backends, list)
            or not all(isinstance(b, str) for b in backends)
            or not isinstance(mixed, bool)
            or not isinstance(source, dict)
        ):
            return f"ignoring the malformed plan cache {path}; it is rewritten after this run"
        if source.get("sha256") != sha256:
            return None  # the fixture's file changed since: its backends may have too
        wanted = data.get("machine")
        if wanted is not None and wanted != machine():
            return None
        return Plan(tuple(backends), mixed, "cache", str(path))

    def write(
        self, fixture: str, backends: list[str], mixed: bool, source: Mapping[str, str], machine: str | None
    ) -> None:
        """Write the entry atomically (unless identical); the folder keeps itself out of git."""
        path = self.path(fixture)
        text = _entry(fixture, backends, mixed, source, machine)
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        ignore = self.root / ".gitignore"
        if not ignore.is_file():
            atomic_write_text(ignore, "# written by aitune-ci: collection plans are a local cache\n*\n")
        atomic_write_text(path, text)


# -- this machine ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _cpu_key() -> str:
    from aitune_ci.environment import hardware_key  # lazy: environment imports torch; only a baseline plan needs it

    return hardware_key("cpu")


@lru_cache(maxsize=1)
def _gpu_key() -> str | None:
    """The first visible GPU's hardware key (initialises CUDA: asked only when a GPU baseline exists)."""
    import torch

    try:
        if not torch.cuda.is_available():
            return None
        from aitune_ci.environment import hardware_key  # lazy: environment imports torch; only a baseline plan needs it

        return hardware_key("cuda")
    except Exception:  # a broken driver: no GPU baseline can be this machine's
        return None


@lru_cache(maxsize=1)
def _machine() -> str:
    """What decides the backends of a spec with ``backends=None``: device kind, torch, and the CPU."""
    import torch

    return f"{_cpu_key()} cuda={torch.cuda.is_available()} torch={torch.__version__}"


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class Planner:
    """Finds each fixture's plan at collection and refreshes the cache once the fixture is called.

    Args:
        directory: the aitune dir (``.aitune``): baselines are read from it, plans cached in it.
        root: the repository root, for the paths shown in messages.
        progress: where a note goes (a corrupt cache file, an unwritable cache).
    """

    def __init__(self, directory: Path, root: Path, progress: Callable[[str], None] | None = None) -> None:
        self.cache = PlanCache(directory / "plans")
        self.baselines = directory / "baselines"
        self.root = root
        self.progress = progress or (lambda _m: None)
        self._hashes: dict[str, str | None] = {}
        self._known: set[str] | None = None
        self._cache_failed = False

    def source(self, func: Callable[..., Any]) -> dict[str, str] | None:
        """The defining file of ``func`` and its sha256 (memoised per run), or None when unknown."""
        try:
            file = inspect.getsourcefile(func)
        except TypeError:
            file = None
        if not file:
            return None
        if file not in self._hashes:
            self._hashes[file] = _sha256(file)
        digest = self._hashes[file]
        if digest is None:
            return None
        try:
            shown = str(Path(file).resolve().relative_to(self.root.resolve()))
        except ValueError:
            shown = file
        return {"file": shown, "sha256": digest}

    def plan(self, name: str, func: Callable[..., Any], declaration: Declared | None) -> Plan | str | None:
        """The fixture's plan from the cheapest source that has one; an error text; or None (call it)."""
        if declaration is not None:
            if self._known is None:
                from aitune_ci.backends.registry import backend_names  # lazy: imports every backend module and torch

                self._known = set(backend_names())
            return plan_from_declaration(name, declaration, self._known)
        source = self.source(func)
        if source is not None:
            cached = self.cache.read(name, source["sha256"], _machine)
            if isinstance(cached, Plan):
                return cached
            if isinstance(cached, str):
                self.progress(cached)
        return self._from_baseline(name)

    def _from_baseline(self, name: str) -> Plan | None:
        """The committed baseline's plan, when exactly one of this machine's hardware keys has one.

        The baseline's key depends on the spec's device, unknown until the fixture is called: the
        CPU's key always counts, the GPU's only when CUDA is available. Baselines under both that
        disagree are ambiguous: no plan (the fixture is called once and its plan cached).
        """
        if not self.baselines.is_dir():
            return None
        files = sorted(self.baselines.glob(f"*/{name}.json"))
        if not files:
            return None
        keys = {_cpu_key()}
        if any(f.parent.name not in keys for f in files):
            gpu = _gpu_key()
            if gpu is not None:
                keys.add(gpu)
        plans = set()
        for file in files:
            if file.parent.name not in keys:
                continue
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None  # the check reports a corrupt baseline with its fix; plan from the call
            found = plan_from_baseline(data, self._shown(file))
            if found is None:
                return None
            plans.add(found)
        if len({(p.backends, p.mixed) for p in plans}) != 1:
            return None
        return next(iter(plans))

    def _shown(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def remember(self, plan: FixturePlan, backends: list[str], mixed: bool) -> None:
        """Cache what the called fixture's spec declared (unfiltered), keyed on its file's sha256."""
        if plan.declared is not None:
            return  # the decorator is the plan; nothing to cache
        source = self.source(plan.func)
        if source is None:
            return
        auto = plan.spec is not None and plan.spec.backends is None
        try:
            self.cache.write(plan.name, backends, mixed, source, _machine() if auto else None)
        except OSError as exc:
            if not self._cache_failed:
                self._cache_failed = True
                self.progress(
                    f"cannot write the plan cache in {self.cache.root} ({exc}); fixtures are called at collection"
                )


# -- the spec against its plan --------------------------------------------------------------------
@dataclass(frozen=True)
class Drift:
    """How the checks of a called fixture differ from the items its plan made.

    Attributes:
        removed: items whose backend the spec no longer tunes.
        added: backends the spec tunes that have no item (checked under ``[selection]``).
    """

    fixture: str
    origin: str
    origin_path: str | None
    planned: tuple[str, ...]
    actual: tuple[str, ...]

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(c for c in self.planned if c not in self.actual)

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(c for c in self.actual if c not in self.planned)

    @property
    def declared(self) -> bool:
        """The plan is the user's declaration: a mismatch is a mistake to fix, not a stale cache."""
        return self.origin == "decorator"

    def _source(self) -> str:
        text = _ORIGIN_TEXT.get(self.origin, self.origin)
        return f"{text} ({self.origin_path})" if self.origin_path else text

    def _fix(self) -> str:
        if self.declared:
            return (
                f"Make @ait.tune_fixture(backends=..., modules=...) of {self.fixture} list what its spec tunes: "
                f"{', '.join(self.actual)}."
            )
        return "The plan is refreshed: the next run makes the items the spec has."

    def removed_outcome(self, check: str) -> CheckOutcome:
        """The answer of item ``fixture[check]`` whose backend the spec no longer tunes."""
        text = (
            f"{self.fixture}[{check}]: this item was made from {self._source()}, but the spec of {self.fixture} "
            f"no longer tunes {check} (it tunes {', '.join(self.actual)}). {self._fix()}"
        )
        return CheckOutcome(Outcome.FAILED if self.declared else Outcome.SKIPPED, text)

    def notice(self, checked: bool) -> str:
        """One line for the terminal when the fixture is called and its spec disagrees with the plan."""
        parts = []
        if self.added:
            where = (
                "checked under its [selection] item" if checked else "not checked: its [selection] item was deselected"
            )
            parts.append(f"tunes {', '.join(self.added)}, which had no item ({where})")
        if self.removed:
            parts.append(
                f"no longer tunes {', '.join(self.removed)}, whose item is {'failed' if self.declared else 'skipped'}"
            )
        return f"{self.fixture}: its spec {' and '.join(parts)}; the items came from {self._source()}. {self._fix()}"

    def selection_outcome(self, base: CheckOutcome, added: Mapping[str, CheckOutcome]) -> CheckOutcome:
        """``[selection]``'s answer, carrying the checks of backends that had no item of their own.

        It fails when one of them fails (a regression is never lost to a stale plan) and, for a
        declared plan, in any case: the declaration must be fixed.
        """
        if not added:
            return base
        lines = [
            f"    {self.fixture}[{backend}] (no item: not in the plan): {outcome.outcome.value.upper()} {outcome.message}"
            for backend, outcome in added.items()
        ]
        failed = (
            self.declared or base.outcome is Outcome.FAILED or any(o.outcome is Outcome.FAILED for o in added.values())
        )
        text = "\n".join([base.message, *lines, f"    the items came from {self._source()}. {self._fix()}"])
        return CheckOutcome(Outcome.FAILED if failed else base.outcome, text, base.verdict)


def evaluate_lazily(
    plan: FixturePlan,
    planner: Planner,
    backend_filter: list[str] | None,
    device_backends: Callable[[Any], list[str]],
) -> Drift | None:
    """Call the fixture now (the first of its items runs); refresh its cached plan; the drift from its items.

    After this, ``plan.backends`` holds the spec's own checks, which the tune uses.
    """
    if plan.evaluated or plan.error:
        return None
    call_fixture(plan)
    if plan.spec is None:
        return None
    backends, mixed = spec_backends(plan.spec, plan.declared, device_backends)
    planner.remember(plan, backends, mixed)
    plan.backends = filter_checks(backends, mixed, backend_filter)
    if set(plan.backends) == set(plan.items):
        return None
    return Drift(plan.name, plan.origin, plan.origin_path, tuple(plan.items), tuple(plan.backends))
