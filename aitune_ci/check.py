"""One tune fixture against its committed baseline: tune once, judge every backend, update on request.

The check policy lives here, apart from pytest: which committed artifact may be reused, when the
baseline's artifact and this build are timed A/B in one process, how a suspected regression is
re-measured, and when baselines and artifacts are written. ``plugin.session`` keeps one
:class:`FixtureCheck` per tune fixture and turns its :class:`CheckOutcome` into a test outcome.
"""

from __future__ import annotations

import copy
import datetime as _dt
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from aitune_ci.backends.registry import fingerprint, get_backend
from aitune_ci.config import RepoConfig
from aitune_ci.cpu_load import CONTENDED_CORES
from aitune_ci.engine import MIXED, PartChoice, remeasure, tune
from aitune_ci.environment import environment_differences, hardware_key
from aitune_ci.errors import AituneCIError, DataFileError
from aitune_ci.gc_pause import gc_paused
from aitune_ci.measure import MeasureConfig, measure_paired
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.sanity import SanityConfig
from aitune_ci.spec import TuneSpec
from aitune_ci.status import BackendStatus, VerdictKind, VerdictMode
from aitune_ci.store.artifact import inspect_artifact, load, module_backends, save, spec_hash
from aitune_ci.store.artifact.archive import LFS_POINTER_PREFIX, file_sha256
from aitune_ci.store.artifact.hashing import BuildKeys, work_key
from aitune_ci.store.artifact.safety import sha256_json
from aitune_ci.store.artifact.saving import save_for_load_timing
from aitune_ci.store.baseline import Baseline, BaselineStore, update_command
from aitune_ci.store.build_cache import BuildCache, CacheEntryError, FixtureBuilds, resolve_cache_dir
from aitune_ci.store.result_cache import ResultCache
from aitune_ci.task_metric_gates import gate_resolver
from aitune_ci.verdict import (
    NOT_COMPARED,
    Verdict,
    apply_run_correction,
    judge_with_confirmations,
    parts_change,
    require_baseline,
    winner_change,
)
from aitune_ci.verdict.metrics import judge_metric
from aitune_ci.verdict.text import with_message

__all__ = ["SELECTION", "BaseSide", "CheckOptions", "CheckOutcome", "FixtureCheck", "Outcome"]

#: The check name of the per-fixture item that reports the winner (``tune_x[selection]``).
SELECTION = "selection"
#: Why a relative check whose base does the same work was not timed (short enough for a report cell).
SAME_WORK_NOTE = (
    f"{NOT_COMPARED}: the base does the same work (same code, weights, samples, options and environment); "
    "--aitune-rebuild times both sides"
)
#: Why a stored-mode check that does the work its baseline's latest update tuned was not timed.
SAME_AS_BASELINE_NOTE = (
    f"{NOT_COMPARED}: the baseline's latest update did the same work (same code, weights, samples, options and "
    "environment); --aitune-rebuild times it"
)


class Outcome(str, Enum):
    """What a test item reports."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckOptions:
    """The ``--aitune-*`` options that decide how a fixture is checked (see ``options.py``)."""

    directory: Path
    update: bool = False
    update_new_only: bool = False
    strict: bool = False
    rebuild: bool = False
    reuse: bool = False
    measure_seconds: float | None = None
    #: the runner's build cache (``store.build_cache``): None for the default location, ``off`` for none
    cache_dir: Path | str | None = None

    @property
    def writes_baselines(self) -> bool:
        return self.update or self.update_new_only


@dataclass(frozen=True)
class BaseSide:
    """The PR's base version of a fixture (relative mode): its spec, and the ref it was built from.

    Attributes:
        spec: what the base's fixture returned, its model built from the base's code.
        ref: how verdicts name the base, e.g. ``origin/main (1a2b3c4d5e6f)``.
        directory: the base checkout's ``.aitune`` folder: its committed artifact (the nightly's,
            pinned by the base's baseline) is loaded instead of building its winner where the spec
            hash matches. None: the base builds (or loads from the build cache) every backend.
    """

    spec: TuneSpec
    ref: str
    directory: Path | None = None


def contended_update_warning(fixture: str, rows: Sequence[BackendResult]) -> str | None:
    """The warning of an update that measured a backend while other processes took the CPU: it said
    only NEW, and every stored check against it then read "not judged" until the next update."""
    busy = sorted(
        (row.backend, row.latency.cpu_contention)
        for row in rows
        if not row.module and row.latency is not None and (row.latency.cpu_contention or 0.0) > CONTENDED_CORES
    )
    if not busy:
        return None
    return (
        f"{fixture}: warning: other processes took up to {max(c or 0.0 for _, c in busy):.2f} CPU cores while "
        f"{', '.join(b for b, _ in busy)} {'was' if len(busy) == 1 else 'were'} measured, with no core idle; "
        "stored checks against this baseline will not judge their latency until an update on a quiet machine "
        "rewrites it"
    )


@dataclass(frozen=True)
class CheckOutcome:
    """What one item concluded, the text to show, and the verdict behind it (None for selection/errors)."""

    outcome: Outcome
    message: str
    verdict: Verdict | None = None


def _loads_as_built(rows: Sequence[BackendResult]) -> frozenset[tuple[str, str]]:
    """(module, backend) of each row whose backend's saved payload loads to what a build gives
    (``Backend.loads_as_built``), so a base may load it from the build cache where the head built."""
    found = set()
    for row in rows:
        try:
            if get_backend(row.backend).loads_as_built:
                found.add((row.module, row.backend))
        except Exception:  # a backend not registered here: built, as before
            continue
    return frozenset(found)


def _reuse_text(result: TuneResult) -> str:
    """``; aoti, onnxruntime loaded from the build cache`` for the tuned-in line (empty when nothing was)."""
    parts = []
    for source, text in (("cache", "the build cache"), ("artifact", "the committed artifact")):
        names = [f"{r.module}/{r.backend}" if r.module else r.backend for r in result.backends if r.reused == source]
        if names:
            parts.append(f"{', '.join(names)} loaded from {text}")
    return f"; {'; '.join(parts)}" if parts else ""


def _reusable_status(row: BackendResult) -> bool:
    """A row that needs no base run to be judged: it ran accurately, or its backend is unavailable here."""
    return row.status in (BackendStatus.OK, BackendStatus.UNAVAILABLE)


def _whole_model_rows(result: TuneResult) -> set[str]:
    return {row.backend for row in result.backends if not row.module}


def _why_not_reusable(stored: TuneResult, backends: list[str]) -> str | None:
    """Why a stored result of the same work cannot answer for a tune of ``backends``; None when it can."""
    rows = {row.backend: row for row in stored.backends if not row.module}
    if set(rows) != set(backends):
        return f"it tuned {', '.join(sorted(rows)) or 'nothing'}, this run tunes {', '.join(sorted(backends))}"
    failed = sorted(name for name, row in rows.items() if not _reusable_status(row))
    if failed:
        return f"{', '.join(failed)} did not run as it should there"
    return None


def _estimate_text(estimate: Any) -> str:
    """``1.043x [1.034, 1.054] over 20 rounds (2.927 → 3.053 ms)``: a paired reading and its two sides."""
    a_ms, b_ms = getattr(estimate, "a_ms", None), getattr(estimate, "b_ms", None)
    sides = f" ({a_ms:.3f} → {b_ms:.3f} ms)" if a_ms is not None and b_ms is not None else ""
    return f"{estimate.ratio:.3f}x [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}] over {estimate.n} rounds{sides}"


def _when(created_at: str) -> str:
    """``2026-12-03 10:00 UTC`` from an ISO timestamp (as written), else the text as it is."""
    try:
        moment = _dt.datetime.fromisoformat(created_at).astimezone(_dt.timezone.utc)
    except (TypeError, ValueError):
        return created_at or "an unknown time"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _reused_note(stored: TuneResult, relative: bool) -> str:
    """The verdict note of a fixture answered by a stored result (short enough for a report cell)."""
    if not relative:
        return (
            f"{NOT_COMPARED}: the baseline's latest update did the same work, which this runner tuned at "
            f"{_when(stored.created_at)}; --aitune-rebuild tunes and times it"
        )
    return (
        f"{NOT_COMPARED}: the base does the same work, which this runner tuned at {_when(stored.created_at)}; "
        "--aitune-rebuild tunes and times both"
    )


def _held_instead_of_winner(manifest: Mapping[str, Any], baseline: Baseline) -> dict[str, str] | None:
    """What the artifact holds, ``{module: backend}``, when that is not the baseline's winner; else None.

    Written before 2026-12-03, a tune with ``modules=[...]`` saved its mixture under a whole-model
    winner's name: timed as that backend, it would compare other code.
    """
    held = module_backends(manifest["modules"])
    wanted = dict(baseline.module_choice) if baseline.winner == MIXED else {"": baseline.winner}
    return None if held == wanted else held


def _payload_is_compiled(backend: str, module_choice: Mapping[str, str]) -> bool:
    """Whether an artifact of ``backend`` holds the compiled computation itself (AOTI, ONNX, TensorRT)."""
    names = list(module_choice.values()) if backend == MIXED else [backend]
    try:
        return bool(names) and all(get_backend(n).ahead_of_time for n in names)
    except AituneCIError:
        return False


def _with_parts_note(verdict: Verdict, before: Mapping[str, str], after: Mapping[str, str]) -> Verdict:
    """The mixed model's verdict says so when its parts were chosen differently from the other side's
    (not where that side chose none: no baseline, or one written before the spec tuned parts)."""
    compared = verdict.backend == MIXED and bool(before) and verdict.kind not in (VerdictKind.SKIPPED, VerdictKind.NEW)
    note = parts_change(before, after) if compared else None
    return with_message(replace(verdict, notes=(*verdict.notes, note)) if note else verdict)


def _time_load(path: Path, spec: TuneSpec, result: TuneResult, sha256: str) -> tuple[float, float]:
    """Seconds to ``load`` the artifact at ``path`` and milliseconds of its first call on the first sample.

    Pinned by ``sha256`` (this process just wrote the file), as a baseline pins it: unpinned, a
    compile-cache payload is skipped with a warning and the first call compiles, which is not what
    loading a committed artifact costs. Timed with the garbage collector off (``gc_paused``): a full
    collection of all this process tuned would land in some loads and not in others.
    """
    import torch

    model = copy.deepcopy(spec.model)
    args, kwargs = result.runtime.samples[0]
    device = torch.device(result.device)
    with gc_paused():
        t0 = time.perf_counter()
        runner = load(path, model, expected_sha256=sha256).runner
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.inference_mode():
            runner(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first_call_ms = (time.perf_counter() - t1) * 1e3
    return load_s, first_call_ms


def _median_load(readings: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The median load time and first call of several timed loads of one artifact."""
    return statistics.median(r[0] for r in readings), statistics.median(r[1] for r in readings)


def _with_load(result: TuneResult, row: BackendResult, load_s: float, first_call_ms: float) -> TuneResult:
    """``result`` with ``row``'s load time and first call set."""
    new = replace(row, load_s=load_s, first_call_ms=first_call_ms)
    return replace(result, backends=tuple(new if b is row else b for b in result.backends))


class FixtureCheck:
    """Tunes one fixture (on :meth:`run`) and answers each of its checks against the baseline.

    Args:
        name: the tune fixture's name: baselines, artifacts and verdicts are keyed by it.
        spec: what the fixture returned.
        backends: every backend the fixture declares (the spec hash covers them all).
        selected: the checks that survived deselection: only their backends (and eager) are tuned.
    """

    def __init__(
        self,
        name: str,
        spec: TuneSpec,
        backends: list[str],
        selected: set[str],
        options: CheckOptions,
        repo_config: RepoConfig,
        progress: Callable[[str], None],
        base: BaseSide | None = None,
    ) -> None:
        self.name, self.spec, self.backends, self.selected = name, spec, backends, selected
        self.base = base
        self.options, self.repo_config, self.progress = options, repo_config, progress
        self.hardware = hardware_key(spec.resolved_device)
        self.store = BaselineStore(options.directory / "baselines")
        self.result: TuneResult | None = None
        self.baseline: Baseline | None = None
        self.baseline_error: DataFileError | None = None
        #: why the committed artifact is not the one the baseline pins (None: it is, or there is none)
        self.artifact_problem: str | None = None
        #: the note when the artifact the baseline pins is missing (every report shows it)
        self.missing_artifact: str | None = None
        self.error: str | None = None
        self.verdicts: dict[str, Verdict] = {}
        self.updated = False
        #: backend -> (RatioEstimate of new/old, function that measures the pair again)
        self.paired: dict[str, Any] = {}
        #: the backend whose committed artifact was loaded instead of built (unchanged spec hash)
        self.reused: str | None = None
        #: the base checkout's committed artifact its winner was loaded from (relative mode), with its sha256
        self._base_loaded_from: tuple[Path, str] | None = None
        #: side ("head" or "base") -> times its winner's artifact load again (``_confirm_load_timing``)
        self._load_timers: dict[str, Callable[[], tuple[float, float]]] = {}
        #: temporary folders holding those artifacts until the fixture is judged
        self._load_dirs: list[str] = []
        #: the work key of this run's tune, where it was taken: stored in the result cache, and in the baseline
        self._work_key: str | None = None

    # -- running --------------------------------------------------------------------------------
    def run(self) -> None:
        """Tune, judge against the baseline, and write the baseline when asked; errors go to ``error``.

        In relative mode a fixture whose base does the same work (``same_key``) is answered by this
        runner's stored result of that work when there is one; else the head is tuned and judged
        untimed when every backend ran as it should, else against the base, else against the
        stored baseline. In stored mode the same holds for a fixture that does the work its
        baseline's latest update tuned (``_work_key_against_baseline``).
        """
        try:
            self._run()
        finally:
            self._drop_load_artifacts()

    def _run(self) -> None:
        try:
            self.baseline = self.store.read(self.hardware, self.name)
        except DataFileError as exc:
            self.baseline_error = exc
        if self.baseline_error is not None and not self.options.update:
            # every item of the fixture fails on it (``outcome``): tuning first cost minutes on a GPU for nothing
            self.progress(f"{self.name}: not tuned: its baseline cannot be read ({self.baseline_error.problem})")
            return
        if not self.options.writes_baselines:
            self.artifact_problem = self._committed_artifact_problem()
            if self.artifact_problem:
                self.progress(f"{self.name}: {self.artifact_problem}")
            elif missing := self._missing_artifact_note():
                self.missing_artifact = missing
                self.progress(f"{self.name}: {missing}")
        backends = [b for b in self.backends if b in self.selected or b == "eager"]
        base = None if self.options.writes_baselines else self.base  # relative mode never writes baselines
        if base is not None:
            head_key, base_key = self._work_keys(base)
            same_key = head_key if head_key is not None and head_key == base_key else None
        else:
            head_key, same_as_baseline = self._work_key_against_baseline(backends)
            base_key, same_key = None, head_key if same_as_baseline else None
        stored = self._stored_result(same_key, backends) if same_key is not None else None
        if stored is not None:
            self.result = stored
            self._judge_identical(base, _reused_note(stored, relative=base is not None))
        else:
            seconds = self.options.measure_seconds
            config = MeasureConfig(max_total_s=seconds) if seconds else None
            prebuilt = self._reusable_artifact(backends)
            builds = self._build_cache(self.spec, self.name)
            t0 = time.perf_counter()
            try:
                result = tune(
                    self.spec,
                    backends=backends,
                    measure_config=config,
                    progress=self.progress,
                    prebuilt=prebuilt,
                    cached=builds,
                    **self._tune_checks(backends),
                )
            except AituneCIError as exc:
                self.error = f"{self.name}: {exc}"
                return
            except Exception as exc:  # the engine records backend errors itself; this is a broken spec/model
                self.error = f"{self.name}: tuning raised {type(exc).__name__}: {exc}"
                return
            # Baselines, verdicts and reports are keyed by the fixture, whatever the spec's display name.
            self.result = replace(result, name=self.name)
            self.progress(f"{self.name}: tuned in {time.perf_counter() - t0:.1f} s{_reuse_text(result)}")
            if builds is not None:
                builds.store_new(result.runtime)
            self._work_key = self._key_of_tune(head_key, builds.keys if builds is not None else None)
            self._store_result()
            identical = same_key is not None and (base is None or self._ran_as_it_should(base))
            if not self.options.writes_baselines and not identical:  # an update times the artifact it writes instead
                loaded_from = None
                if self.reused is not None and self.baseline is not None and self.baseline.artifact_sha256:
                    loaded_from = (self.artifact_path(), self.baseline.artifact_sha256)
                self.result = self._with_load_timing(self.result, self.spec, loaded_from=loaded_from)
            if identical:
                self._judge_identical(base, SAME_WORK_NOTE if base is not None else SAME_AS_BASELINE_NOTE)
            elif base is not None and self._judge_against_base(base, base_key):
                pass
            elif self.baseline_error is None or self.options.update:
                self.paired = self._paired_with_baseline_artifact()
                self.result = self._confirm_stored_load_timing(self.result)
                self._drop_load_artifacts()
                self._judge()
            self._maybe_update()
        if self.options.strict and self.baseline is None and not self.updated:
            self.verdicts = {backend: require_baseline(v) for backend, v in self.verdicts.items()}

    def _tune_checks(self, backends: list[str]) -> dict[str, Any]:
        """The engine's task-metric gates and speed-up sanity check, from ``[tool.aitune]``."""
        return {
            "metric_gate": gate_resolver(self.repo_config.task_metrics, self.name),
            "sanity": self._sanity(backends),
        }

    def _sanity(self, backends: Sequence[str]) -> SanityConfig:
        """The speed-up sanity check of ``[tool.aitune]`` for a tune of ``backends``."""
        config, name = self.repo_config, self.name
        policy = config.policy_for(name)
        accepted = frozenset(b for b in backends if config.policy_for(name, b).acknowledged is not None)
        return SanityConfig(policy.max_plausible_speedup, accepted, policy.sqnr_ceiling_db)

    def release(self) -> None:
        """Drop compiled modules once every check is answered; keep the plain result data."""
        if self.result is not None:
            self.result = replace(self.result, runtime=None)

    def _judge(self) -> None:
        """Verdicts for every tuned backend, with confirmations, then Benjamini-Hochberg over the fixture.

        A suspected regression is re-measured up to ``policy.max_confirmations`` times; the
        measurements are pooled (each re-measurement is a fresh window), so only a slowdown that
        survives fresh windows fails.
        """
        assert self.result is not None
        env_diff = (
            environment_differences(dict(self.baseline.environment), dict(self.result.environment))
            if self.baseline is not None
            else {}
        )
        before = self.baseline.module_choice if self.baseline is not None else {}
        verdicts = [
            _with_parts_note(self._judge_row(row, env_diff), before, self.result.module_choice)
            for row in self.result.backends
            if not row.module
        ]
        elsewhere = self._baselines_elsewhere() if self.baseline is None and self.baseline_error is None else []
        if elsewhere:
            note = (
                f"this machine's hardware key is {self.hardware}; baselines of {self.name} exist for "
                f"{', '.join(elsewhere)}: run the check on that hardware, or write this machine's"
            )
            self.progress(f"{self.name}: no baseline for {self.hardware}; there are for {', '.join(elsewhere)}")
            verdicts = [
                with_message(replace(v, notes=(*v.notes, note))) if v.kind is VerdictKind.NEW else v for v in verdicts
            ]
        for verdict in apply_run_correction(verdicts):
            self.verdicts[verdict.backend] = verdict

    def _baselines_elsewhere(self) -> list[str]:
        """The other hardware keys with a baseline of this fixture: a check that finds none for its own
        machine says so, where "NEW" alone read as if the repo had none at all."""
        found = sorted(p.parent.name for p in self.store.root.glob(f"*/{self.name}.json"))
        return [key for key in found if key != self.hardware]

    def _judge_row(
        self,
        row: BackendResult,
        env_diff: Mapping[str, Any],
        *,
        baseline: Baseline | None = None,
        paired: tuple[Any, Callable[[], Any]] | None = None,
        relative: bool = False,
    ) -> Verdict:
        """One backend's verdict, re-measured while suspected (``judge_with_confirmations``).

        Against ``baseline`` (default: the committed one), with the ``(estimate, measure again)``
        of a paired A/B when there is one (default: the committed artifact's, if timed);
        ``relative`` when ``baseline`` is the PR's base, tuned in this process after the head.
        """
        result, backend = self.result, row.backend
        baseline = baseline or self.baseline
        paired = paired or self.paired.get(backend)
        changed = baseline.inputs_changed(result) if baseline is not None else []
        assert result is not None
        policy = self.repo_config.policy_for(self.name, backend)

        def again() -> Any:
            return remeasure(result, backend).latency

        def say(verdict: Verdict, measured: int) -> None:
            suspicion = "suspected regressed" if verdict.kind == VerdictKind.REGRESSED else "inconclusive, looks slower"
            self.progress(
                f"{self.name} · {backend}: {suspicion} ({verdict.delta:+.1%}), "
                f"re-measuring ({measured}/{policy.max_confirmations})"
            )

        return judge_with_confirmations(
            self.name,
            baseline.backends.get(backend) if baseline is not None else None,
            row,
            policy,
            again if result.runtime is not None and backend in result.runtime.built else None,
            env_diff=env_diff,
            on_suspect=say,
            paired=paired[0] if paired else None,
            remeasure_paired=paired[1] if paired else None,
            inputs_changed=changed,
            base_in_process=relative,
            # the fixture's verdicts are corrected together (apply_run_correction in the callers)
            checks_in_run=sum(1 for r in result.backends if not r.module),
        )

    def _judge_against_base(self, base: BaseSide, base_key: str | None = None) -> bool:
        """Relative mode: tune the base in this process and judge each backend on the paired ratio.

        Base and head of each backend are timed interleaved (ABBA / BAAB pairs) in this process, so whatever
        makes one process or one moment faster than another hits both. Accuracy and "now failing"
        are judged against the base's own run. Returns False (stored mode takes over) when the
        base cannot be tuned. Where this runner stored a tune of the base's work (``base_key``: the
        nightly's), the base's parts take that tune's choice instead of being measured again
        (``_stored_part_choice``).
        """
        result = self.result
        assert result is not None and result.runtime is not None
        names = [row.backend for row in result.backends if not row.module]
        # Like with like: the base loads a build (cache or artifact) only where the head loaded one,
        # and builds where the head built. On the H200 a BERT encoder's inductor build loaded from
        # the cache timed ~7% slower than a fresh build in the same process, which hid a +7.5%
        # slowdown of the head (reports/h200/pr_check/README.md); the cause is not known yet. A
        # backend whose load times like its build (``loads_as_built``: aoti) is loaded either way.
        head_loaded = frozenset((row.module, row.backend) for row in result.backends if row.reused)
        builds = self._build_cache(
            base.spec, f"base · {self.name}", allowed=head_loaded | _loads_as_built(result.backends)
        )
        t0 = time.perf_counter()
        try:
            base_result = tune(
                base.spec,
                backends=names,
                measure_config=result.runtime.measure_config,
                progress=lambda message: self.progress(f"base · {message}"),
                prebuilt=self._base_artifact(base, names, head_loaded),
                cached=builds,
                decided_parts=self._stored_part_choice(base_key, names) if base.spec.modules and base_key else None,
                **self._tune_checks(names),
            )
        except Exception as exc:  # a base that cannot even be tuned leaves the stored baseline to judge
            self.progress(f"{self.name}: the base {base.ref} could not be tuned ({type(exc).__name__}: {exc})")
            return False
        self.progress(f"base · {self.name}: tuned in {time.perf_counter() - t0:.1f} s{_reuse_text(base_result)}")
        if builds is not None:
            builds.store_new(base_result.runtime)
        base_result = self._with_load_timing(
            base_result, base.spec, loaded_from=self._base_loaded_from, label="base · ", side="base"
        )
        self.result, base_result = self._confirm_load_timing(result, base_result)
        self._drop_load_artifacts()  # timed for good: a large AOT artifact need not wait for the A/Bs
        result = self.result
        reference = Baseline.from_result(replace(base_result, name=self.name))
        verdicts = []
        for row in result.backends:
            if row.module:
                continue
            pair = self._pair(base_result, row.backend)
            estimate = None
            if pair is not None:
                try:
                    estimate = pair()
                except Exception as exc:  # either side may fail on a re-run; the medians still judge
                    self.progress(f"{self.name} · {row.backend}: paired head/base timing failed ({exc})")
                    pair = None
                else:
                    self.progress(
                        f"{self.name} · {row.backend}: paired head/base {_estimate_text(estimate)} (base → head)"
                    )
            verdict = self._judge_row(
                row, {}, baseline=reference, paired=(estimate, pair) if estimate else None, relative=True
            )
            verdict = replace(verdict, mode=VerdictMode.RELATIVE, base_ref=base.ref)
            verdicts.append(_with_parts_note(verdict, base_result.module_choice, result.module_choice))
        for verdict in apply_run_correction(verdicts):
            self.verdicts[verdict.backend] = verdict
        return True

    def _work_keys(self, base: BaseSide) -> tuple[str | None, str | None]:
        """The head's work key and the base's. Where they are equal base and head do the same work, so
        that timing one against the other could only measure noise (most fixtures of most PRs).
        ``(None, None)`` when the keys are not compared.

        Both keys are taken before either side's forward has run. Not under ``--aitune-rebuild`` (it
        distrusts the keys), and not with task metrics (their functions are not in the key).
        """
        if self.options.rebuild or self.spec.task_metrics or base.spec.task_metrics:
            return None, None
        t0 = time.perf_counter()
        try:
            head, other = self._work_key_of(self.spec), self._work_key_of(base.spec)
        except Exception as exc:  # no key means no shortcut: time both
            self.progress(f"{self.name}: base and head not compared by key ({type(exc).__name__}: {exc}); timing both")
            return None, None
        if head != other:
            return head, other
        self.progress(
            f"{self.name}: the base does the same work (code, weights, samples, options and environment "
            f"are equal; {time.perf_counter() - t0:.1f} s to tell)"
        )
        return head, head

    def _work_key_against_baseline(self, backends: list[str]) -> tuple[str | None, bool]:
        """Stored mode: the head's work key, and whether the baseline's latest update tuned that very
        work for every backend this run checks (``BaselineWork.covers``). Timing it against the
        baseline's figures would then time the same work twice, in two processes: noise only.

        ``(None, False)``, and no key taken (a digest of every weight), where the baseline records
        no work (written before it did, or by an update that could not take the key), under
        ``--aitune-rebuild``, and with task metrics (their functions are not in the key). Taken
        before the head's forward has run, as relative mode takes both sides'.
        """
        baseline = self.baseline
        work = baseline.work if baseline is not None else None
        if work is None or self.options.rebuild or self.options.writes_baselines or self.spec.task_metrics:
            return None, False
        t0 = time.perf_counter()
        if not work.intact:
            self.progress(
                f"{self.name}: the baseline was edited since its latest update recorded its work; checked against it"
            )
            return None, False
        try:
            key = self._work_key_of(self.spec)
        except Exception as exc:  # no key means no shortcut: check against the baseline as before
            self.progress(
                f"{self.name}: work key not taken ({type(exc).__name__}: {exc}); checked against the baseline"
            )
            return None, False
        if key != work.key:
            self.progress(
                f"{self.name}: not the work the baseline's latest update tuned (code, weights, samples, options "
                "or environment differ); checked against it"
            )
            return key, False
        if not work.covers(key, backends):
            left = ", ".join(sorted(set(backends) - set(work.backends)))
            self.progress(
                f"{self.name}: the baseline's latest update did the same work but did not tune {left}; "
                "checked against the baseline"
            )
            return key, False
        assert baseline is not None
        self.progress(
            f"{self.name}: the baseline's latest update ({_when(baseline.updated_at)}) did the same work (code, "
            f"weights, samples, options and environment are equal; {time.perf_counter() - t0:.1f} s to tell)"
        )
        return key, True

    def _key_of_tune(self, head_key: str | None, keys: BuildKeys | None) -> str | None:
        """The work key of this run's tune, for the result cache and the baseline: ``head_key`` where
        it was taken before the tune, else made from the tune's build ``keys`` in the runs whose
        result is kept (an update; a relative check under ``--aitune-rebuild``).

        A plain stored-mode check takes none: its key costs a digest of every weight, CPU that
        another xdist worker's measurement would share. None with task metrics (their functions are
        not in the key) or where the spec cannot be hashed (the tune stands, said in a line).
        """
        if head_key is not None:
            return head_key
        writes = self._writes_baseline()
        if self.spec.task_metrics or not (writes or self.base is not None):
            return None
        if not writes and self._result_cache() is None:
            return None  # nothing would keep it
        try:
            return self._work_key_of(self.spec, keys)
        except Exception as exc:
            kept = "the result is not kept" + (", and the baseline records no work" if writes else "")
            self.progress(f"{self.name}: work key not taken ({type(exc).__name__}: {exc}); {kept}")
            return None

    def _work_key_of(self, spec: TuneSpec, keys: BuildKeys | None = None) -> str:
        """``work_key`` of ``spec`` with this run's backends, and the sanity check that judges its tune
        (``[tool.aitune]`` max_plausible_speedup, sqnr_ceiling_db, acknowledgements): a result flagged
        for review under one configuration must not answer for a run under another."""
        sanity = self._sanity(self.backends)
        judged_by = [repr(sanity.max_speedup), sorted(sanity.accepted), repr(sanity.sqnr_ceiling_db)]
        return sha256_json({"work": work_key(spec, self.backends, keys), "sanity": judged_by})

    def _ran_as_it_should(self, base: BaseSide) -> bool:
        """Whether every head backend ran accurately or is unavailable, so the base need not be tuned;
        a failing backend is judged against a real run of the base."""
        result = self.result
        assert result is not None
        failed = [row.backend for row in result.backends if not row.module and not _reusable_status(row)]
        if failed:
            self.progress(f"{self.name}: {', '.join(failed)} did not run as it should; tuning the base {base.ref}")
            return False
        self.progress(f"{self.name}: every backend ran as it should; the base is not tuned or timed")
        return True

    def _result_cache(self) -> ResultCache | None:
        root = resolve_cache_dir(self.options.cache_dir)
        return None if root is None else ResultCache(root)

    def _read_stored(self, key: str, whose: str, doing: str) -> TuneResult | None:
        """This runner's stored result of the work ``key`` names (``whose``: "this work"), if any; an
        unusable one is discarded, saying so and what happens instead (``doing``). None under
        ``--aitune-rebuild`` or with the cache off."""
        cache = self._result_cache()
        if cache is None or self.options.rebuild:
            return None
        try:
            return cache.read(key)
        except CacheEntryError as exc:
            cache.discard(key)
            self.progress(f"{self.name}: the stored result of {whose} is unusable ({exc}); discarded, {doing}")
            return None

    def _stored_result(self, key: str, backends: list[str]) -> TuneResult | None:
        """This runner's earlier result of the work ``key`` names, when it may answer for this run's tune.

        It may when every backend this run tunes, and no other, ran accurately or was unavailable
        there. Not under ``--aitune-rebuild``; never when the cache is off.
        """
        stored = self._read_stored(key, "this work", "tuning")
        if stored is None:
            return None
        why = _why_not_reusable(stored, backends)
        if why:
            self.progress(f"{self.name}: the stored result of this work is not reused ({why}); tuning")
            return None
        self.progress(
            f"{self.name}: this runner tuned the same work at {_when(stored.created_at)}; its result stands "
            "for this run, nothing is built or timed (--aitune-rebuild tunes)"
        )
        return replace(stored, name=self.name, result_reused=True)

    def _stored_part_choice(self, key: str, backends: list[str]) -> PartChoice | None:
        """The backends that this runner's stored tune of the base's work (the nightly's) chose for its
        parts, so that the base does not measure each part again (``engine.PartChoice``).

        Only a part whose stored tune tried every backend of this run counts: a nightly run with
        fewer (``--aitune-backends``, ``-k``) chose from fewer, under the same work key, and a head
        choosing from more would then look faster for it. A choice is no latency figure, so taking
        it from another process compares nothing across processes; the mixed model built from it is
        measured and paired with the head's here.
        """
        stored = self._read_stored(key, "the base's work", "the base's parts are measured")
        if stored is None or not stored.module_choice:
            return None
        tried = {(row.module, row.backend) for row in stored.backends if row.module}
        wanted = set(backends) - {MIXED}  # a result row, not a backend a part can take
        choice = {part: b for part, b in stored.module_choice.items() if all((part, w) in tried for w in wanted)}
        if choice != dict(stored.module_choice):
            left = ", ".join(sorted(set(stored.module_choice) - set(choice)))
            self.progress(
                f"base · {self.name}: this runner's stored tune of the same work did not try every backend of this "
                f"run on {left}, so the base measures them"
            )
        if not choice:
            return None
        return PartChoice(choice, f"this runner's tune of the same work at {_when(stored.created_at)}")

    def _store_result(self) -> None:
        """Keep this tune's result for the next check of the same work (``store.result_cache``), under
        its work key where this run took one (``_key_of_tune``).

        Not over a stored tune of the same work that tuned more rows: a run deselected with ``-k``
        keeps the key, and its result would evict the nightly's, which answers full runs.
        """
        cache, result, key = self._result_cache(), self.result, self._work_key
        if cache is None or result is None or key is None:
            return
        try:
            kept = cache.read(key)
        except CacheEntryError:
            kept = None  # replaced below
        if kept is not None and _whole_model_rows(kept) > _whole_model_rows(result):
            return
        try:
            cache.store(key, result)
        except Exception as exc:  # a full disk: the tune stands
            self.progress(f"{self.name}: result not stored in the result cache ({type(exc).__name__}: {exc})")

    def _judge_identical(self, base: BaseSide | None, note: str) -> None:
        """The same work on both sides, so each working backend passes untimed, saying why (``note``).

        Relative mode (``base``): the base does the head's work; a backend that did not work is judged
        as the base's run would judge it (it is this run). Stored mode: the baseline's latest update
        did this work; a backend that did not work, or a row that update did not write (a mixed
        model it did not build), is judged against the baseline as usual.
        """
        result = self.result
        assert result is not None
        reference = Baseline.from_result(result) if base is not None else self.baseline
        env_diff = (
            environment_differences(dict(reference.environment), dict(result.environment))
            if base is None and reference is not None
            else {}
        )
        verdicts = []
        for row in result.backends:
            if row.module:
                continue
            if row.status is BackendStatus.OK and not row.review and (base is not None or self._holds(row.backend)):
                median = row.latency.median_ms if row.latency is not None else None
                entry = reference.backends.get(row.backend) if base is None and reference is not None else None
                verdict = Verdict(
                    self.name,
                    row.backend,
                    VerdictKind.PASS,
                    baseline_median_ms=entry.latency.median_ms if entry and entry.latency else None,
                    current_median_ms=median,
                    notes=(note,),
                    identical_to_base=True,
                )
            else:
                verdict = self._judge_row(row, env_diff, baseline=reference)
            if base is not None:
                verdict = replace(verdict, mode=VerdictMode.RELATIVE, base_ref=base.ref)
            verdicts.append(with_message(verdict))
        for verdict in apply_run_correction(verdicts):
            self.verdicts[verdict.backend] = verdict

    def _holds(self, backend: str) -> bool:
        """Stored mode: whether the baseline's row of ``backend`` holds figures of the work its latest
        update tuned (that update wrote it, and it worked there)."""
        baseline = self.baseline
        entry = baseline.backends.get(backend) if baseline is not None else None
        work = baseline.work if baseline is not None else None
        return entry is not None and entry.worked and work is not None and backend in work.backends

    def _pair(self, base_result: TuneResult, backend: str) -> Callable[[], Any] | None:
        """Measures base (A) against head (B) of ``backend`` once more; None when either was not built."""
        head = self.result
        assert head is not None and head.runtime is not None and base_result.runtime is not None
        old, new = base_result.runtime.built.get(backend), head.runtime.built.get(backend)
        if old is None or new is None:
            return None
        old_args, old_kwargs = base_result.runtime.samples[0]
        args, kwargs = head.runtime.samples[0]
        device, config = head.device, head.runtime.measure_config

        def pair() -> Any:
            return measure_paired(lambda: old(*old_args, **old_kwargs), lambda: new(*args, **kwargs), device, config)

        return pair

    # -- reuse ----------------------------------------------------------------------------------
    def _build_cache(
        self, spec: TuneSpec, label: str, allowed: frozenset[tuple[str, str]] | None = None
    ) -> FixtureBuilds | None:
        """The runner's build cache for one tune (``store.build_cache``); None when it is off.

        Read unless ``--aitune-rebuild`` or an update asks for fresh builds; written always, so a
        nightly's fresh builds are what the next PR check loads (a fresh build replaces an entry).
        """
        root = resolve_cache_dir(self.options.cache_dir)
        if root is None:
            return None
        keys = BuildKeys(spec.model, spec.dtype, spec.normalized_samples, spec.resolved_device)
        read = not (self.options.rebuild or self.options.writes_baselines)
        return FixtureBuilds(BuildCache(root), keys, read=read, progress=self.progress, label=label, allowed=allowed)

    # -- artifacts ------------------------------------------------------------------------------
    def artifact_path(self) -> Path:
        return self.options.directory / "artifacts" / self.hardware / f"{self.name}.ait"

    def _reusable_artifact(self, backends: list[str]) -> dict[str, Any]:
        """The committed artifact's winner, loaded instead of rebuilt when nothing it depends on changed.

        "Nothing changed" is the spec hash, which covers what a build key covers
        (:mod:`aitune_ci.store.build_inputs`). Opt-in (``--aitune-reuse``): the runner's build
        cache is the default reuse, and a winner loaded from the artifact loses its paired A/B
        against that same artifact. ``--aitune-rebuild`` and updates build.
        """
        baseline, options = self.baseline, self.options
        if not options.reuse or options.rebuild or options.writes_baselines:
            return {}
        if baseline is None or baseline.winner not in backends:
            return {}
        try:
            loaded = self._committed_winner(self.artifact_path(), baseline, self.spec)
        except AituneCIError as exc:
            self.progress(f"{self.name}: committed artifact not reused ({exc})")
            return {}
        if loaded is None:
            return {}
        self.reused = baseline.winner
        self.progress(f"{self.name} · {baseline.winner}: nothing changed since the baseline; reusing its artifact")
        return {baseline.winner: loaded}

    def _base_artifact(
        self, base: BaseSide, backends: list[str], head_loaded: frozenset[tuple[str, str]]
    ) -> dict[str, Any]:
        """Relative mode: the base checkout's committed artifact (the nightly's build of the base's
        winner), pinned by the base's baseline, loaded when its spec hash matches the base's spec
        and the head loaded its own build of that backend too (a pair never mixes routes).

        Sound by the same rule as the build cache; there is no paired A/B against the baseline's
        artifact to lose (relative mode pairs base and head). ``--aitune-rebuild`` builds.
        """
        if base.directory is None or self.options.rebuild or not head_loaded:
            return {}
        try:
            baseline = BaselineStore(base.directory / "baselines").read(self.hardware, self.name)
        except DataFileError as exc:
            self.progress(f"base · {self.name}: the base's baseline cannot be read ({exc}); building")
            return {}
        if baseline is None or baseline.winner not in backends or ("", baseline.winner) not in head_loaded:
            return {}
        path = base.directory / "artifacts" / self.hardware / f"{self.name}.ait"
        try:
            loaded = self._committed_winner(path, baseline, base.spec)
        except AituneCIError as exc:
            self.progress(f"base · {self.name}: the base's committed artifact not used ({exc})")
            return {}
        if loaded is None:
            return {}
        self.progress(f"base · {self.name} · {baseline.winner}: loading the nightly's committed artifact of the base")
        self._base_loaded_from = (path, str(baseline.artifact_sha256))  # _committed_winner needs a pin
        return {baseline.winner: loaded}

    def _committed_winner(self, path: Path, baseline: Baseline, spec: TuneSpec) -> Any | None:
        """The winner of the artifact at ``path``, pinned by ``baseline``'s sha256, loaded on ``spec``'s
        model; None when there is none or its spec hash differs from ``spec``'s (something it
        depends on changed). Raises AituneCIError when it cannot be read or loaded.
        """
        if not baseline.artifact_sha256 or not path.is_file():
            return None
        wanted = spec_hash(spec, self.backends, fingerprint(spec.resolved_device))
        manifest = inspect_artifact(path, verify=False)
        if manifest.get("spec_hash") != wanted:
            return None
        held = _held_instead_of_winner(manifest, baseline)
        if held is not None:
            self.progress(f"{self.name}: {path.name} holds {held}, not the winner {baseline.winner}; building instead")
            return None
        return load(path, copy.deepcopy(spec.model), expected_sha256=baseline.artifact_sha256).runner

    def _paired_with_baseline_artifact(self) -> dict[str, Any]:
        """Time the baseline's own artifact and this build interleaved, in this process (A/B, ABBA / BAAB pairs).

        Drift that hits both alike cancels in the ratio, which is far steadier than comparing two
        medians taken on different days. Used for the backend the artifact holds (the baseline's
        winner); any reason it cannot be loaded here is reported and the medians are used instead.
        """
        baseline, result = self.baseline, self.result
        assert result is not None
        if baseline is None or not baseline.artifact_sha256 or not baseline.winner or self.options.update:
            return {}
        backend = baseline.winner
        if self.reused == backend:
            return {}  # this run's build *is* the baseline artifact: A/B against itself says nothing
        if not _payload_is_compiled(backend, baseline.module_choice):
            # A JIT backend's artifact is weights (+ a compile cache): loaded, it runs today's model
            # code, so A/B against it could not see a regression in that code. Medians are used.
            return {}
        new = result.runtime.built.get(backend) if result.runtime is not None else None
        path = self.artifact_path()
        if new is None or not path.is_file():
            return {}
        try:
            held = _held_instead_of_winner(inspect_artifact(path, verify=False), baseline)
            if held is not None:
                self.progress(f"{self.name} · {backend}: no paired A/B: {path.name} holds {held}, not {backend}")
                return {}
            old = load(path, copy.deepcopy(self.spec.model), expected_sha256=baseline.artifact_sha256).runner
        except AituneCIError as exc:
            self.progress(f"{self.name} · {backend}: no paired A/B against the baseline artifact ({exc})")
            return {}
        args, kwargs = result.runtime.samples[0]
        device, config = result.device, result.runtime.measure_config

        def pair() -> Any:
            return measure_paired(lambda: old(*args, **kwargs), lambda: new(*args, **kwargs), device, config)

        try:
            estimate = pair()
        except Exception as exc:  # the old artifact may not run on today's inputs or code
            self.progress(f"{self.name} · {backend}: paired A/B failed ({type(exc).__name__}: {exc})")
            return {}
        self.progress(f"{self.name} · {backend}: paired A/B vs baseline artifact: {_estimate_text(estimate)}")
        return {backend: (estimate, pair)}

    def _with_load_timing(
        self,
        result: TuneResult,
        spec: TuneSpec,
        path: Path | None = None,
        sha256: str | None = None,
        *,
        loaded_from: tuple[Path, str] | None = None,
        label: str = "",
        side: str = "head",
    ) -> TuneResult:
        """``result`` with its winner's ``load_s`` and ``first_call_ms``: ``ait.load`` of its artifact, then one call.

        ``path`` is the artifact an update just wrote; ``loaded_from`` the committed artifact (and its
        sha256) a winner was loaded from instead of built, timed as it is: such a build cannot be saved
        again, its payload lived in the load's temporary folder. Otherwise the winner is saved to a
        temporary file first. Timed in this process, after the build: compile caches are warm, so it is what
        a serving process with a warm cache pays, not a cold start. Failing to save or load is
        reported and leaves the row unmeasured (the artifact tests and ``--aitune-update`` judge that).
        The artifact is kept until the fixture is judged, so that ``side``'s load can be timed again.
        """
        winner = result.winner
        row = result.backend(winner) if winner is not None else None
        if row is None or result.runtime is None:
            return result
        from_committed = loaded_from is not None and row.reused == "artifact"
        if loaded_from is not None and from_committed:
            path, sha256 = loaded_from
        try:
            target, pin = path, sha256
            if target is None or pin is None:
                tmp = tempfile.mkdtemp(prefix="aitune-load-")
                self._load_dirs.append(tmp)
                target = Path(tmp) / f"{self.name}.ait"
                pin = save_for_load_timing(result, target).sha256
            load_s, first_call_ms = _time_load(target, spec, result, pin)
            self._load_timers[side] = lambda: _time_load(target, spec, result, pin)
        except Exception as exc:  # timing must not turn a working tune into an error
            self.progress(f"{label}{self.name} · {winner}: artifact load not timed ({type(exc).__name__}: {exc})")
            return result
        source = " (the committed artifact it was loaded from)" if from_committed else ""
        self.progress(
            f"{label}{self.name} · {winner}: artifact loads in {load_s:.2f} s, first call {first_call_ms:.1f} ms{source}"
        )
        return _with_load(result, row, load_s, first_call_ms)

    def _load_suspects(
        self, winner: str, load_s: float | None, first_call_ms: float | None, row: BackendResult
    ) -> list[Any]:
        """The load-time and first-call checks of ``row`` against the other side's values that regressed."""
        policy = self.repo_config.policy_for(self.name, winner)
        checks = (
            judge_metric("load_time", load_s, row.load_s, policy.gate("load_time")),
            judge_metric("first_call", first_call_ms, row.first_call_ms, policy.gate("first_call")),
        )
        return [check for check in checks if check is not None and check.regressed]

    def _confirm_load_timing(self, head: TuneResult, base: TuneResult) -> tuple[TuneResult, TuneResult]:
        """Relative mode: a load-time or first-call regression of the shared winner, timed once per side,
        is timed twice more on each side (base, head, head, base) and judged on each side's median.

        One load is one sample: on the H200 the BERT encoder's inductor artifact read 0.90x to 1.40x
        between head and base of the same computation (a refactor, comment-only PRs), against a gate of
        +50%. Re-timed only when suspected, so a passing check pays nothing.
        """
        winner = head.winner
        rows = (head.backend(winner), base.backend(winner)) if winner and winner == base.winner else (None, None)
        timers = self._load_timers.get("head"), self._load_timers.get("base")
        if rows[0] is None or rows[1] is None or timers[0] is None or timers[1] is None:
            return head, base
        h_row, b_row = rows
        suspects = self._load_suspects(winner, b_row.load_s, b_row.first_call_ms, h_row)
        if not suspects:
            return head, base
        self.progress(
            f"{self.name} · {winner}: {' and '.join(c.text() for c in suspects)}, one load each; "
            "timing each side's load twice more (base, head, head, base)"
        )
        readings = {"head": [(h_row.load_s, h_row.first_call_ms)], "base": [(b_row.load_s, b_row.first_call_ms)]}
        medians = self._time_loads_again(winner, readings, ("base", "head", "head", "base"))
        if medians is None:
            return head, base
        self.progress(
            f"{self.name} · {winner}: median of 3 loads: base loads in {medians['base'][0]:.2f} s, first call "
            f"{medians['base'][1]:.1f} ms; head {medians['head'][0]:.2f} s, {medians['head'][1]:.1f} ms"
        )
        return _with_load(head, h_row, *medians["head"]), _with_load(base, b_row, *medians["base"])

    def _confirm_stored_load_timing(self, result: TuneResult) -> TuneResult:
        """Stored mode: a load time or first call past its gate against the baseline is timed twice more
        and judged on the median of three, which is what ``--aitune-update`` stores (``_median_of_three_loads``)."""
        winner, baseline = result.winner, self.baseline
        entry = baseline.backends.get(winner) if baseline is not None and winner is not None else None
        row = result.backend(winner) if winner is not None else None
        if entry is None or row is None:
            return result
        suspects = self._load_suspects(winner, entry.metrics.load_s, entry.metrics.first_call_ms, row)
        if not suspects:
            return result
        self.progress(
            f"{self.name} · {winner}: {' and '.join(c.text() for c in suspects)} in one load; timing it twice more"
        )
        return self._median_of_three_loads(result)

    def _median_of_three_loads(self, result: TuneResult) -> TuneResult:
        """``result`` with its winner's load time and first call the medians of its load timed twice more."""
        winner = result.winner
        row = result.backend(winner) if winner is not None else None
        if winner is None or row is None or "head" not in self._load_timers:
            return result
        if row.load_s is None or row.first_call_ms is None:
            return result
        medians = self._time_loads_again(winner, {"head": [(row.load_s, row.first_call_ms)]}, ("head", "head"))
        if medians is None:
            return result
        load_s, first_call_ms = medians["head"]
        self.progress(
            f"{self.name} · {winner}: median of 3 loads: loads in {load_s:.2f} s, first call {first_call_ms:.1f} ms"
        )
        return _with_load(result, row, load_s, first_call_ms)

    def _time_loads_again(
        self, winner: str, readings: dict[str, list[tuple[float, float]]], order: Sequence[str]
    ) -> dict[str, tuple[float, float]] | None:
        """Each side's winner load timed again in ``order``, added to its ``readings``; each side's
        medians, or None when a load fails (the single readings stand, and a line says why)."""
        try:
            for side in order:
                readings[side].append(self._load_timers[side]())
        except Exception as exc:
            self.progress(f"{self.name} · {winner}: load not timed again ({type(exc).__name__}: {exc})")
            return None
        return {side: _median_load(values) for side, values in readings.items()}

    def _drop_load_artifacts(self) -> None:
        self._load_timers.clear()
        for folder in self._load_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._load_dirs.clear()

    # -- baselines ------------------------------------------------------------------------------
    def _writes_baseline(self) -> bool:
        """Whether this run writes the fixture's baseline: ``--aitune-update``, or ``--aitune-update-new-only``
        where there is none yet (an unreadable one is not replaced by it)."""
        options = self.options
        if self.baseline_error is not None and self.baseline_error.written_by_newer:
            return False  # what a newer aitune-ci keeps in it would be lost (see outcome)
        return options.update or (options.update_new_only and self.baseline is None and self.baseline_error is None)

    def _maybe_update(self) -> None:
        if not self._writes_baseline():
            return
        assert self.result is not None
        previous = self.baseline if self.baseline_error is None else None
        sha = self._save_artifact()
        if sha is not None:
            self.result = self._with_load_timing(self.result, self.spec, self.artifact_path(), sha)
            self.result = self._median_of_three_loads(self.result)  # what stored checks compare with
        # Entries of backends the spec no longer lists go (their items would be planned and skipped for
        # ever); self.backends is not used for that, as --aitune-backends may have filtered it.
        declared = list(self.spec.backends) if self.spec.backends is not None else None
        baseline = Baseline.from_result(
            self.result, previous, artifact_sha256=sha, declared=declared, work_key=self._work_key
        )
        path = self.store.write(baseline)
        self.updated = True
        warning = contended_update_warning(self.name, self.result.backends)
        if warning:
            self.progress(warning)
        if self.baseline_error is not None:
            self.progress(
                f"{self.name}: replaced an unreadable baseline ({self.baseline_error.problem}); "
                "the run history it held is not carried over"
            )
        self.progress(f"{self.name}: baseline written to {path}")

    def _save_artifact(self) -> str | None:
        """Write the winner as ``.aitune/artifacts/<hw>/<fixture>.ait``; its sha256 goes in the baseline."""
        result = self.result
        assert result is not None
        if result.winner is None:
            return None
        path = self.artifact_path()
        try:
            info = save(result, path, spec_hash=spec_hash(self.spec, self.backends, result.environment))
        except AituneCIError as exc:
            self.progress(f"{self.name}: no artifact written for {result.winner}: {exc}")
            return None
        self.progress(f"{self.name}: artifact written to {path} ({info.size_bytes / 1e6:.1f} MB)")
        return info.sha256

    # -- answers --------------------------------------------------------------------------------
    def outcome(self, check: str) -> CheckOutcome:
        """The outcome of item ``fixture[check]`` (``check`` is a backend name or ``selection``)."""
        if self.error:
            return CheckOutcome(Outcome.FAILED, self.error)
        if self.baseline_error is not None and self.baseline_error.written_by_newer and self.options.writes_baselines:
            return CheckOutcome(
                Outcome.FAILED,
                f"{self.baseline_error.path}: {self.baseline_error.problem}, so a newer aitune-ci wrote it; not "
                "overwritten, as that would lose what it keeps (its run history among them). To fix: upgrade "
                "aitune-ci on this runner, or delete the file to start its baseline over",
            )
        if self.baseline_error is not None and not self.options.update:
            return CheckOutcome(Outcome.FAILED, f"{self.baseline_error}")
        if check == SELECTION:
            return self._selection_outcome()
        return self._backend_outcome(check)

    def _backend_outcome(self, backend: str) -> CheckOutcome:
        if self.baseline is None and self.options.strict and not self.updated:
            return CheckOutcome(
                Outcome.FAILED,
                f"{self.name}[{backend}]: no baseline for this hardware and --aitune-strict is set. Create it with:\n"
                f"    {update_command(self.name, new_only=True)}",
            )
        verdict = self.verdicts.get(backend)
        if verdict is None:
            return CheckOutcome(Outcome.FAILED, f"{self.name}: backend {backend!r} was not tuned")
        if verdict.kind == VerdictKind.SKIPPED:
            return CheckOutcome(Outcome.SKIPPED, verdict.message, verdict)
        if self.updated:
            return CheckOutcome(Outcome.PASSED, f"baseline updated (was {verdict.kind} against the old one)", verdict)
        return CheckOutcome(Outcome.FAILED if verdict.fails else Outcome.PASSED, verdict.message, verdict)

    def _committed_artifact_problem(self) -> str | None:
        """Why the committed ``.ait`` is not the file the baseline pins by sha256, or None.

        Checked on every run, whether or not anything loads the artifact: a check answered without
        tuning never opens it, and a tampered, truncated or LFS-pointer file used to pass unseen.
        A missing file is no problem (a repo may commit manifests only).
        """
        path, baseline = self.artifact_path(), self.baseline
        if baseline is None or not baseline.artifact_sha256 or not path.is_file():
            return None
        fix = f"restore it (`git checkout -- {path}`), or rebuild it with `{update_command(self.name)}`"
        try:
            with path.open("rb") as fh:
                head = fh.read(len(LFS_POINTER_PREFIX))
                fh.seek(0)
                found = file_sha256(fh)
        except OSError as exc:
            return f"the committed artifact {path} cannot be read ({exc}): {fix}"
        if head == LFS_POINTER_PREFIX:
            return (
                f"the committed artifact {path} is a Git LFS pointer, not the artifact: fetch LFS objects on this "
                "runner (`lfs: true` in actions/checkout, or `git lfs pull`)"
            )
        if found != baseline.artifact_sha256:
            return (
                f"the committed artifact {path} has sha256 {found[:12]}…, but its baseline records "
                f"{baseline.artifact_sha256[:12]}…: it was changed or replaced after the baseline was written, and "
                f"nothing may load it. To fix: {fix}"
            )
        return None

    @property
    def winner_change(self) -> str | None:
        """``winner changed: onnxruntime -> eager (…)`` against the baseline, or None (every report shows it)."""
        if self.result is None or self.baseline is None:
            return None
        return winner_change(self.baseline, self.result)

    def _missing_artifact_note(self) -> str | None:
        """What is lost when the artifact the baseline pins is not there (not a failure: a repo may
        commit baselines without their binaries), or None. A deleted file used to pass unmentioned."""
        path, baseline = self.artifact_path(), self.baseline
        if baseline is None or not baseline.artifact_sha256 or path.exists():
            return None
        return (
            f"note: the baseline pins the artifact {path} (sha256 {baseline.artifact_sha256[:12]}…), which is not "
            "there, so nothing is timed against it and nothing loads from it. Restore it (`git checkout -- "
            f"{path}` if only the working tree lost it, `git checkout $(git rev-list -n 1 HEAD -- {path})~1 -- "
            f"{path}` if a commit deleted it, `git lfs pull` if LFS objects were not fetched), or rebuild it with "
            f"`{update_command(self.name)}`"
        )

    def _selection_outcome(self) -> CheckOutcome:
        result = self.result
        assert result is not None
        if self.artifact_problem:
            return CheckOutcome(Outcome.FAILED, f"{self.name}: {self.artifact_problem}")
        if result.winner is None:
            return CheckOutcome(Outcome.FAILED, f"{self.name}: no backend could be selected — {result.winner_reason}")
        text = f"{self.name}: winner {result.winner} ({result.winner_reason})"
        changed = self.winner_change
        if changed:
            text += f"; {changed}"
        return CheckOutcome(Outcome.PASSED, text)
