"""The state of one ``pytest --aitune`` run: plans, tunes, verdicts, baselines, and the summary.

Plain class with no pytest hooks: ``plugin.py`` creates one per run (in ``config.stash``) and its
hooks only call into it, so this logic is testable without pytest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from aitune_ci.errors import AituneCIError, DataFileError
from aitune_ci.plugin.discovery import FixturePlan

__all__ = ["AituneSession", "CheckOutcome", "SessionOptions", "RUN_SCHEMA_VERSION"]

RUN_SCHEMA_VERSION = 1
#: The check name of the per-fixture item that reports the winner (``tune_x[selection]``).
SELECTION = "selection"


@dataclass(frozen=True)
class SessionOptions:
    """The resolved ``--aitune-*`` options (command line over ini)."""

    root: Path
    directory: Path
    update: bool = False
    update_new_only: bool = False
    threshold: float | None = None
    backends: list[str] | None = None
    fixtures: list[str] | None = None
    reports: list[str] = field(default_factory=list)
    shard: Any = None
    strict: bool = False
    rebuild: bool = False
    reuse: bool = False
    oversubscribe: bool = False
    measure_seconds: float | None = None


@dataclass(frozen=True)
class CheckOutcome:
    """What one item concluded: ``passed`` / ``failed`` / ``skipped`` and the text to show."""

    outcome: str
    message: str
    verdict: Any = None


@dataclass
class _FixtureState:
    plan: FixturePlan
    selected: set[str] = field(default_factory=set)
    result: Any = None
    baseline: Any = None
    baseline_error: DataFileError | None = None
    error: str | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)
    updated: bool = False
    done: set[str] = field(default_factory=set)
    #: backend -> (RatioEstimate of new/old, function that measures the pair again)
    paired: dict[str, Any] = field(default_factory=dict)
    #: the backend whose committed artifact was loaded instead of built (unchanged spec hash)
    reused: str | None = None


def _payload_is_compiled(backend: str, module_choice: Mapping[str, str]) -> bool:
    """Whether an artifact of ``backend`` holds the compiled computation itself (AOTI, ONNX, TensorRT)."""
    from aitune_ci.backends.registry import get_backend
    from aitune_ci.engine import MIXED

    names = list(module_choice.values()) if backend == MIXED else [backend]
    try:
        return bool(names) and all(get_backend(n).ahead_of_time for n in names)
    except AituneCIError:
        return False


class AituneSession:
    """Tunes each fixture once (lazily, on its first item) and answers each item's check."""

    def __init__(self, options: SessionOptions, progress: Callable[[str], None] | None = None) -> None:
        from aitune_ci.config import RepoConfig

        self.options = options
        self.progress = progress or (lambda _m: None)
        pyproject = options.root / "pyproject.toml"
        self.repo_config = RepoConfig.load(pyproject) if pyproject.is_file() else RepoConfig()
        if options.threshold is not None:
            self.repo_config = self.repo_config.with_default_threshold(options.threshold)
        self.fixtures: dict[str, _FixtureState] = {}
        self.verdicts: list[Any] = []
        self.results: list[Any] = []
        self.started = time.time()

    # -- collection -----------------------------------------------------------------------------
    def add_plan(self, plan: FixturePlan) -> None:
        if plan.name in self.fixtures:
            return  # an override lower in the tree; the first definition found wins
        self.fixtures[plan.name] = _FixtureState(plan)

    def select(self, fixture: str, check: str) -> None:
        """Record that the item ``fixture[check]`` survived deselection (so only it gets tuned)."""
        self.fixtures[fixture].selected.add(check)

    # -- running --------------------------------------------------------------------------------
    def _store(self) -> Any:
        from aitune_ci.store.baseline import BaselineStore

        return BaselineStore(self.options.directory / "baselines")

    def _ensure_tuned(self, state: _FixtureState) -> None:
        if state.result is not None or state.error is not None:
            return
        plan = state.plan
        if plan.error:
            state.error = plan.error
            return
        from aitune_ci.engine import tune
        from aitune_ci.environment import hardware_key
        from aitune_ci.measure import MeasureConfig

        spec = plan.spec
        hw = hardware_key(spec.resolved_device)
        try:
            state.baseline = self._store().read(hw, plan.name)
        except DataFileError as exc:
            state.baseline_error = exc
        backends = [b for b in plan.backends if b in state.selected or b == "eager"]
        config = MeasureConfig(max_total_s=self.options.measure_seconds) if self.options.measure_seconds else None
        prebuilt = self._reusable_artifact(state, hw, backends)
        t0 = time.perf_counter()
        try:
            result = tune(spec, backends=backends, measure_config=config, progress=self.progress, prebuilt=prebuilt)
            # Baselines, verdicts and reports are keyed by the fixture, whatever the spec's display name.
            state.result = replace(result, name=plan.name)
        except AituneCIError as exc:
            state.error = f"{plan.name}: {exc}"
            return
        except Exception as exc:  # the engine records backend errors itself; this is a broken spec/model
            state.error = f"{plan.name}: tuning raised {type(exc).__name__}: {exc}"
            return
        self.progress(f"{plan.name}: tuned in {time.perf_counter() - t0:.1f} s")
        self.results.append(state.result)
        if state.baseline_error is None or self.options.update:
            state.paired = self._paired_with_baseline_artifact(state)
            self._judge(state)
        self._maybe_update(state)
        if self.options.strict and state.baseline is None and not state.updated:
            self._require_baseline(state)

    def _require_baseline(self, state: _FixtureState) -> None:
        """``--aitune-strict``: mark the fixture's verdicts as failing for want of a baseline (for counts, reports)."""
        from aitune_ci.verdict import require_baseline

        for backend, verdict in state.verdicts.items():
            marked = require_baseline(verdict)
            state.verdicts[backend] = marked
            self.verdicts = [marked if v is verdict else v for v in self.verdicts]

    def _maybe_update(self, state: _FixtureState) -> None:
        from aitune_ci.store.baseline import Baseline

        opts = self.options
        if not (opts.update or (opts.update_new_only and state.baseline is None and state.baseline_error is None)):
            return
        previous = state.baseline if state.baseline_error is None else None
        sha = self._save_artifact(state)
        baseline = Baseline.from_result(state.result, previous, artifact_sha256=sha)
        path = self._store().write(baseline)
        state.updated = True
        self.progress(f"{state.plan.name}: baseline written to {path}")

    def _judge(self, state: _FixtureState) -> None:
        """Verdicts for every tuned backend of a fixture, with confirmations, then BH over the fixture.

        A suspected regression is re-measured up to ``policy.max_confirmations`` times; the
        measurements are pooled (each re-measurement is a fresh window), so only a slowdown that
        survives fresh windows fails. Benjamini-Hochberg then runs over the fixture's checks.
        """
        from aitune_ci.verdict import apply_run_correction

        env_diff = self._env_diff(state)
        verdicts = [self._judge_row(state, row, env_diff) for row in state.result.backends if not row.module]
        for verdict in apply_run_correction(verdicts):
            state.verdicts[verdict.backend] = verdict
            self.verdicts.append(verdict)

    def _judge_row(self, state: _FixtureState, row: Any, env_diff: Mapping[str, Any]) -> Any:
        """One backend's verdict, re-measured while suspected (``judge_with_confirmations``)."""
        from aitune_ci.engine import remeasure
        from aitune_ci.verdict import judge_with_confirmations

        fixture, backend, result = state.plan.name, row.backend, state.result
        policy = self.repo_config.policy_for(fixture, backend)

        def again() -> Any:
            return remeasure(result, backend).latency

        def say(verdict: Any, measured: int) -> None:
            self.progress(
                f"{fixture} · {backend}: "
                f"{'suspected regressed' if verdict.kind == 'REGRESSED' else 'inconclusive, looks slower'} "
                f"({verdict.delta:+.1%}), "
                f"re-measuring ({measured}/{policy.max_confirmations})"
            )

        return judge_with_confirmations(
            fixture,
            self._baseline_row(state, backend),
            row,
            policy,
            again if backend in result.runtime.built else None,
            env_diff=env_diff,
            on_suspect=say,
            paired=state.paired[backend][0] if backend in state.paired else None,
            remeasure_paired=state.paired[backend][1] if backend in state.paired else None,
        )

    def _artifact_path(self, state: _FixtureState, hw: str | None = None) -> Path:
        hw = hw or state.result.environment.get("hardware_key", "unknown")
        return self.options.directory / "artifacts" / hw / f"{state.plan.name}.ait"

    def _reusable_artifact(self, state: _FixtureState, hw: str, backends: list[str]) -> dict[str, Any]:
        """The committed artifact's winner, loaded instead of rebuilt when nothing it depends on changed.

        "Nothing changed" is the spec hash: model classes' code, structure and weights, samples,
        backend options, hardware and library versions. Opt-in (``--aitune-reuse``), because a
        slowdown caused by something outside those inputs (a runtime flag, a config value read in
        forward) would be measured on yesterday's build. ``--aitune-rebuild`` and updates build.
        """
        import copy

        from aitune_ci.environment import environment_fingerprint
        from aitune_ci.store.artifact import inspect_artifact, load, spec_hash

        baseline, spec = state.baseline, state.plan.spec
        if not self.options.reuse or self.options.rebuild or self.options.update or self.options.update_new_only:
            return {}
        if baseline is None or not baseline.artifact_sha256 or baseline.winner not in backends:
            return {}
        path = self._artifact_path(state, hw)
        if not path.is_file():
            return {}
        try:
            manifest = inspect_artifact(path, verify=False)
            wanted = spec_hash(spec, state.plan.backends, environment_fingerprint(spec.resolved_device))
            if manifest.get("spec_hash") != wanted:
                return {}
            loaded = load(path, copy.deepcopy(spec.model), expected_sha256=baseline.artifact_sha256).runner
        except AituneCIError as exc:
            self.progress(f"{state.plan.name}: committed artifact not reused ({exc})")
            return {}
        state.reused = baseline.winner
        self.progress(f"{state.plan.name} · {baseline.winner}: nothing changed since the baseline; reusing its artifact")
        return {baseline.winner: loaded}

    def _save_artifact(self, state: _FixtureState) -> str | None:
        """Write the winner as ``.aitune/artifacts/<hw>/<fixture>.ait``; its sha256 goes in the baseline."""
        from aitune_ci.store.artifact import save, spec_hash

        result = state.result
        if result.winner is None:
            return None
        path = self._artifact_path(state)
        try:
            info = save(result, path, spec_hash=spec_hash(state.plan.spec, state.plan.backends, result.environment))
        except AituneCIError as exc:
            self.progress(f"{state.plan.name}: no artifact written for {result.winner}: {exc}")
            return None
        self.progress(f"{state.plan.name}: artifact written to {path} ({info.size_bytes / 1e6:.1f} MB)")
        return info.sha256

    def _paired_with_baseline_artifact(self, state: _FixtureState) -> dict[str, Any]:
        """Time the baseline's own artifact and this build interleaved, in this process (A/B, ABBA).

        Drift that hits both alike cancels in the ratio, which is far steadier than comparing two
        medians taken on different days. Used for the backend the artifact holds (the baseline's
        winner); any reason it cannot be loaded here is reported and the medians are used instead.
        """
        import copy

        from aitune_ci.measure import measure_paired
        from aitune_ci.store.artifact import load

        baseline, result = state.baseline, state.result
        if baseline is None or not baseline.artifact_sha256 or not baseline.winner or self.options.update:
            return {}
        backend = baseline.winner
        if state.reused == backend:
            return {}  # this run's build *is* the baseline artifact: A/B against itself says nothing
        if not _payload_is_compiled(backend, baseline.module_choice):
            # A JIT backend's artifact is weights (+ a compile cache): loaded, it runs today's model
            # code, so A/B against it could not see a regression in that code. Medians are used.
            return {}
        new = result.runtime.built.get(backend) if result.runtime is not None else None
        path = self._artifact_path(state)
        if new is None or not path.is_file():
            return {}
        try:
            old = load(path, copy.deepcopy(state.plan.spec.model), expected_sha256=baseline.artifact_sha256).runner
        except AituneCIError as exc:
            self.progress(f"{state.plan.name} · {backend}: no paired A/B against the baseline artifact ({exc})")
            return {}
        args, kwargs = result.runtime.samples[0]
        device = result.device

        def pair() -> Any:
            return measure_paired(lambda: old(*args, **kwargs), lambda: new(*args, **kwargs), device, result.runtime.measure_config)

        try:
            estimate = pair()
        except Exception as exc:  # the old artifact may not run on today's inputs or code
            self.progress(f"{state.plan.name} · {backend}: paired A/B failed ({type(exc).__name__}: {exc})")
            return {}
        self.progress(
            f"{state.plan.name} · {backend}: paired A/B vs baseline artifact: {estimate.ratio:.3f}x "
            f"[{estimate.ci_low:.3f}, {estimate.ci_high:.3f}] over {estimate.n} rounds"
        )
        return {backend: (estimate, pair)}

    def _baseline_row(self, state: _FixtureState, backend: str) -> Any:
        if state.baseline is None:
            return None
        return state.baseline.backends.get(backend)

    def _env_diff(self, state: _FixtureState) -> Mapping[str, Any]:
        from aitune_ci.environment import environment_differences

        if state.baseline is None:
            return {}
        return environment_differences(dict(state.baseline.environment), dict(state.result.environment))

    def check(self, fixture: str, check: str) -> CheckOutcome:
        """The outcome of item ``fixture[check]`` (``check`` is a backend name or ``selection``)."""
        state = self.fixtures[fixture]
        self._ensure_tuned(state)
        try:
            if state.error:
                return CheckOutcome("failed", state.error)
            if state.baseline_error is not None and not self.options.update:
                return CheckOutcome("failed", f"{state.baseline_error}")
            if check == SELECTION:
                return self._check_selection(state)
            return self._check_backend(state, check)
        finally:
            state.done.add(check)
            if state.done >= state.selected and state.result is not None:
                self._release(state)

    def _check_backend(self, state: _FixtureState, backend: str) -> CheckOutcome:
        from aitune_ci.store.baseline import update_command

        fixture = state.plan.name
        if state.baseline is None and self.options.strict and not state.updated:
            return CheckOutcome(
                "failed",
                f"{fixture}[{backend}]: no baseline for this hardware and --aitune-strict is set. Create it with:\n"
                f"    {update_command(fixture, new_only=True)}",
            )
        verdict = state.verdicts.get(backend)
        if verdict is None:
            return CheckOutcome("failed", f"{fixture}: backend {backend!r} was not tuned")
        if verdict.kind == "SKIPPED":
            return CheckOutcome("skipped", verdict.message, verdict)
        if state.updated:
            return CheckOutcome("passed", f"baseline updated (was {verdict.kind} against the old one)", verdict)
        return CheckOutcome("failed" if verdict.fails else "passed", verdict.message, verdict)

    def _check_selection(self, state: _FixtureState) -> CheckOutcome:
        from aitune_ci.verdict import winner_change

        result = state.result
        if result.winner is None:
            return CheckOutcome("failed", f"{state.plan.name}: no backend could be selected — {result.winner_reason}")
        text = f"{state.plan.name}: winner {result.winner} ({result.winner_reason})"
        changed = winner_change(state.baseline, result) if state.baseline is not None else None
        if changed:
            text += f"; {changed}"
        return CheckOutcome("passed", text)

    def _release(self, state: _FixtureState) -> None:
        """Drop compiled modules once a fixture's items are done; keep the plain result data."""
        state.result = replace(state.result, runtime=None)
        problem = state.plan.finish()
        if problem:
            self.progress(problem)

    def close(self) -> list[str]:
        """Tear down every yield fixture still open: deselected, in another shard, or failed to tune.

        Fixtures are set up at collection, whether or not their items run. Returns what went wrong.
        """
        return [problem for state in self.fixtures.values() if (problem := state.plan.finish())]

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
        from aitune_ci.result import TuneResult
        from aitune_ci.verdict import Verdict

        self.results.extend(TuneResult.from_json(r) for r in data.get("results", ()))
        self.verdicts.extend(Verdict.from_json(v) for v in data.get("verdicts", ()))

    def summary_lines(self) -> list[str]:
        from aitune_ci.report.terminal import format_verdict_table
        from aitune_ci.verdict import count_line

        if not self.verdicts and not self.results:
            return []
        lines = [format_verdict_table(self.verdicts)] if self.verdicts else []
        lines.append(count_line(self.verdicts))
        return lines

    def write_reports(self) -> list[Path]:
        written = []
        from aitune_ci.report import write_report

        run = self.run_json()
        for target in self.options.reports:
            written.append(write_report(run, Path(target)))
        return written
