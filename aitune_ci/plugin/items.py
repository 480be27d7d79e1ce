"""The test items ``pytest --aitune`` generates: ``tune_x[<backend>]`` and ``tune_x[selection]``."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aitune_ci.check import SELECTION, Outcome
from aitune_ci.engine import default_backend_names
from aitune_ci.plugin.discovery import (
    FixturePlan,
    call_fixture,
    filter_checks,
    find_tune_fixtures,
    parameter_error,
    spec_backends,
)
from aitune_ci.plugin.plan import Planner
from aitune_ci.plugin.stash import session_key

if TYPE_CHECKING:  # pragma: no cover
    from aitune_ci.options import Shard
    from aitune_ci.plugin.session import AituneSession

__all__ = [
    "AituneItem",
    "AituneCheckFailed",
    "generate_items",
    "apply_shard",
    "fixture_of",
    "fixture_scheduler",
    "plan_fixture",
]


# ``conftest.py::tune_x[eager]`` (xdist may append ``@group``); fixture names are unique in a run.
_ITEM_ID = re.compile(r"::(tune_\w+)\[[^\[\]]+\](@[^\]]*)?$")


class AituneCheckFailed(Exception):
    """An aitune check failed; its message is the whole explanation (no traceback is shown)."""


class AituneItem(pytest.Item):
    """One check of one tune fixture; the fixture is tuned once, on its first item."""

    def __init__(self, *, fixture: str, check: str, location_hint: tuple[str, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixture = fixture
        self.check = check
        self._location_hint = location_hint
        self.add_marker(pytest.mark.aitune)
        # Groups a fixture's items under pytest-xdist's own loadgroup too (see fixture_scheduler). Only
        # where xdist is loaded: it registers the mark, and without it an unknown mark warns on every
        # run and is an error under --strict-markers.
        if self.config.pluginmanager.hasplugin("xdist"):
            self.add_marker(pytest.mark.xdist_group(name=f"aitune-{fixture}"))

    def runtest(self) -> None:
        outcome = self.config.stash[session_key].check(self.fixture, self.check)
        self.user_properties.append(("aitune", outcome.message))
        if outcome.outcome is Outcome.FAILED:
            raise AituneCheckFailed(outcome.message)
        if outcome.outcome is Outcome.SKIPPED:
            pytest.skip(outcome.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, AituneCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        return self._location_hint[0], self._location_hint[1], self.name


class ConftestFile(pytest.File):
    """Parent node for items from a conftest's tune fixtures, so their ids read ``conftest.py::tune_x[...]``.

    It is never collected itself (conftest files hold no tests); it only names the items.
    """

    def collect(self) -> list[pytest.Item]:
        return []


def _parent_for(session: pytest.Session, collectors: dict[str, pytest.Collector], conftest: Path) -> pytest.Collector:
    directory = collectors.get(str(conftest.parent))
    if directory is None:  # a directory pytest did not collect (no test files below it)
        directory = session
    return ConftestFile.from_parent(directory, path=conftest)


def _conftest_modules(session: pytest.Session) -> list[types.ModuleType]:
    plugins = session.config.pluginmanager.get_plugins()
    mods = [
        p
        for p in plugins
        if isinstance(p, types.ModuleType) and Path(getattr(p, "__file__", "") or "").name == "conftest.py"
    ]
    return sorted(mods, key=lambda m: m.__file__ or "")


def generate_items(
    session: pytest.Session, state: AituneSession, collectors: dict[str, pytest.Collector]
) -> list[AituneItem]:
    """Items for every tune fixture in conftest files and collected test modules, from each one's plan."""
    sources: list[tuple[pytest.Collector, types.ModuleType, Path]] = []
    for mod in _conftest_modules(session):
        path = Path(mod.__file__ or "")
        sources.append((_parent_for(session, collectors, path), mod, path))
    for key, node in sorted(collectors.items()):
        if isinstance(node, pytest.Module) and not Path(key).name == "conftest.py":
            try:
                module = node.obj
            except Exception:
                continue  # its own collection error is already reported by pytest
            sources.append((node, module, Path(key)))

    items: list[AituneItem] = []
    seen: dict[str, FixturePlan] = {}
    for parent, module, path in sources:
        for name, func in find_tune_fixtures(module):
            rel = _relative(path, session.config.rootpath)
            if name in seen:
                first = seen[name]
                if func is not first.func:  # not merely the same fixture imported into another module
                    first.error = (
                        f"{name} is defined twice, in {first.source} and in {rel}: its baseline is the file "
                        f"{name}.json, so tune fixture names must be unique. Rename one of them."
                    )
                continue
            plan = plan_fixture(name, func, rel, state.planner, state.options.backends)
            seen[name] = plan
            state.add_plan(plan)
            checks = plan.backends if plan.error is None else []
            location = plan.location
            for check in [*checks, SELECTION]:
                items.append(
                    AituneItem.from_parent(
                        parent, name=f"{name}[{check}]", fixture=name, check=check, location_hint=location
                    )
                )
    return items


def plan_fixture(name: str, func: Any, source: str, planner: Planner, backend_filter: list[str] | None) -> FixturePlan:
    """The fixture's checks from its plan, without calling it; called now only when no plan exists yet."""
    plan = FixturePlan(name=name, func=func, source=source)
    plan.error = parameter_error(name, func)
    if plan.error:
        return plan
    found = planner.plan(name, func, plan.declared)
    if isinstance(found, str):
        plan.error = found
    elif found is not None:
        plan.backends, plan.origin, plan.origin_path = found.checks(backend_filter), found.origin, found.path
    else:  # the first run: call it once here, and cache its plan for the next runs
        call_fixture(plan)
        if plan.spec is not None:
            backends, mixed = spec_backends(plan.spec, plan.declared, default_backend_names)
            planner.remember(plan, backends, mixed)
            plan.backends = filter_checks(backends, mixed, backend_filter)
    plan.items = list(plan.backends)
    return plan


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def apply_shard(items: list[pytest.Item], shard: Shard) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Keep aitune items whose fixture falls in this shard; other tests are untouched.

    Fixtures (not items) are dealt round-robin in name order, so a fixture is tuned on exactly one
    shard, shards differ by at most one fixture, and every item runs exactly once across shards.
    """
    fixtures = sorted({item.fixture for item in items if isinstance(item, AituneItem)})
    mine = {f for i, f in enumerate(fixtures) if i % shard.count == shard.index - 1}
    kept, dropped = [], []
    for item in items:
        if isinstance(item, AituneItem) and item.fixture not in mine:
            dropped.append(item)
        else:
            kept.append(item)
    return kept, dropped


def fixture_of(nodeid: str) -> str | None:
    """The tune fixture of an aitune item's node id, or None for any other test."""
    match = _ITEM_ID.search(nodeid)
    return match.group(1) if match else None


def fixture_scheduler(config: pytest.Config, log: Any) -> Any:
    """An xdist scheduler that sends all items of one tune fixture to one worker.

    Items of a fixture share one tune, so split across workers the fixture would be tuned (and its
    baseline written) once per worker. Other tests are scheduled one by one, as ``--dist load``
    does, and ``xdist_group`` suffixes are honoured as ``--dist loadgroup`` does. (xdist's own
    loadgroup cannot be relied on: it renames items through a private attribute that pytest 9.2
    no longer reads.)
    """
    from xdist.scheduler import LoadScopeScheduling  # optional dependency: only under pytest-xdist

    class FixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            fixture = fixture_of(nodeid)
            if fixture is not None:
                return f"aitune:{fixture}"
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return nodeid.split("@")[-1]
            return nodeid

    return FixtureScheduling(config, log)
