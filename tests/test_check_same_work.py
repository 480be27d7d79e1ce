"""Which rows of a fixture doing work already tuned pass untimed, and what its work key covers (``check``).

Milliseconds: a ``FixtureCheck`` judged on a crafted result, nothing tuned. The end-to-end runs are in
tests/plugin/test_plugin_stored_same_work.py (stored mode) and test_plugin_relative.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from synthetic_latency import stats

import aitune_ci as ait
from aitune_ci.check import SAME_AS_BASELINE_NOTE, SAME_WORK_NOTE, BaseSide, CheckOptions, FixtureCheck
from aitune_ci.config import RepoConfig
from aitune_ci.result import AccuracyReport, BackendResult, LeafMetrics, TuneResult
from aitune_ci.status import VerdictKind
from aitune_ci.store.baseline import Baseline
from aitune_ci.store.result_cache import ResultCache

KEY = "ab" * 32
REVIEW = "5.0x faster than the best other backend (eager); acknowledge it in [tool.aitune.acknowledged]"


def _row(backend: str, *, status: str = "ok", review: str | None = None) -> BackendResult:
    leaf = LeafMetrics("out", (4,), 1e-6, 1e-6, 1e-7, 1.0, math.inf, 1.0, 0, 0, True)
    ok = status == "ok"
    return BackendResult(
        backend=backend,
        status=status,
        latency=stats() if ok else None,
        accuracy=AccuracyReport(True, "fp32", "allclose", (leaf,)) if ok else None,
        error=None if ok else "not installed",
        review=review,
    )


def _result(*rows: BackendResult) -> TuneResult:
    return TuneResult(
        name="tune_x",
        strategy="min-latency",
        device="cpu",
        backends=rows,
        winner="eager",
        winner_reason="fastest correct",
        environment={"hardware_key": "cpu-test", "torch": torch.__version__},
    )


def _check(tmp_path, config: RepoConfig | None = None, backends=("eager", "fast", "late")) -> FixtureCheck:
    spec = ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], device="cpu")
    names = list(backends)
    return FixtureCheck("tune_x", spec, names, set(names), CheckOptions(tmp_path), config or RepoConfig(), print)


def _verdicts(check: FixtureCheck) -> dict[str, tuple[VerdictKind, bool]]:
    return {name: (v.kind, v.identical_to_base) for name, v in check.verdicts.items()}


def test_stored_mode_passes_untimed_only_rows_the_update_wrote_that_worked_and_none_flagged(tmp_path):
    # The nightly wrote eager and fast (both worked) and late (unavailable there); this run finds all
    # three working, and fast flagged as implausibly fast under this run's sanity check.
    nightly = _result(_row("eager"), _row("fast"), _row("late", status="unavailable"))
    check = _check(tmp_path)
    check.baseline = Baseline.from_result(nightly, None, work_key=KEY)
    check.result = _result(_row("eager"), _row("fast", review=REVIEW), _row("late"))

    check._judge_identical(None, SAME_AS_BASELINE_NOTE)

    assert check.verdicts["eager"].kind is VerdictKind.PASS and check.verdicts["eager"].identical_to_base
    assert check.verdicts["eager"].notes == (SAME_AS_BASELINE_NOTE,)
    flagged = check.verdicts["fast"]  # a full check would fail it until acknowledged: so does this one
    assert flagged.kind is VerdictKind.FAILED and not flagged.identical_to_base
    assert flagged.notes[0].startswith("flagged for review: 5.0x faster")
    late = check.verdicts["late"]  # the baseline holds no figures of it: judged as a full check would
    assert not late.identical_to_base and late.kind is not VerdictKind.FAILED


def test_relative_mode_fails_a_flagged_row_too(tmp_path):
    check = _check(tmp_path)
    check.result = _result(_row("eager"), _row("fast", review=REVIEW), _row("late"))

    check._judge_identical(BaseSide(check.spec, "main (1a2b3c4d5e6f)"), SAME_WORK_NOTE)

    assert _verdicts(check) == {
        "eager": (VerdictKind.PASS, True),
        "fast": (VerdictKind.FAILED, False),
        "late": (VerdictKind.PASS, True),
    }
    assert check.verdicts["fast"].base_ref == "main (1a2b3c4d5e6f)"


@pytest.mark.parametrize(
    "table",
    [
        {"max_plausible_speedup": 5.0},
        {"sqnr_ceiling_db": 60.0},
        {"acknowledged": {"tune_x[fast]": "int8 kernels, #42"}},
    ],
)
def test_the_work_key_covers_the_sanity_check_that_judges_the_tune(tmp_path, table):
    # A result flagged for review (or not) under one [tool.aitune] must not answer for a run under another.
    spec = _check(tmp_path).spec
    default = _check(tmp_path)._work_key_of(spec)
    assert _check(tmp_path)._work_key_of(spec) == default
    assert _check(tmp_path, RepoConfig.from_table(table))._work_key_of(spec) != default


def test_stored_mode_takes_no_key_from_an_edited_baseline_and_says_so(tmp_path):
    lines: list[str] = []
    check = _check(tmp_path)
    check.progress = lines.append
    nightly = Baseline.from_result(_result(_row("eager")), None, work_key=check._work_key_of(check.spec))
    check.baseline = Baseline.from_json(nightly.to_json(), "tune_x.json")
    assert check._work_key_against_baseline(["eager"]) == (nightly.work.key, True)

    edited = nightly.to_dict()
    edited["backends"]["eager"]["latency"]["median_ms"] /= 2
    check.baseline = Baseline.from_json(edited, "tune_x.json")

    assert check._work_key_against_baseline(["eager"]) == (None, False)
    assert lines[-1] == "tune_x: the baseline was edited since its latest update recorded its work; checked against it"

    check.baseline = replace(nightly, work=replace(nightly.work, key="0" * 64))
    assert check._work_key_against_baseline(["eager"])[1] is False
    assert "not the work the baseline's latest update tuned" in lines[-1]


def test_a_deselected_run_does_not_evict_the_stored_tune_of_more_rows(tmp_path):
    # A -k run of the same work keeps the key: its result must not replace the nightly's, which
    # answers full runs. A tune of as many rows or more replaces it.
    def store(*rows: BackendResult) -> None:
        check = FixtureCheck(
            "tune_x", spec, ["eager", "fast"], {"eager", "fast"}, CheckOptions(tmp_path, cache_dir=tmp_path / "c"),
            RepoConfig(), print,
        )  # fmt: skip
        check.result, check._work_key = _result(*rows), KEY
        check._store_result()

    spec = _check(tmp_path).spec
    cache = ResultCache(tmp_path / "c")
    store(_row("eager"), _row("fast"))
    store(_row("eager"))
    assert [r.backend for r in cache.read(KEY).backends] == ["eager", "fast"]
    store(_row("eager"), _row("fast", status="unavailable"))
    assert cache.read(KEY).backend("fast").status == "unavailable"
