"""A throwaway user repo for plugin tests: tune fixtures on nn.Linear, baselines to read and edit.

Every run uses the ``eager`` family of backends and a 0.2 s measurement budget, so a whole
``pytest --aitune`` run takes well under a second. The repo's ``[tool.aitune]`` sets a 300%
threshold and no confirmations. A shared 2-core CI machine has been seen to run the same
microsecond model 2.1x slower in a run seconds later (a neighbour on the sibling hyperthread), so
a check that must PASS needs room for that; the edits these tests make to baselines (20x) still
land 5x beyond the threshold, so a check that must regress or improve does so under the same
noise. Re-measuring a 20x slowdown only costs time; the test of confirmations turns them back on.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from baseline_edits import other_work

import aitune_ci as ait
from aitune_ci.backends.registry import backend_names

# pytester's inline runs remove from sys.modules every module first imported during a run, but
# ``aitune_ci`` caches its lazy attributes (``ait.TuneSpec``) on the package: a later run would then
# see two TuneSpec classes and reject every spec. Importing what the plugin uses once, up front,
# keeps one of each (and loads every backend module once).
for _module in ("aitune_ci.engine", "aitune_ci.plugin.items", "aitune_ci.plugin.session", "aitune_ci.report.terminal"):
    importlib.import_module(_module)

for _name in ("TuneSpec", "Tolerance", "tune_fixture"):
    getattr(ait, _name)
backend_names()

#: The budget each fixture gets for its interleaved measurement rounds.
MEASURE = ("--aitune-measure-seconds", "0.2")


_FIXTURE = """

@ait.tune_fixture
def {name}():
    torch.manual_seed(0)
    return ait.TuneSpec(
        model=torch.nn.Linear(8, 4), samples=[torch.randn(2, 8)], backends={backends!r}, device="cpu"{extra}
    )
"""

#: The repo's latency threshold: a check 4x slower than its baseline still passes.
THRESHOLD = '"300%"'  # TOML: a percentage string (a bare 3.0 reads as a fraction and is refused)

#: The [tool.aitune] table of every test repo unless a test writes its own.
DEFAULT_AITUNE = f"threshold = {THRESHOLD}\nmax_confirmations = 0"

#: The same table with re-measurement of a suspected regression turned on.
CONFIRMING_AITUNE = f"threshold = {THRESHOLD}\nmax_confirmations = 2"

_HEADER = "import torch\nimport aitune_ci as ait\n"

_LATENCY_FIELDS = ("median_ms", "ci_low_ms", "ci_high_ms", "p90_ms")

# One row of the verdict table: the check id first, the verdict (and its reasons) last.
_ROW = re.compile(
    r"^(?P<check>tune_\w+\[[^\]]+\])\s.*?\s(?P<verdict>(PASS|IMPROVED|REGRESSED|FAILED|NEW|SKIPPED)( \(.*\))?)$"
)


class AituneProject:
    """A pytester directory laid out like a user's repo, with helpers to run and edit baselines."""

    #: The [tool.aitune] table of every test repo unless a test writes its own.
    AITUNE = DEFAULT_AITUNE

    #: The same table with re-measurement of a suspected regression turned on.
    CONFIRMING_AITUNE = CONFIRMING_AITUNE

    #: How far an edited baseline is moved: 5x beyond the threshold (and far beyond noise).
    FACTOR = 20.0

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.configure()

    # -- writing the repo -----------------------------------------------------------------------
    def configure(self, ini: str = "", aitune: str = DEFAULT_AITUNE) -> None:
        """(Re)write pyproject.toml: ``ini`` under [tool.pytest.ini_options], ``aitune`` under [tool.aitune]."""
        text = f"[tool.pytest.ini_options]\n{ini}\n"
        if aitune:
            text += f"\n[tool.aitune]\n{aitune}\n"
        (self.path / "pyproject.toml").write_text(text)

    def add_fixture(
        self, name: str = "tune_lin", backends: tuple[str, ...] = ("eager",), where: str = "conftest.py", spec: str = ""
    ) -> Path:
        """Append a tune fixture on a tiny nn.Linear to ``where`` (created with its imports).

        ``spec`` is extra TuneSpec keyword arguments as source text, e.g. ``"tolerance=ait.Tolerance(atol=0)"``.
        """
        path = self.path / where
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else _HEADER
        path.write_text(text + _FIXTURE.format(name=name, backends=list(backends), extra=f", {spec}" if spec else ""))
        return path

    def write(self, relative: str, text: str) -> Path:
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    # -- running --------------------------------------------------------------------------------
    def run(self, *args: str, subprocess: bool = False) -> pytest.RunResult:
        """Run pytest in the repo as given (no --aitune added)."""
        if subprocess:
            return self.pytester.runpytest_subprocess(*args)
        return self.pytester.runpytest(*args)

    def tune(self, *args: str, subprocess: bool = False) -> pytest.RunResult:
        """``pytest --aitune`` with the short measurement budget, plus ``args``."""
        return self.run("--aitune", *MEASURE, *args, subprocess=subprocess)

    # -- baselines ------------------------------------------------------------------------------
    def baseline_path(self, fixture: str, directory: str = ".aitune") -> Path:
        """The one baseline file of ``fixture`` (there is one hardware key on this machine)."""
        found = sorted((self.path / directory / "baselines").glob(f"*/{fixture}.json"))
        assert len(found) == 1, f"expected one baseline of {fixture}, found {found}"
        return found[0]

    def baselines(self, directory: str = ".aitune") -> dict[str, Path]:
        """Every baseline file under ``directory``, by fixture name."""
        return {p.stem: p for p in (self.path / directory / "baselines").glob("*/*.json")}

    def forget_work(self, fixture: str) -> None:
        """Make the baseline of ``fixture`` stand for other work (``other_work``), so that a stored
        check of unchanged code is tuned and timed against it as the tests of that judgement need."""
        self.save_baseline(fixture, other_work(self.load_baseline(fixture)))

    def load_baseline(self, fixture: str) -> dict[str, Any]:
        return json.loads(self.baseline_path(fixture).read_text())

    def save_baseline(self, fixture: str, data: dict[str, Any]) -> None:
        self.baseline_path(fixture).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def scale_latency(self, fixture: str, backend: str, factor: float) -> None:
        """Make the baseline of ``fixture[backend]`` ``factor`` times slower (< 1: faster).

        The fixture's committed artifact is removed too: with it, the plugin times the old artifact
        against the new build (paired A/B) and would rightly see through an edited number. The
        edited baseline stands for one that five nightly updates in separate processes measured at
        that speed (``run_medians_ms``, five of them), so that the stored latency verdict is armed: running those
        updates for real is tested once, in test_plugin_update.py. The edit leaves the record of the
        work the baseline's update tuned not intact (``BaselineWork``), as any edit does, so the
        check is judged against the edited numbers.
        """
        for artifact in (self.path / ".aitune" / "artifacts").glob(f"*/{fixture}.ait"):
            artifact.unlink()
        data = self.load_baseline(fixture)
        latency = data["backends"][backend]["latency"]
        for key in _LATENCY_FIELDS:
            latency[key] *= factor
        latency["round_medians_ms"] = [x * factor for x in latency["round_medians_ms"]]
        data["backends"][backend]["run_medians_ms"] = [latency["median_ms"]] * 5
        self.save_baseline(fixture, data)

    def set_accuracy(self, fixture: str, backend: str, **fields: Any) -> None:
        """Overwrite fields of the baseline's accuracy summary of ``fixture[backend]`` (an edit: see
        ``scale_latency``)."""
        data = self.load_baseline(fixture)
        data["backends"][backend]["accuracy"].update(fields)
        self.save_baseline(fixture, data)

    # -- reading the terminal summary -----------------------------------------------------------
    @staticmethod
    def summary(result: pytest.RunResult) -> list[str]:
        """The non-blank lines of the ``aitune`` terminal summary section (table and count line)."""
        lines = result.outlines
        start = next((i for i, line in enumerate(lines) if line.startswith("=") and " aitune " in line), None)
        assert start is not None, "no aitune section in the terminal summary:\n" + "\n".join(lines)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
        return [line for line in lines[start + 1 : end] if line.strip()]

    @classmethod
    def verdicts(cls, result: pytest.RunResult) -> dict[str, str]:
        """``{check id: verdict}`` from the summary table, e.g. ``{"tune_lin[eager]": "PASS"}``.

        Fails when a check appears twice (a fixture tuned twice, e.g. once per xdist worker).
        """
        rows: dict[str, str] = {}
        for line in cls.summary(result):
            match = _ROW.match(line)
            if match is None:
                continue
            check, verdict = match.group("check"), match.group("verdict")
            assert check not in rows, f"{check} appears twice in the summary:\n" + "\n".join(cls.summary(result))
            rows[check] = verdict
        return rows

    @classmethod
    def count_line(cls, result: pytest.RunResult) -> str:
        """The ``aitune: 1 passed, 1 regressed`` line."""
        return next(line for line in cls.summary(result) if line.startswith("aitune: "))


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[AituneProject]:
    """An empty user repo (pyproject.toml only); add tune fixtures with ``project.add_fixture``.

    Runs measure on one thread (inline runs in this process, subprocess runs through
    OMP_NUM_THREADS): on a shared 2-core box, two threads per op make a microsecond bf16 matmul
    swing by 5x between runs, which would test the machine's load instead of the plugin.
    """
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield AituneProject(pytester)
    finally:
        torch.set_num_threads(threads)
