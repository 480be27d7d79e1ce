"""A CI run's outcome: did a check regress, or did the run itself break? Decided from files, not exit codes alone.

``pytest`` exits 1 both when a latency or accuracy regression fails its item and when anything else
fails (a user's own test, a backend that no longer builds, a tune fixture that raises). A warn-only
CI (``fail-on-regression: false``) must hide the first and never the second, so the outcome is read
from what the run left behind, one *shard* (one pytest process's report folder) at a time:

- ``pytest-exit-code``: what pytest exited with (missing: the job died before pytest ended);
- ``run.json``: the run JSON (``--aitune-report``), with every verdict (missing: a crash);
- ``junit.xml``: pytest's JUnit report (``--junitxml``), naming every failed or errored item.

A shard *regressed* when every failed item is a check whose verdict is a latency or accuracy
regression; it is *broken* when pytest crashed, was interrupted or misused (exit 2-4, a signal),
wrote no run JSON, or when any failed item is something else (a backend now failing, a selection
with no winner, a fixture error, a test that is not an aitune check).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from aitune_ci.errors import AituneCIError
from aitune_ci.status import VerdictKind
from aitune_ci.store.runs import load_run
from aitune_ci.verdict import Verdict
from aitune_ci.verdict.model import NOW_FAILING

__all__ = [
    "EXIT_BROKEN",
    "EXIT_CODE_FILE",
    "EXIT_REGRESSED",
    "JUNIT_FILE",
    "RUN_FILE",
    "Decision",
    "Outcome",
    "ShardResult",
    "artifact_name",
    "decide",
    "failed_tests",
    "read_shard",
]

#: File names inside one shard's report folder (the action writes them; ``aitune-ci outcome`` reads them).
RUN_FILE = "run.json"
JUNIT_FILE = "junit.xml"
EXIT_CODE_FILE = "pytest-exit-code"

#: Exit statuses of ``aitune-ci outcome``: neither is one of pytest's own (0-5), so a log tells them apart.
EXIT_REGRESSED = 10
EXIT_BROKEN = 11

#: pytest's exit codes (``pytest.ExitCode``), spelled out for the messages.
_PYTEST_EXITS = {
    0: "all tests passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error (a bad option or a path that does not exist)",
    5: "no tests collected",
}
_NO_TESTS = 5

#: ``tune_x[eager]``, with the ``@group`` suffix pytest-xdist's loadgroup appends to a node id.
_ITEM_NAME = re.compile(r"(?P<check>[^\[\]]+\[[^\[\]]+\])(?:@[^\[\]]*)?")

#: What upload-artifact refuses in an artifact name.
_ARTIFACT_NAME_FORBIDDEN = frozenset('":<>|*?\r\n\\/')


class Outcome(str, Enum):
    """How a CI run ended, in the words of the action's ``outcome`` output (members equal their values)."""

    PASS = "pass"
    #: one or more latency/accuracy regressions, and nothing else failed
    REGRESSED = "regressed"
    #: the run itself broke: a crash, a usage error, a failing test that is not a regression
    BROKEN = "broken"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ShardResult:
    """What one pytest process left behind (a whole run when the CI is not sharded).

    Attributes:
        name: how messages name it (its report folder, or ``shard 2 of 4``).
        exit_code: pytest's exit status; None when none was recorded (the job died first).
        run: the run JSON; None when it is missing or unreadable (``run_error`` says which).
        failed: ids of the items the JUnit report lists as failed or errored; None without a report.
        run_error: why ``run`` is None.
    """

    name: str
    exit_code: int | None
    run: Mapping[str, Any] | None
    failed: tuple[str, ...] | None = None
    run_error: str = ""


@dataclass(frozen=True)
class Decision:
    """The outcome and why: ``reasons`` are whole sentences, ``regressions`` the regressed check ids."""

    outcome: Outcome
    reasons: tuple[str, ...] = ()
    regressions: tuple[str, ...] = ()
    broken: tuple[str, ...] = field(default=())

    def exit_code(self, *, fail_on_regression: bool = True) -> int:
        """0 to pass the step; ``EXIT_REGRESSED`` for a regression unless warn-only; ``EXIT_BROKEN`` always when broken."""
        if self.outcome is Outcome.BROKEN:
            return EXIT_BROKEN
        if self.outcome is Outcome.REGRESSED and fail_on_regression:
            return EXIT_REGRESSED
        return 0

    def summary(self) -> str:
        """One line for the log: the outcome, then every reason."""
        head = {
            Outcome.PASS: "aitune-ci: pass",
            Outcome.REGRESSED: f"aitune-ci: regressed ({len(self.regressions)} check(s))",
            Outcome.BROKEN: "aitune-ci: the run broke",
        }[self.outcome]
        return head + ("; " + "; ".join(self.reasons) if self.reasons else "")


def artifact_name(prefix: str, shard: str | None) -> str:
    """The upload-artifact name of a report folder: ``aitune-report``, or ``aitune-shard-1-of-4`` for shard ``1/4``.

    Raises:
        ValueError: ``shard`` is not ``i/n`` with 1 <= i <= n, or the name holds a character
            upload-artifact refuses (``"`` ``:`` ``<`` ``>`` ``|`` ``*`` ``?`` ``\\`` ``/`` or a line break).
    """
    name = prefix
    if shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise ValueError(f"shard must be i/n with 1 <= i <= n, such as 1/4; got {shard!r}")
        name = f"{prefix}-{int(match.group(1))}-of-{int(match.group(2))}"
    bad = sorted(_ARTIFACT_NAME_FORBIDDEN.intersection(name))
    if not name or bad:
        raise ValueError(f"artifact name {name!r} is empty or holds characters upload-artifact refuses: {bad}")
    return name


def failed_tests(junit_xml: str | os.PathLike[str]) -> tuple[str, ...]:
    """Ids of the test cases a pytest JUnit report lists with a ``<failure>`` or an ``<error>``.

    An id is the test's name as pytest wrote it (``tune_x[eager]``, ``test_foo``), prefixed with
    its class name (``tests.test_mod.test_foo``) unless it is an aitune check.

    Raises:
        AituneCIError: the file cannot be read or is not XML (the message names it).
    """
    try:
        root = ET.parse(junit_xml).getroot()  # noqa: S314  (pytest wrote it in this job)
    except (OSError, ET.ParseError) as exc:
        raise AituneCIError(f"{os.fspath(junit_xml)}: not a readable JUnit report ({exc})") from None
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        name, classname = case.get("name", ""), case.get("classname", "")
        match = _ITEM_NAME.fullmatch(name)
        if match and match.group("check").startswith("tune_"):
            failed.append(match.group("check"))
        else:
            failed.append(f"{classname}.{name}" if classname else name)
    return tuple(failed)


def read_shard(folder: str | os.PathLike[str], name: str | None = None) -> ShardResult:
    """Read one report folder (``run.json``, ``junit.xml``, ``pytest-exit-code``); what is missing stays None."""
    folder = Path(folder)
    exit_code: int | None = None
    code_file = folder / EXIT_CODE_FILE
    if code_file.is_file():
        text = code_file.read_text(encoding="utf-8").strip()
        exit_code = int(text) if re.fullmatch(r"-?\d+", text) else None
    run: Mapping[str, Any] | None = None
    run_error = ""
    if (folder / RUN_FILE).is_file():
        try:
            run = load_run(folder / RUN_FILE)
        except AituneCIError as exc:
            run_error = str(exc)
    else:
        run_error = f"{folder / RUN_FILE} is missing"
    failed = None
    if (folder / JUNIT_FILE).is_file():
        try:
            failed = failed_tests(folder / JUNIT_FILE)
        except AituneCIError:
            failed = None
    return ShardResult(name or str(folder), exit_code, run, failed, run_error)


def _regression_ids(run: Mapping[str, Any]) -> set[str]:
    """Check ids whose verdict fails CI as a regression (latency, another gated metric, accuracy, a task
    metric) and as nothing else: a backend that now fails is broken, not regressed."""
    ids = set()
    for data in run.get("verdicts", ()):
        v = Verdict.from_json(data)
        if (
            v.fails
            and v.kind is VerdictKind.REGRESSED
            and not v.baseline_required
            and v.reasons
            and NOW_FAILING not in v.reasons
        ):
            ids.add(v.check_id)
    return ids


def _judge_shard(shard: ShardResult) -> tuple[list[str], list[str], list[str]]:
    """``(regressed check ids, broken items, reasons)`` of one shard."""
    code = shard.exit_code
    if code is None:
        return [], [], [f"{shard.name}: pytest did not finish (no exit code was recorded): see the tune step's log"]
    if code not in _PYTEST_EXITS:
        why = f"killed by signal {code - 128}" if code > 128 else "an exit status pytest never uses"
        return [], [], [f"{shard.name}: pytest exited with {code} ({why}; out of memory or cancelled?)"]
    if code in (2, 3, 4):
        return [], [], [f"{shard.name}: pytest exited with {code}, {_PYTEST_EXITS[code]}: see the tune step's log"]
    if shard.run is None:
        if code == _NO_TESTS:
            return [], [], []  # nothing collected, so no run file: judged with the other shards
        problem = shard.run_error or "no run JSON"
        return [], [], [f"{shard.name}: the run wrote no results ({problem}); pytest exited with {code}"]
    if code in (0, _NO_TESTS):
        return [], [], []
    # Exit 1: which items failed, and were they all regressions?
    if shard.failed is None:
        return (
            [],
            [],
            [
                f"{shard.name}: pytest exited with 1 and left no JUnit report, so its failures cannot be told "
                "apart from regressions (run pytest with --junitxml, as the action does)"
            ],
        )
    if not shard.failed:
        return [], [], [f"{shard.name}: pytest exited with 1 but its JUnit report lists no failed test"]
    regressions = _regression_ids(shard.run)
    regressed = [t for t in shard.failed if t in regressions]
    broken = [t for t in shard.failed if t not in regressions]
    reasons = []
    if broken:
        shown = ", ".join(broken[:10]) + (f" and {len(broken) - 10} more" if len(broken) > 10 else "")
        reasons.append(
            f"{shard.name}: {len(broken)} failed item(s) that are not slowdowns (a backend that now fails to build, run or stay accurate, a crash, a broken fixture): {shown}"
        )
    return regressed, broken, reasons


def decide(
    shards: Sequence[ShardResult], expected_shards: int | None = None, *, require_checks: bool = True
) -> Decision:
    """The outcome of a CI run made of ``shards`` (one, when the CI is not sharded).

    BROKEN when any shard broke (see the module docstring), when fewer than ``expected_shards``
    sent results, or (with ``require_checks``) when no shard checked anything: no tune fixture
    under the test path. Else REGRESSED when a check regressed; else PASS. A warn-only CI hides
    REGRESSED only. One shard of a matrix is judged with ``require_checks=False``: it may get no
    fixture at all.
    """
    reasons: list[str] = []
    regressed: list[str] = []
    broken: list[str] = []
    if expected_shards is not None and len(shards) < expected_shards:
        missing = expected_shards - len(shards)
        reasons.append(
            f"{missing} of {expected_shards} shard(s) sent no results (their job failed before the upload): "
            "see the matrix jobs' logs"
        )
    checked = 0
    for shard in shards:
        r, b, why = _judge_shard(shard)
        regressed += r
        broken += b
        reasons += why
        if shard.run is not None:
            checked += len(shard.run.get("results", ())) + len(shard.run.get("verdicts", ()))
    if require_checks and not reasons and shards and checked == 0:
        codes = {s.exit_code for s in shards}
        hint = " (pytest collected no tests)" if codes == {_NO_TESTS} else ""
        reasons.append(f"no tune_* fixture ran{hint}: check that pytest-args names the folder of your tune fixtures")
    if not shards and not reasons:
        reasons.append("no report folder was given, so nothing can be judged")
    if reasons:
        return Decision(Outcome.BROKEN, tuple(reasons), tuple(regressed), tuple(broken))
    if regressed:
        shown = ", ".join(regressed[:10]) + (f" and {len(regressed) - 10} more" if len(regressed) > 10 else "")
        return Decision(Outcome.REGRESSED, (f"{len(regressed)} check(s) regressed: {shown}",), tuple(regressed))
    return Decision(Outcome.PASS)
