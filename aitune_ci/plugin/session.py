"""The state of one ``pytest --aitune`` run: which fixtures and checks exist, their results, the summary.

Plain class with no pytest hooks: the plugin's hooks create one per run (in ``config.stash``) and
only call into it. Checking a fixture against its baseline is ``check.FixtureCheck``'s job; this
class does the bookkeeping around it (selection, teardown, xdist merging, reports).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from aitune_ci.check import BaseSide, CheckOptions, CheckOutcome, FixtureCheck, Outcome
from aitune_ci.config import RepoConfig
from aitune_ci.engine import default_backend_names
from aitune_ci.plugin.against import BaseCheckout
from aitune_ci.plugin.discovery import FixturePlan, evaluate_plan
from aitune_ci.report import write_report
from aitune_ci.report.terminal import format_verdict_table
from aitune_ci.result import TuneResult
from aitune_ci.store.runs import RUN_SCHEMA_VERSION
from aitune_ci.verdict import Verdict, count_line

__all__ = ["AituneSession", "SessionOptions"]


@dataclass(frozen=True)
class SessionOptions:
    """The resolved ``--aitune-*`` options (command line over ini)."""

    root: Path
    check: CheckOptions
    threshold: float | None = None
    backends: list[str] | None = None
    fixtures: list[str] | None = None
    reports: list[str] = field(default_factory=list)
    shard: Any = None
    oversubscribe: bool = False
    #: relative mode: the git ref (the PR's base) to build and time beside the head
    against: str | None = None

    @property
    def directory(self) -> Path:
        return self.check.directory

    @property
    def update(self) -> bool:
        return self.check.update


@dataclass
class _FixtureState:
    plan: FixturePlan
    selected: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    check: FixtureCheck | None = None
    #: relative mode: the base's version of this fixture (None: new in the head, or its base failed)
    base: BaseSide | None = None


class AituneSession:
    """Tunes each fixture once (lazily, on its first item) and answers each item's check."""

    def __init__(self, options: SessionOptions, progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.progress = progress or (lambda _m: None)
        pyproject = options.root / "pyproject.toml"
        self.repo_config = RepoConfig.load(pyproject) if pyproject.is_file() else RepoConfig()
        if options.threshold is not None:
            self.repo_config = self.repo_config.with_default_threshold(options.threshold)
        self.fixtures: dict[str, _FixtureState] = {}
        self.verdicts: list[Verdict] = []
        self.results: list[TuneResult] = []
        self.started = time.time()
        self._base_checkout: BaseCheckout | None = None
        self._base_plans: list[FixturePlan] = []

    # -- collection -----------------------------------------------------------------------------
    def add_plan(self, plan: FixturePlan) -> None:
        if plan.name in self.fixtures:
            return  # an override lower in the tree; the first definition found wins
        self.fixtures[plan.name] = _FixtureState(plan)

    def select(self, fixture: str, check: str) -> None:
        """Record that the item ``fixture[check]`` survived deselection (so only it gets tuned)."""
        self.fixtures[fixture].selected.add(check)

    def load_base(self, ref: str, workdir: Path) -> None:
        """Relative mode: check ``ref`` out under ``workdir`` and evaluate its version of every fixture.

        A fixture the base lacks, or whose base fixture fails, is judged against the stored
        baseline instead (its verdict says so).
        """
        checkout = BaseCheckout.create(self.options.root, ref, workdir)
        self._base_checkout = checkout
        files = sorted({self.options.root / state.plan.source for state in self.fixtures.values()})

        def evaluate(name: str, func: Callable[..., Any], file: Path) -> FixturePlan:
            source = f"{ref}:{file.relative_to(checkout.root)}"
            return evaluate_plan(name, func, source, self.options.backends, default_backend_names)

        label = f"{ref} ({checkout.sha[:12]})"
        for name, plan in checkout.fixtures(files, evaluate).items():
            self._base_plans.append(plan)
            state = self.fixtures.get(name)
            if state is None:
                continue
            if plan.error:
                self.progress(f"{name}: the base's fixture failed, judged against the stored baseline: {plan.error}")
            else:
                state.base = BaseSide(plan.spec, label)
        missing = sorted(name for name, state in self.fixtures.items() if state.base is None)
        if missing:
            self.progress(f"no base version at {label} of {', '.join(missing)}: judged against the stored baselines")

    # -- running --------------------------------------------------------------------------------
    def check(self, fixture: str, check: str) -> CheckOutcome:
        """The outcome of item ``fixture[check]`` (``check`` is a backend name or ``selection``)."""
        state = self.fixtures[fixture]
        if state.plan.error:
            state.done.add(check)
            return CheckOutcome(Outcome.FAILED, state.plan.error)
        checker = state.check or self._run(state)
        try:
            return checker.outcome(check)
        finally:
            state.done.add(check)
            if state.done >= state.selected and checker.result is not None:
                checker.release()
                problem = state.plan.finish()
                if problem:
                    self.progress(problem)

    def _run(self, state: _FixtureState) -> FixtureCheck:
        plan = state.plan
        checker = FixtureCheck(
            plan.name,
            plan.spec,
            plan.backends,
            state.selected,
            self.options.check,
            self.repo_config,
            self.progress,
            base=state.base,
        )
        state.check = checker
        checker.run()
        if checker.result is not None:
            self.results.append(checker.result)
        self.verdicts.extend(checker.verdicts.values())
        return checker

    def close(self) -> list[str]:
        """Tear down every yield fixture still open: deselected, in another shard, or failed to tune.

        Fixtures are set up at collection, whether or not their items run. Returns what went wrong.
        """
        plans = [state.plan for state in self.fixtures.values()] + self._base_plans
        problems = [problem for plan in plans if (problem := plan.finish())]
        if self._base_checkout is not None:
            self._base_checkout.remove()
            self._base_checkout = None
        return problems

    # -- reporting ------------------------------------------------------------------------------
    def run_json(self) -> dict[str, Any]:
        """Everything this run found, for ``--aitune-report x.json`` and for merging shards."""
        return {
            "schema_version": RUN_SCHEMA_VERSION,
            "started": self.started,
            "results": [r.to_json() for r in self.results],
            "verdicts": [v.to_json() for v in self.verdicts],
        }

    def absorb(self, data: Mapping[str, Any]) -> None:
        """Merge what an xdist worker found (its ``run_json``) into this controller's session."""
        self.results.extend(TuneResult.from_json(r) for r in data.get("results", ()))
        self.verdicts.extend(Verdict.from_json(v) for v in data.get("verdicts", ()))

    def summary_lines(self) -> list[str]:
        if not self.verdicts and not self.results:
            return []
        lines = [format_verdict_table(self.verdicts)] if self.verdicts else []
        lines.append(count_line(self.verdicts))
        return lines

    def write_reports(self) -> list[Path]:
        run = self.run_json()
        return [write_report(run, Path(target), root=self.options.root) for target in self.options.reports]
