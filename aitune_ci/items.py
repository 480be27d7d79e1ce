"""The test items ``pytest --aitune`` generates: ``tune_x[<backend>]`` and ``tune_x[selection]``."""

from __future__ import annotations

import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aitune_ci.discovery import evaluate_plan, find_tune_fixtures

if TYPE_CHECKING:  # pragma: no cover
    from aitune_ci.options import Shard
    from aitune_ci.session import AituneSession

__all__ = ["AituneItem", "AituneCheckFailed", "generate_items", "apply_shard"]

SELECTION = "selection"


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
        # pytest-xdist --dist loadgroup keeps a fixture's items on one worker (one tune, one GPU).
        self.add_marker(pytest.mark.xdist_group(name=f"aitune-{fixture}"))

    def runtest(self) -> None:
        from aitune_ci.plugin import session_key

        outcome = self.config.stash[session_key].check(self.fixture, self.check)
        self.user_properties.append(("aitune", outcome.message))
        if outcome.outcome == "failed":
            raise AituneCheckFailed(outcome.message)
        if outcome.outcome == "skipped":
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
    mods = [p for p in plugins if isinstance(p, types.ModuleType) and Path(getattr(p, "__file__", "") or "").name == "conftest.py"]
    return sorted(mods, key=lambda m: m.__file__ or "")


def generate_items(session: pytest.Session, state: "AituneSession", collectors: dict[str, pytest.Collector]) -> list[AituneItem]:
    """Items for every tune fixture in conftest files and collected test modules."""
    from aitune_ci.engine import default_backend_names

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
    seen: set[str] = set()
    for parent, module, path in sources:
        for name, func in find_tune_fixtures(module):
            if name in seen:
                continue
            seen.add(name)
            rel = _relative(path, session.config.rootpath)
            plan = evaluate_plan(name, func, rel, state.options.backends, default_backend_names)
            state.add_plan(plan)
            checks = plan.backends if plan.error is None else []
            location = plan.location
            for check in [*checks, SELECTION]:
                items.append(
                    AituneItem.from_parent(parent, name=f"{name}[{check}]", fixture=name, check=check, location_hint=location)
                )
    return items


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def apply_shard(items: list[pytest.Item], shard: "Shard") -> tuple[list[pytest.Item], list[pytest.Item]]:
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
