"""Finding ``tune_*`` fixtures in conftest files and test modules, and evaluating their specs.

Items are made from a cheap plan (``plugin.plan``); a fixture's function is called once, by the
process that tunes it, or at collection only when no plan exists yet. A fixture that raises or
returns the wrong type does not break the run: its plan carries the error, and its items fail with it.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import sysconfig
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from aitune_ci.fixture import Declared, declared, is_tune_fixture
from aitune_ci.spec import TuneSpec

__all__ = [
    "FIXTURE_SEED",
    "FixturePlan",
    "call_fixture",
    "evaluate_plan",
    "filter_checks",
    "find_tune_fixtures",
    "seeded",
    "spec_backends",
]

#: torch, numpy and random are seeded with this before each tune fixture is called, so a fixture
#: that draws random weights or samples builds the same model in every run (and in the PR's base).
FIXTURE_SEED = 0


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and random for the block; put the CPU generators' states back after.

    ``torch.manual_seed`` seeds CUDA too, lazily: it does not initialise CUDA at collection,
    before an xdist worker is pinned to its GPU.
    """
    torch_state, numpy_state, random_state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(random_state)


@dataclass
class FixturePlan:
    """One tune fixture: where it is visible, its checks, and (once called) its spec or why there is none.

    Attributes:
        backends: the checks (backends after ``--aitune-backends``, plus ``mixed``): at collection
            the planned ones, once the fixture is called the spec's own.
        items: the checks its items were made for (the plan's; unchanged by calling the fixture).
        origin: where the plan came from: ``decorator``, ``cache``, ``baseline`` or ``evaluated``.
        origin_path: the file the plan was read from (cache or baseline), for messages.
        evaluated: whether the fixture function has been called.
    """

    name: str
    func: Callable[..., Any]
    source: str  # "path/to/conftest.py" or the test module's path, for messages
    spec: Any = None
    error: str | None = None
    backends: list[str] = field(default_factory=list)
    teardown: Iterator[Any] | None = None
    items: list[str] = field(default_factory=list)
    origin: str = "evaluated"
    origin_path: str | None = None
    evaluated: bool = False

    @property
    def declared(self) -> Declared | None:
        """What ``@ait.tune_fixture(backends=..., modules=...)`` declared, or None."""
        return declared(self.func)

    def finish(self) -> str | None:
        """Run the rest of a yield fixture (its teardown), at most once; the error text if it raised."""
        teardown, self.teardown = self.teardown, None
        if teardown is None:
            return None
        try:
            next(teardown)
        except StopIteration:
            return None
        except Exception as exc:
            return f"{self.name}: teardown raised {type(exc).__name__}: {exc}"
        teardown.close()
        return f"{self.name}: a tune fixture must yield exactly once; it yielded again"

    @property
    def location(self) -> tuple[str, int]:
        try:
            return inspect.getsourcefile(self.func) or self.source, inspect.getsourcelines(self.func)[1] - 1
        except (OSError, TypeError):
            return self.source, 0


def find_tune_fixtures(module: types.ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    """``(fixture_name, function)`` for every ``tune_*`` fixture defined in ``module``, in source order."""
    found = []
    for attr, obj in list(vars(module).items()):
        func = is_tune_fixture(attr, obj)
        if func is not None:
            found.append((getattr(obj, "name", attr), func))
    return found


def parameter_error(name: str, func: Callable[..., Any]) -> str | None:
    """Why ``func`` cannot be called as a tune fixture (it requests other fixtures), or None."""
    params = [p for p in inspect.signature(func).parameters.values() if p.default is inspect.Parameter.empty]
    if not params:
        return None
    return (
        f"{name} requests fixtures ({', '.join(p.name for p in params)}), but `pytest --aitune` calls tune_* "
        "fixtures itself, outside pytest's fixture setup, so no other fixture exists for it. Build what it needs "
        "inside the fixture "
        "(or in a plain helper function) and give it no parameters."
    )


_LIBRARY_PATHS = tuple(
    {
        str(Path(p).resolve())
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(k))
    }
)


def _user_frames(exc: BaseException, keep: int = 3) -> str:
    """Where in the user's code ``exc`` came from: its innermost frames outside the standard library
    and installed packages (the fixture's own frame at least), one line each; a full traceback of
    pytest and aitune-ci's frames would bury them."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # [0] is call_fixture's own
    mine = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_LIBRARY_PATHS)] or frames[:1]
    lines = []
    for frame in mine[-keep:]:
        path = Path(frame.filename)
        with contextlib.suppress(ValueError):
            path = path.resolve().relative_to(Path.cwd().resolve())
        lines.append(f"\n  at {path}:{frame.lineno} in {frame.name}" + (f": {frame.line}" if frame.line else ""))
    return "".join(lines)


def call_fixture(plan: FixturePlan) -> None:
    """Call the fixture function (seeded) once: ``plan.spec`` or ``plan.error`` is set; never raises."""
    if plan.evaluated or plan.error:
        return  # called already, or known broken (e.g. a duplicate name): never called twice
    plan.evaluated = True
    name, func = plan.name, plan.func
    plan.error = parameter_error(name, func)
    if plan.error:
        return
    try:
        with seeded(FIXTURE_SEED):
            value = func()
            if inspect.isgenerator(value):
                plan.teardown = value
                value = next(value)
    except Exception as exc:
        plan.error = f"{name} raised {type(exc).__name__}: {exc}" + _user_frames(exc)
        return
    if not isinstance(value, TuneSpec):
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:120] + "…"
        plan.error = (
            f"{name} returned {type(value).__name__} ({shown}); a tune_* fixture must return ait.TuneSpec(model=..., "
            "samples=[...]). Return the spec instead of the model or the tune result."
        )
        return
    if value.name is None:
        object.__setattr__(value, "name", name)
    plan.spec = value


def spec_backends(
    spec: TuneSpec, declaration: Declared | None, device_backends: Callable[[Any], list[str]]
) -> tuple[list[str], bool]:
    """Every backend ``spec`` tunes (eager first), before any filter, and whether a ``mixed`` check exists.

    A spec with ``backends=None`` tunes what its decorator declared, else every backend available
    on its device.
    """
    if spec.backends is not None:
        names = list(spec.backends)
    elif declaration is not None:
        names = list(declaration.backends)
    else:
        names = device_backends(spec.resolved_device)
    if "eager" not in names:
        names.insert(0, "eager")
    return names, bool(spec.modules)


def filter_checks(backends: list[str], mixed: bool, backend_filter: list[str] | None) -> list[str]:
    """The checks (items) of a fixture: its backends after ``--aitune-backends`` (eager stays), then ``mixed``."""
    names = [b for b in backends if not backend_filter or b in backend_filter or b == "eager"]
    if mixed:
        names.append("mixed")  # the model with each submodule's winner swapped in
    return names


def evaluate_plan(
    name: str,
    func: Callable[..., Any],
    source: str,
    backend_filter: list[str] | None,
    device_backends: Callable[[Any], list[str]],
) -> FixturePlan:
    """Call the fixture function and decide its checks; never raises (errors go into the plan)."""
    plan = FixturePlan(name=name, func=func, source=source)
    call_fixture(plan)
    if plan.spec is not None:
        plan.backends = filter_checks(*spec_backends(plan.spec, plan.declared, device_backends), backend_filter)
        plan.items = list(plan.backends)
    return plan
