"""The state of one ``pytest --aitune`` run: which fixtures and checks exist, their results, the summary.

Plain class with no pytest hooks: the plugin's hooks create one per run (in ``config.stash``) and
only call into it. Checking a fixture against its baseline is ``check.FixtureCheck``'s job; this
class does the bookkeeping around it (selection, teardown, xdist merging, reports).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from aitune_ci.caught_warnings import WarningTally, warnings_from_json
from aitune_ci.check import SELECTION, BaseSide, CheckOptions, CheckOutcome, FixtureCheck, Outcome
from aitune_ci.config import RepoConfig
from aitune_ci.engine import default_backend_names
from aitune_ci.plugin.against import BaseCheckout
from aitune_ci.plugin.discovery import FixturePlan, evaluate_plan
from aitune_ci.plugin.plan import Drift, Planner, evaluate_lazily
from aitune_ci.report import write_report
from aitune_ci.report.terminal import format_verdict_table
from aitune_ci.result import TuneResult
from aitune_ci.store.history import append_history, current_commit
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
    #: ``--aitune-warn-only``: every check's regressions are reported, not failed
    warn_only: bool = False

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
    #: how the called fixture's spec differs from the plan its items were made from
    drift: Drift | None = None


class AituneSession:
    """Tunes each fixture once (lazily, on its first item) and answers each item's check."""

    def __init__(self, options: SessionOptions, progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.progress = progress or (lambda _m: None)
        pyproject = options.root / "pyproject.toml"
        self.repo_config = RepoConfig.load(pyproject) if pyproject.is_file() else RepoConfig()
        if options.threshold is not None:
            self.repo_config = self.repo_config.with_default_threshold(options.threshold)
        if options.warn_only:
            self.repo_config = self.repo_config.with_warn_only()
        self.fixtures: dict[str, _FixtureState] = {}
        self.verdicts: list[Verdict] = []
        self.results: list[TuneResult] = []
        #: broken fixtures: those whose items failed before any verdict (the fixture raised, returned
        #: no spec, its tune raised, its baseline is unreadable) or whose committed artifact is not
        #: the one its baseline pins: fixture -> why; the count line and the reports name them
        self.broken: dict[str, str] = {}
        #: ``{fixture: "winner changed: a -> b (…)"}``: a passing [selection] item's text is never shown
        self.winner_changes: dict[str, str] = {}
        #: ``{fixture: note}`` for an artifact its baseline pins that is not there (a progress line alone hid it)
        self.missing_artifacts: dict[str, str] = {}
        #: warnings raised while evaluating and tuning fixtures (see ``aitune_ci.plugin.quiet``)
        self.warnings = WarningTally()
        self.started = time.time()
        self._base_checkout: BaseCheckout | None = None
        #: the temporary folder holding the base's worktree, deleted by ``close``
        self._base_workdir: Path | None = None
        self._base_plans: list[FixturePlan] = []
        #: relative mode: the base's fixture functions, called only when their head fixture is tuned
        self._base_fixtures: dict[str, tuple[Callable[..., Any], Path]] = {}
        self._base_label = ""
        #: each fixture's items come from a plan; the cache of plans is refreshed as fixtures are called
        self.planner = Planner(options.directory, options.root, self.progress)

    # -- collection -----------------------------------------------------------------------------
    def add_plan(self, plan: FixturePlan) -> None:
        if plan.name in self.fixtures:
            return  # an override lower in the tree; the first definition found wins
        self.fixtures[plan.name] = _FixtureState(plan)

    def select(self, fixture: str, check: str) -> None:
        """Record that the item ``fixture[check]`` survived deselection (so only it gets tuned)."""
        self.fixtures[fixture].selected.add(check)

    def load_base(self, ref: str) -> None:
        """Relative mode: check ``ref`` out in a temporary folder and find its version of every fixture.

        Base fixtures are called later, only for head fixtures that are tuned (``_base_side``). A
        fixture the base lacks, or whose base fixture fails, is judged against the stored baseline
        instead (its verdict says so). One worktree per process; ``close`` deletes it and its folder.
        """
        self._base_workdir = Path(tempfile.mkdtemp(prefix="aitune-base-"))
        checkout = BaseCheckout.create(self.options.root, ref, self._base_workdir)
        self._base_checkout = checkout
        files = sorted({self.options.root / state.plan.source for state in self.fixtures.values()})
        self._base_fixtures = checkout.fixtures(files, lambda name, func, file: (func, file))
        # a ref that is the commit itself (the action passes the PR base's sha) is shown once, short
        is_sha = checkout.sha.startswith(ref.lower()) and len(ref) >= 7
        self._base_label = label = checkout.sha[:12] if is_sha else f"{ref} ({checkout.sha[:12]})"
        missing = sorted(name for name in self.fixtures if name not in self._base_fixtures)
        if missing:
            self.progress(f"no base version at {label} of {', '.join(missing)}: judged against the stored baselines")

    def _base_side(self, name: str) -> BaseSide | None:
        """Call the base's version of fixture ``name`` (with the base's modules in place); None if it has none."""
        found, checkout = self._base_fixtures.pop(name, None), self._base_checkout
        if found is None or checkout is None:
            return None
        func, file = found
        source = f"{self.options.against}:{file.relative_to(checkout.root)}"
        plan = checkout.call(lambda: evaluate_plan(name, func, source, self.options.backends, default_backend_names))
        self._base_plans.append(plan)
        if plan.error:
            self.progress(f"{name}: the base's fixture failed, judged against the stored baseline: {plan.error}")
            return None
        # The base's own .aitune: its committed artifact (pinned by its baseline) stands in for a build.
        return BaseSide(plan.spec, self._base_label, directory=checkout.path_of(self.options.directory))

    # -- running --------------------------------------------------------------------------------
    def check(self, fixture: str, check: str) -> CheckOutcome:
        """The outcome of item ``fixture[check]`` (``check`` is a backend name or ``selection``)."""
        state = self.fixtures[fixture]
        if not state.plan.evaluated and not state.plan.error:
            self._evaluate(state)
        if state.plan.error:
            state.done.add(check)
            self.broken.setdefault(fixture, state.plan.error)
            return CheckOutcome(Outcome.FAILED, state.plan.error)
        drift = state.drift
        if drift is not None and check in drift.removed:
            state.done.add(check)
            self._release_if_done(state)
            return drift.removed_outcome(check)
        checker = state.check or self._run(state)
        try:
            outcome = checker.outcome(check)
            unusable = not checker.verdicts or checker.artifact_problem is not None
            if outcome.outcome is Outcome.FAILED and outcome.verdict is None and outcome.message and unusable:
                self.broken.setdefault(fixture, outcome.message)
            if drift is not None and check == SELECTION:
                outcome = drift.selection_outcome(outcome, {b: checker.outcome(b) for b in drift.added})
            return outcome
        finally:
            state.done.add(check)
            self._release_if_done(state)

    def _evaluate(self, state: _FixtureState) -> None:
        """Call the fixture now, on its first item: a worker builds only the models it tunes."""
        state.drift = evaluate_lazily(state.plan, self.planner, self.options.backends, default_backend_names)
        if state.drift is not None:
            self.progress(state.drift.notice(checked=SELECTION in state.selected))

    def _release_if_done(self, state: _FixtureState) -> None:
        checker = state.check
        if state.done >= state.selected and checker is not None and checker.result is not None:
            checker.release()
            problem = state.plan.finish()
            if problem:
                self.progress(problem)

    def _run(self, state: _FixtureState) -> FixtureCheck:
        plan = state.plan
        selected = set(state.selected)
        if state.drift is not None and SELECTION in selected:
            selected.update(state.drift.added)  # no item of their own: [selection] answers for them
        if state.base is None:
            state.base = self._base_side(plan.name)
        checker = FixtureCheck(
            plan.name,
            plan.spec,
            plan.backends,
            selected,
            self.options.check,
            self.repo_config,
            self.progress,
            base=state.base,
        )
        state.check = checker
        checker.run()
        if checker.result is not None:
            self.results.append(checker.result)
        if change := checker.winner_change:
            self.winner_changes[plan.name] = change
        if checker.missing_artifact:
            self.missing_artifacts[plan.name] = checker.missing_artifact
        self.verdicts.extend(checker.verdicts.values())
        return checker

    def close(self) -> list[str]:
        """Tear down every yield fixture still open: deselected, in another shard, or failed to tune.

        A fixture called at collection (no plan yet) is set up whether or not its items run. Returns what went wrong.
        """
        plans = [state.plan for state in self.fixtures.values()] + self._base_plans
        problems = [problem for plan in plans if (problem := plan.finish())]
        try:
            if self._base_checkout is not None:
                self._base_checkout.remove()
                self._base_checkout = None
        finally:
            if self._base_workdir is not None:  # also when the checkout failed: no empty folders left in /tmp
                shutil.rmtree(self._base_workdir, ignore_errors=True)
                self._base_workdir = None
        return problems

    # -- reporting ------------------------------------------------------------------------------
    def run_json(self) -> dict[str, Any]:
        """Everything this run found, for ``--aitune-report x.json`` and for merging shards."""
        run: dict[str, Any] = {
            "schema_version": RUN_SCHEMA_VERSION,
            "started": self.started,
            "results": [r.to_json() for r in self.results],
            "verdicts": [v.to_json() for v in self.verdicts],
            "warnings": [w.to_json() for w in self.warnings.entries()],
        }
        if self.broken:
            run["broken"] = [{"fixture": name, "error": why} for name, why in self.broken.items()]
        if self.winner_changes:
            run["winner_changes"] = dict(sorted(self.winner_changes.items()))
        if self.missing_artifacts:
            run["missing_artifacts"] = dict(sorted(self.missing_artifacts.items()))
        if self.options.shard is not None:  # so that a merge can tell a shard missing or passed twice
            run["shard"] = {"index": self.options.shard.index, "count": self.options.shard.count}
        return run

    def absorb(self, data: Mapping[str, Any]) -> None:
        """Merge what an xdist worker found (its ``run_json``) into this controller's session."""
        self.results.extend(TuneResult.from_json(r) for r in data.get("results", ()))
        self.verdicts.extend(Verdict.from_json(v) for v in data.get("verdicts", ()))
        self.warnings.absorb(warnings_from_json(data.get("warnings")))
        for entry in data.get("broken", ()):
            self.broken.setdefault(str(entry["fixture"]), str(entry["error"]))
        self.winner_changes.update(data.get("winner_changes", {}))
        self.missing_artifacts.update(data.get("missing_artifacts", {}))

    def summary_lines(self) -> list[str]:
        if not self.verdicts and not self.results and not self.broken:
            return []
        lines = [format_verdict_table(self.verdicts)] if self.verdicts else []
        lines += [f"{name}: {change}" for name, change in sorted(self.winner_changes.items())]
        lines += [f"{name}: {note}" for name, note in sorted(self.missing_artifacts.items())]
        line = count_line(self.verdicts) if self.verdicts or not self.broken else "aitune:"
        if self.broken:
            names = sorted(self.broken)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            line += f"{',' if self.verdicts else ''} {len(names)} fixture{'s' if len(names) != 1 else ''} "
            line += f"broken ({shown}: see the failures above)"
        lines.append(line)
        return lines

    def write_reports(self) -> list[Path]:
        """Write the ``--aitune-report`` files; with ``--aitune-update``, append the run to the history too.

        Called once per run, by the controller under xdist (after every worker's results came in).
        """
        run = self.run_json()
        written = [write_report(run, Path(target), root=self.options.root) for target in self.options.reports]
        if self.options.update:
            self._append_history()
        return written

    def _append_history(self) -> None:
        """One line per tuned fixture in ``<aitune-dir>/history/<hardware>.jsonl`` (what the nightly keeps for trends)."""
        directory = self.options.directory / "history"
        commit = current_commit(self.options.root)
        appended: set[Path] = set()
        for result in self.results:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                appended.add(append_history(directory, result, commit))
            except (OSError, ValueError) as exc:
                self.progress(f"{result.name}: history not appended ({exc})")
        for path in sorted(appended):
            self.progress(f"history appended to {path}")
