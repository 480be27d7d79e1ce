"""Quiet by default: warnings raised while tuning make one summary line (``-v``: one line each), the run
JSON carries them, the user's own tests keep pytest's warning handling, and torch's trace records
stay out of captured logs."""

from __future__ import annotations

import json
import logging
import re

import pytest

from aitune_ci.caught_warnings import COLLECTION, TUNING, CaughtWarning, merge_warnings, summary_line
from aitune_ci.store.runs import load_run, merge_runs

#: A third-party package (on sys.path through the repo root) whose code warns: where tuning's
#: warnings really come from (torch, torchvision, transformers).
_THIRD_PARTY = """
import warnings


def noisy(x):
    warnings.warn("noisy() is deprecated", DeprecationWarning, stacklevel=1)
    return x


def announce():
    warnings.warn("thirdparty: building with defaults", UserWarning, stacklevel=1)
"""

_NOISY_FIXTURE = """
import torch
import aitune_ci as ait
import thirdparty


class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.lin(thirdparty.noisy(x))


@ait.tune_fixture
def tune_noisy():
    thirdparty.announce()
    return ait.TuneSpec(model=Noisy(), samples=[torch.randn(2, 8)], backends=["eager"], device="cpu")
"""

_USER_TEST = """
import warnings


def test_users_own():
    warnings.warn("the user's own deprecation", DeprecationWarning)
"""

_SUMMARY = re.compile(
    r"^aitune: (?P<total>[\d,]+) warnings from thirdparty \((?P=total)\) while tuning; -v shows them(?P<report>.*)$"
)


@pytest.fixture
def noisy(project):
    project.write("thirdparty/__init__.py", _THIRD_PARTY)
    project.write("conftest.py", _NOISY_FIXTURE)
    project.write("test_user.py", _USER_TEST)
    return project


def _summary_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if re.match(r"aitune: [\d,]+ warnings? from ", line)]


def test_tuning_warnings_are_one_summary_line_and_the_json_keeps_them(noisy):
    result = noisy.tune("--aitune-report", "run.json")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=3, warnings=1)  # the one warning pytest counts is the user's own
    out = result.stdout.str()
    # pytest's warnings summary holds the user's test only: nothing raised inside aitune's work
    block = out[out.index("warnings summary") : out.index("-- Docs: https://docs.pytest.org")]
    assert "test_user.py::test_users_own" in block and "the user's own deprecation" in block
    assert "thirdparty" not in block and "noisy()" not in block
    # ... and aitune says it in one line, pointing to -v and the report
    (line,) = _summary_lines(result)
    match = _SUMMARY.match(line)
    assert match, line
    assert match.group("report") == ", the report lists them"
    assert "noisy() is deprecated" not in out  # the details wait for -v

    run = load_run(noisy.path / "run.json")
    caught = {w["message"]: w for w in run["warnings"]}
    assert set(caught) == {"noisy() is deprecated", "thirdparty: building with defaults"}
    tuning, built = caught["noisy() is deprecated"], caught["thirdparty: building with defaults"]
    assert tuning["category"] == "DeprecationWarning" and tuning["phase"] == TUNING
    assert tuning["package"] == "thirdparty" and tuning["filename"] == "thirdparty/__init__.py"
    assert tuning["lineno"] == 6 and tuning["fixtures"] == ["tune_noisy"]
    assert tuning["count"] > 10  # every call of the model warns: validation, warm-up, rounds
    # raised once, where the fixture was called: at collection (or, for a fixture planned from cache, when tuned)
    assert built["category"] == "UserWarning" and built["count"] == 1 and built["phase"] in (COLLECTION, TUNING)
    assert int(match.group("total").replace(",", "")) == tuning["count"] + built["count"]


def test_verbose_lists_each_distinct_warning(noisy):
    result = noisy.tune("-v")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (line,) = _summary_lines(result)
    assert line.endswith("while tuning:") and "-v shows them" not in line
    result.stdout.fnmatch_lines_random(
        [
            "  *x DeprecationWarning: noisy() is deprecated [[]thirdparty/__init__.py:6, tuning tune_noisy[]]",
            "      1x UserWarning: thirdparty: building with defaults [[]thirdparty/__init__.py:11, *[]]",
        ]
    )


def test_the_users_error_filter_still_fails_their_own_test_but_not_a_tuning_check(noisy):
    """``-W error::DeprecationWarning`` is for the user's code: torch's deprecations must not fail a backend."""
    result = noisy.tune("-W", "error::DeprecationWarning", "-rf")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_user.py::test_users_own - DeprecationWarning: the user's own*"])
    assert noisy.verdicts(result) == {"tune_noisy[eager]": "NEW"}
    (line,) = _summary_lines(result)
    assert _SUMMARY.match(line), line


def test_an_ignore_filter_still_silences_a_warning_inside_tuning(noisy):
    noisy.configure(ini='filterwarnings = ["ignore:noisy\\\\(\\\\) is deprecated"]')

    result = noisy.tune("-v")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (line,) = _summary_lines(result)
    assert line == "aitune: 1 warning from thirdparty (1) while tuning:"
    assert "noisy() is deprecated" not in result.stdout.str()


def test_disable_warnings_hides_our_line_too_but_the_json_keeps_them(noisy):
    result = noisy.tune("--disable-warnings", "--aitune-report", "run.json")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert _summary_lines(result) == [] and "warnings summary" not in result.stdout.str()
    assert {w["message"] for w in load_run(noisy.path / "run.json")["warnings"]} == {
        "noisy() is deprecated",
        "thirdparty: building with defaults",
    }


def test_a_run_without_warnings_prints_no_warning_line(project):
    project.add_fixture("tune_lin")

    result = project.tune()

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert _summary_lines(result) == []
    assert "warnings summary" not in result.stdout.str()


# -- torch's trace records ----------------------------------------------------------------------

#: ``torch._logging.trace_structured`` logs an empty DEBUG record to the non-propagating
#: ``torch.__trace`` logger, which pytest >= 9.1 captures like any logger. The model here logs what
#: it logs (no compile needed); the user keeps a handler of their own on that logger, as
#: ``TORCH_TRACE``'s file handler is.
_TRACE_CONFTEST = """
import logging
import torch
import aitune_ci as ait

TRACE = logging.getLogger("torch.__trace")


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


TRACE.addHandler(_Keep())


class Traced(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        TRACE.debug("", extra={"metadata": {"str": "x"}})
        return self.lin(x)


@ait.tune_fixture
def tune_traced():
    return ait.TuneSpec(model=Traced(), samples=[torch.randn(2, 8)], backends=["eager"], device="cpu")
"""

_TRACE_USER_TEST = """import logging


def test_users_own_trace_record_is_still_captured():
    logging.getLogger("torch.__trace").debug("users-own-record")
    assert 0, "fail, to show the captured log"
"""


def _failure(out: str, name: str) -> str:
    """The FAILURES section of test ``name``, up to the next section."""
    start = out.index(f"_ {name} _")
    ends = [i for i in (out.find("\n___", start + 1), out.find("\n===", start + 1)) if i != -1]
    return out[start : min(ends)]


def test_trace_records_stay_out_of_an_aitune_items_captured_log(project):
    trace = logging.getLogger("torch.__trace")
    handlers, propagate = list(trace.handlers), trace.propagate
    project.write("conftest.py", _TRACE_CONFTEST)
    project.write("test_user.py", _TRACE_USER_TEST)
    try:
        # --aitune-strict: the fixture has no baseline, so its check fails and shows its captured log
        result = project.tune("--aitune-strict", "--log-level=DEBUG")
        (users_handler,) = [h for h in trace.handlers if h not in handlers]
        after = list(trace.handlers)
    finally:
        for handler in list(trace.handlers):
            if handler not in handlers:
                trace.removeHandler(handler)
        trace.propagate = propagate

    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    aitune_failure = _failure(out, "tune_traced[eager]")
    assert "tune_traced[eager]: no baseline" in aitune_failure
    assert "torch.__trace" not in aitune_failure
    users_failure = _failure(out, "test_users_own_trace_record_is_still_captured")
    assert "DEBUG    torch.__trace:test_user.py:5 users-own-record" in users_failure  # not aitune's: untouched
    assert len(users_handler.records) > 10, "the user's own handler on torch.__trace missed the tuning's records"
    assert users_handler in after and trace.propagate == propagate
    pytests = [h for h in handlers if type(h).__module__.startswith("_pytest")]  # this test's own capture
    assert [h for h in after if type(h).__module__.startswith("_pytest")] == pytests  # the inner run's are gone


@pytest.mark.slow
def test_an_inductor_compile_in_a_failing_check_shows_no_trace_lines(project):
    """The real thing: torch's own trace records of a compile (a plain test that compiles shows them)."""
    pytest.importorskip("torch._inductor")
    project.add_fixture("tune_lin", backends=("eager", "inductor"))
    project.write(
        "test_user.py",
        "import torch\n\n\ndef test_users_compile():\n"
        "    torch.compile(torch.nn.Linear(8, 4))(torch.randn(2, 8))\n    assert 0\n",
    )

    result = project.tune("--aitune-strict", "--log-level=DEBUG", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "torch.__trace" in _failure(out, "test_users_compile")  # pytest captures torch's trace records
    for check in ("tune_lin[eager]", "tune_lin[inductor]"):
        failure = _failure(out, check)
        assert f"{check}: no baseline" in failure
        assert "torch.__trace" not in failure


@pytest.mark.slow
def test_timing_the_load_of_an_inductor_winner_warns_nothing(project):
    """The winner's artifact is loaded pinned by the sha256 this run just wrote: unpinned, its
    compile cache was skipped with an aitune_ci warning on every update of an inductor winner (and
    the first call compiled, which is not what loading a committed artifact costs)."""
    pytest.importorskip("torch._inductor")
    project.add_fixture("tune_lin", backends=("inductor",), spec="strategy=\"one-backend\"")

    result = project.tune("--aitune-update", "--aitune-report", "run.json", "-p", "no:cacheprovider")

    assert result.ret == 0, result.stdout.str()
    run = json.loads((project.path / "run.json").read_text())
    assert not [w for w in run["warnings"] if "compile cache" in w["message"]], run["warnings"]
    (row,) = [b for b in run["results"][0]["backends"] if b["backend"] == "inductor"]
    assert row["load_s"] is not None and row["first_call_ms"] is not None


# -- merging: xdist workers and shards ------------------------------------------------------------


def test_warnings_survive_xdist_workers(noisy):
    """Each worker's warnings reach the controller's summary line and run JSON."""
    pytest.importorskip("xdist")
    noisy.write("test_models.py", _NOISY_FIXTURE.replace("tune_noisy", "tune_other"))

    result = noisy.tune("-n", "2", "--aitune-report", "run.json", subprocess=True)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (line,) = _summary_lines(result)
    assert _SUMMARY.match(line), line
    caught = load_run(noisy.path / "run.json")["warnings"]
    noisy_calls = [w for w in caught if w["message"] == "noisy() is deprecated"]
    assert sorted(f for w in noisy_calls for f in w["fixtures"]) == ["tune_noisy", "tune_other"]
    # a UserWarning shows once per place and filter context (Python's "default" action): at least once here
    assert sum(w["count"] for w in caught if w["message"] == "thirdparty: building with defaults") >= 1
    out = result.stdout.str()
    block = out[out.index("warnings summary") : out.index("-- Docs: https://docs.pytest.org")]
    assert "the user's own deprecation" in block and "thirdparty" not in block and "noisy()" not in block


def _warning(phase: str, count: int, fixtures: tuple[str, ...] = (), message: str = "deprecated") -> CaughtWarning:
    return CaughtWarning("DeprecationWarning", message, "torch/jit/_script.py", 366, "torch", phase, count, fixtures)


def test_merging_keeps_the_largest_collection_count_and_adds_tuning_counts():
    """Every worker and shard evaluates every fixture at collection; each fixture is tuned in one process."""
    worker1 = [_warning(COLLECTION, 2), _warning(TUNING, 14, ("tune_a",))]
    worker2 = [_warning(COLLECTION, 2), _warning(TUNING, 3, ("tune_b",)), _warning(TUNING, 1, (), message="other")]

    merged = {(w.phase, w.message): w for w in merge_warnings([worker1, worker2])}

    assert merged[COLLECTION, "deprecated"].count == 2
    assert merged[TUNING, "deprecated"].count == 17
    assert merged[TUNING, "deprecated"].fixtures == ("tune_a", "tune_b")
    assert merged[TUNING, "other"].count == 1
    assert summary_line(list(merged.values())) == "aitune: 20 warnings from torch (20) while tuning; -v shows them"


def test_shards_merge_their_warnings_and_a_malformed_list_names_the_file(tmp_path):
    def shard(name: str, warnings: list[CaughtWarning]) -> dict:
        run = {"schema_version": 1, "started": 1.0, "results": [], "verdicts": [], "warnings": []}
        run["warnings"] = [w.to_json() for w in warnings]
        path = tmp_path / name
        path.write_text(json.dumps(run))
        return load_run(path)

    one = shard("shard1.json", [_warning(COLLECTION, 1), _warning(TUNING, 5, ("tune_a",))])
    two = shard("shard2.json", [_warning(COLLECTION, 1), _warning(TUNING, 2, ("tune_b",))])

    merged = merge_runs([one, two, two])  # the same file twice counts once
    counts = {w["phase"]: w["count"] for w in merged["warnings"]}
    assert counts == {COLLECTION: 1, TUNING: 7}
    assert merge_runs([{"schema_version": 1, "results": [], "verdicts": []}])["warnings"] == []  # an older run

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "results": [], "verdicts": [], "warnings": [{"count": 1}]}))
    from aitune_ci.errors import DataFileError

    with pytest.raises(DataFileError, match=r"bad\.json: warning field 'category' must be a string.*To fix"):
        load_run(bad)


def test_one_line_keeps_the_varying_messages_of_a_hot_loop_bounded():
    from aitune_ci.caught_warnings import MESSAGES_PER_LINE, WarningTally

    tally = WarningTally()
    for i in range(1000):
        tally.add(
            category="UserWarning", message=f"tensor at 0x{i:x}", filename="x.py", lineno=1, package="x", phase=TUNING
        )
    entries = tally.entries()
    assert len(entries) == MESSAGES_PER_LINE + 1
    assert tally.total == 1000


def test_the_html_report_lists_the_warnings_in_a_collapsed_section():
    from pathlib import Path

    from aitune_ci.report.html import render_html

    run = load_run(Path(__file__).parents[1] / "data" / "report_run.json")
    assert '<section id="warnings">' not in render_html(run)  # a run with none shows no section

    run["warnings"] = [
        _warning(TUNING, 14, ("tune_small_cnn",), message="`torch.jit.script_method` <is> deprecated").to_json()
    ]
    page = render_html(run)

    section = page[page.index('<section id="warnings">') : page.index("</section>", page.index('id="warnings"'))]
    assert "<details><summary>14 warnings raised while tuning: torch (14)</summary>" in section
    assert "`torch.jit.script_method` &lt;is&gt; deprecated" in section  # escaped
    assert "torch/jit/_script.py:366" in section and "tuning tune_small_cnn" in section


def test_a_warning_whose_stacklevel_lands_in_the_standard_library_names_the_library_that_warned():
    """torch's pytree deprecation points into copyreg; the summary said "warnings from copyreg".

    Here a context manager warns with stacklevel=2, which lands in contextlib.py: the tally names
    the package of the code that called warnings.warn (this test module), not contextlib.
    """
    import contextlib
    import os
    import sys
    import warnings

    from aitune_ci.caught_warnings import WarningTally, package_of
    from aitune_ci.plugin.quiet import catching

    @contextlib.contextmanager
    def deprecated():
        warnings.warn("this context manager is deprecated", FutureWarning, stacklevel=2)
        yield

    tally = WarningTally()
    with catching(tally, TUNING, "tune_x"):
        warnings.simplefilter("always")
        with deprecated():
            pass
    (entry,) = tally.entries()
    assert os.path.basename(entry.filename) == "contextlib.py"  # where the stacklevel points, still shown
    assert entry.package == package_of(__file__, sys.path)[0] != "contextlib"
