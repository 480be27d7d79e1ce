"""Finding ``tune_*`` fixtures in conftest files and test modules, and evaluating their specs.

The plugin calls each tune fixture's function once, at collection, so that it knows which
backends to make items for. A fixture that raises or returns the wrong type does not break
collection: its plan carries the error, and its items fail with it.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from aitune_ci.fixture import is_tune_fixture
from aitune_ci.spec import TuneSpec

__all__ = ["FIXTURE_SEED", "FixturePlan", "evaluate_plan", "find_tune_fixtures", "seeded"]

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
    """One tune fixture: where it is visible, its spec (or why there is none), its backends."""

    name: str
    func: Callable[..., Any]
    source: str  # "path/to/conftest.py" or the test module's path, for messages
    spec: Any = None
    error: str | None = None
    backends: list[str] = field(default_factory=list)
    teardown: Iterator[Any] | None = None

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


def evaluate_plan(
    name: str,
    func: Callable[..., Any],
    source: str,
    backend_filter: list[str] | None,
    device_backends: Callable[[Any], list[str]],
) -> FixturePlan:
    """Call the fixture function and decide its backends; never raises (errors go into the plan)."""
    plan = FixturePlan(name=name, func=func, source=source)
    params = [p for p in inspect.signature(func).parameters.values() if p.default is inspect.Parameter.empty]
    if params:
        plan.error = (
            f"{name} requests fixtures ({', '.join(p.name for p in params)}), but `pytest --aitune` calls tune_* "
            "fixtures once at collection time, before other fixtures exist. Build what it needs inside the fixture "
            "(or in a plain helper function) and give it no parameters."
        )
        return plan
    try:
        with seeded(FIXTURE_SEED):
            value = func()
            if inspect.isgenerator(value):
                plan.teardown = value
                value = next(value)
    except Exception as exc:
        plan.error = f"{name} raised {type(exc).__name__}: {exc}"
        return plan
    if not isinstance(value, TuneSpec):
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:120] + "…"
        plan.error = (
            f"{name} returned {type(value).__name__} ({shown}); a tune_* fixture must return ait.TuneSpec(model=..., "
            "samples=[...]). Return the spec instead of the model or the tune result."
        )
        return plan
    if value.name is None:
        object.__setattr__(value, "name", name)
    plan.spec = value
    names = list(value.backends) if value.backends is not None else device_backends(value.resolved_device)
    if "eager" not in names:
        names.insert(0, "eager")
    if backend_filter:
        names = [b for b in names if b in backend_filter or b == "eager"]
    if value.modules:
        names.append("mixed")  # the model with each submodule's winner swapped in
    plan.backends = names
    return plan
