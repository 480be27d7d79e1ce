"""``aitune-ci compare`` on two real run files, produced on this machine under two configurations.

One user repo is tuned twice with ``pytest --aitune --aitune-report run.json`` in fresh processes,
standing in for two environments: OLD with one torch thread, NEW with two (a real environment
field that differs). Real backends (eager, eager-bf16, onnxruntime) run in both. Three small
backends, registered through the public registry in the repo's conftest, carry the changes an
upgrade can bring, so the outcome does not hinge on this busy machine's timing precision:

* ``eager-delayed`` adds a 1 ms busy-wait per call in NEW only: a backend slower relative to
  eager by two orders of magnitude, far beyond any noise here;
* ``eager-broken`` raises during its build in NEW only: a backend that now fails;
* ``eager-retired`` reports itself unavailable in NEW only.

``eager-bf16`` is left out of NEW (disappeared) and ``cudagraphs`` (unavailable on a CPU) added
(appeared); NEW also tunes a second fixture that OLD does not have.

The repo is tuned once per module (a module-scoped fixture, so it runs ``pytest`` as a subprocess:
pytester's own fixture is function-scoped); each test then runs the command in this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aitune_ci.cli import main

_CONFTEST = textwrap.dedent(
    '''
    import os
    import time

    import torch

    import aitune_ci as ait
    from aitune_ci.backends.base import Backend
    from aitune_ci.backends.registry import register_backend

    NEW = os.environ["COMPARE_SIDE"] == "new"


    @register_backend("eager-delayed")
    class Delayed(Backend):
        """Eager, plus (in NEW) a busy-wait per call: the backend drift to find."""

        precision = "fp32"

        def build(self, module, samples, ctx):
            delay_s = 0.001 if NEW else 0.0

            def run(*args, **kwargs):
                end = time.perf_counter() + delay_s
                out = module(*args, **kwargs)
                while time.perf_counter() < end:
                    pass
                return out

            return run


    @register_backend("eager-broken")
    class Broken(Backend):
        """Eager, but (in NEW) its build raises, as a backend broken by an upgrade does."""

        precision = "fp32"

        def build(self, module, samples, ctx):
            if NEW:
                raise RuntimeError("lowering failed after the upgrade")
            return module


    @register_backend("eager-retired")
    class Retired(Backend):
        """Eager, but (in NEW) unavailable, as a backend whose library was dropped is."""

        precision = "fp32"

        def available(self, device="cpu"):
            return (False, "its library is not installed in NEW") if NEW else (True, "")

        def build(self, module, samples, ctx):
            return module


    BACKENDS = ["eager", "eager-delayed", "eager-broken", "eager-retired", "onnxruntime"]
    BACKENDS += ["cudagraphs"] if NEW else ["eager-bf16"]


    @ait.tune_fixture
    def tune_lin():
        torch.manual_seed(0)
        return ait.TuneSpec(
            model=torch.nn.Linear(16, 8), samples=[torch.randn(4, 16)], backends=BACKENDS, device="cpu"
        )


    if NEW:

        @ait.tune_fixture
        def tune_extra():
            torch.manual_seed(0)
            return ait.TuneSpec(model=torch.nn.Linear(4, 4), samples=[torch.randn(2, 4)], backends=["eager"], device="cpu")
    '''
)


def _tune(repo: Path, side: str, threads: int) -> Path:
    """``pytest --aitune --aitune-report <side>.json`` in ``repo``, in a fresh process."""
    env = {**os.environ, "COMPARE_SIDE": side, "OMP_NUM_THREADS": str(threads)}
    report = repo / f"{side}.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--aitune", "--aitune-measure-seconds",
         "0.3", "--aitune-report", str(report)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert report.is_file(), f"pytest wrote no {report.name} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return report


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    repo = tmp_path_factory.mktemp("compare-repo")
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\n\n[tool.aitune]\nmax_confirmations = 0\n")
    (repo / "conftest.py").write_text(_CONFTEST)
    return _tune(repo, "old", threads=1), _tune(repo, "new", threads=2)


def _compare(*args: str | Path) -> int:
    return main(["compare", *map(str, args)])


def _backends(data: dict, fixture: str = "tune_lin") -> dict[str, dict]:
    found = next(f for f in data["fixtures"] if f["name"] == fixture)
    return {b["backend"]: b for b in found["backends"]}


def test_compare_of_two_real_runs_separates_backend_drift_and_names_every_change(runs, tmp_path, capsys):
    old, new = runs
    out_json, out_md, out_html = tmp_path / "c.json", tmp_path / "c.md", tmp_path / "c.html"

    # A 50% threshold: the injected drift is ~100x, while a real backend's ratio to eager may move by
    # a few percent between one and two torch threads, which is not what this test is about.
    assert _compare(old, new, "--threshold", "0.5", "-o", out_json, "-o", out_md, "--output", out_html) == 0

    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"aitune-ci compare: {old} → {new}"
    assert "environment: torch_threads 1 → 2" in printed
    assert re.search(r"^tune_lin\[eager-delayed\] .* backend drift slower", printed, re.M)
    for path in (out_json, out_md, out_html):
        assert f"wrote {path}" in printed

    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "aitune-ci-compare"
    assert {"field": "torch_threads", "old": 1, "new": 2} in data["environment_differences"]
    assert data["hardware_differs"] is False
    assert data["only_old"] == [] and data["only_new"] == ["tune_extra"]
    assert data["backend_drift"] == ["tune_lin[eager-delayed]"]

    rows = _backends(data)
    delayed = rows["eager-delayed"]["backend_drift"]
    assert delayed["drift"] == "slower" and delayed["ratio"] > 20 and delayed["ci"][0] > 10
    # The ratios are the files' own numbers: eager's NEW / OLD median, as recorded.
    medians = {
        side: {b["backend"]: b["latency"] for b in json.loads(p.read_text())["results"][0]["backends"]}
        for side, p in (("old", old), ("new", new))
    }
    eager = rows["eager"]["latency"]
    assert eager["old"] == medians["old"]["eager"]["median_ms"] and eager["new"] == medians["new"]["eager"]["median_ms"]
    assert eager["ratio"] == pytest.approx(eager["new"] / eager["old"], rel=1e-5)
    assert rows["eager"]["backend_drift"] is None

    events = {name: {e["kind"]: e["text"] for e in row["events"]} for name, row in rows.items()}
    assert list(events["eager-broken"]) == ["now failing"]
    assert events["eager-broken"]["now failing"].startswith("failed: RuntimeError: lowering failed after the upgrade")
    assert events["eager-retired"] == {"now unavailable": "its library is not installed in NEW"}
    assert events["eager-bf16"] == {"disappeared": f"only in {old} (ok)"}
    assert events["cudagraphs"]["appeared"] == f"only in {new} (unavailable)"
    assert events["eager"] == {} and events["onnxruntime"] == {}
    assert rows["onnxruntime"]["build"]["old"] > 0.1  # a real export, timed

    md = out_md.read_text()
    assert md.startswith("## 🔴 aitune-ci compare: 1 backend slower relative to eager\n")
    assert "| torch_threads | 1 | 2 |" in md
    visible_drift = md.split("### Backend drift")[1].split("<details>")[0]
    assert "`tune_lin[eager-delayed]`" in visible_drift and "🔴 slower" in visible_drift
    changes = md.split("### Accuracy and availability")[1].split("<details>")[0]
    assert "`tune_lin[eager-broken]` | ok → failed |" in changes
    assert "now unavailable: its library is not installed in NEW" in changes
    assert "only in NEW (not compared): tune_extra" not in md  # labels are the file names
    assert f"only in {new} (not compared): tune_extra" in md

    page = out_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "table.sortable" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "tune_lin[eager-delayed]" in page and "lowering failed after the upgrade" in page


def test_the_page_opens_in_chromium_with_nothing_fetched_and_fits_a_phone(runs, tmp_path, capsys):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    from chromium import Browser

    page = tmp_path / "compare.html"
    assert _compare(*runs, "-o", page) == 0
    with Browser() as browser:
        desktop = browser.load(page, width=1280, height=900)
        phone = browser.load(page, width=390, height=844, mobile=True, dark=True)

    assert desktop.problems == [] and desktop.console == []  # no failed resource load, no script error
    assert "Backend drift (relative to eager)" in desktop.text and "tune_lin[eager-delayed]" in desktop.text
    assert phone.problems == []
    assert phone.scroll_width <= phone.inner_width, "wide tables must scroll inside their box, not the page"


def test_fail_on_drift_exits_non_zero_and_names_the_backend(runs, capsys):
    old, new = runs

    assert _compare(old, new, "--fail-on-drift", "--threshold", "0.5") == 1  # 50%: see the test above

    out = capsys.readouterr().out
    assert re.search(r"aitune-ci compare: backend drift: tune_lin\[eager-delayed\] \+[\d.]+% \(95% CI", out)
    # A backend the upgrade broke fails the command too: worse than any drift.
    assert "aitune-ci compare: now failing: tune_lin[eager-broken]" in out
    # Compared the other way round the backend got faster, which never fails.
    assert _compare(new, old, "--fail-on-drift", "--threshold", "0.5") == 0


def test_the_command_list_offers_compare(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert re.search(r"^    compare +compare two run JSONs from different environments", out, re.M)
    assert "compare two runs from different environments" in " ".join(out.split())


def test_compare_help_explains_the_three_drifts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: aitune-ci compare [-h] [-o PATH] [--threshold FRACTION]")
    for phrase in (
        "eager drift eager's median NEW / OLD",
        "backend drift (backend / eager) in NEW over the same in OLD",
        "compile-time drift build seconds NEW / OLD",
        '"within noise"',
        "--fail-on-drift exit 1 when a backend got slower relative to eager beyond noise and threshold, now fails, or lost accuracy",
        "Default: 0.05 (5%)",
        "example: aitune-ci compare torch-2.12.json torch-2.13.json",
    ):
        assert phrase in text, phrase


# -- what a user can get wrong ------------------------------------------------------------------


def _error(capsys, *args: str | Path) -> str:
    assert _compare(*args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_a_missing_file_is_named_with_the_command_that_writes_it(runs, tmp_path, capsys):
    err = _error(capsys, runs[0], tmp_path / "gone.json")
    assert f"aitune-ci: error: {tmp_path / 'gone.json'}: cannot read it" in err
    assert "pytest --aitune --aitune-report run.json" in err


def test_a_corrupt_file_is_named(runs, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text(runs[1].read_text()[:500])
    err = _error(capsys, runs[0], broken)
    assert f"{broken}: not valid JSON" in err and "pytest --aitune --aitune-report run.json" in err


def test_an_artifact_or_a_binary_file_is_named_not_a_traceback(runs, tmp_path, capsys):
    """Both used to end in a UnicodeDecodeError traceback."""
    artifact = tmp_path / "tune_lin.ait"
    artifact.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xe8\x9c")
    err = _error(capsys, artifact, runs[1])
    assert f"{artifact}: a zip archive, not a run JSON: a .ait artifact is read with `aitune-ci inspect`" in err

    binary = tmp_path / "run.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xe8\x00")
    err = _error(capsys, runs[0], binary)
    assert f"{binary}: not a text file (invalid start byte at byte 0)" in err
    assert "Traceback" not in err


def test_report_and_merge_call_a_baseline_or_a_history_file_what_it_is(tmp_path):
    """`compare` named a baseline; `report` said "'results' and 'verdicts' must be lists", and a history
    file read "not valid JSON (Extra data...)" (a new user's re-trial)."""
    from aitune_ci.errors import DataFileError
    from aitune_ci.store.runs import load_run

    baseline = tmp_path / "tune_lin.json"
    baseline.write_text(json.dumps({"schema_version": 1, "fixture": "tune_lin", "backends": {}, "environment": {}}))
    with pytest.raises(DataFileError, match="it looks like a committed baseline"):
        load_run(baseline)
    history = tmp_path / "cpu-x86_64.jsonl"
    line = {"schema_version": 1, "fixture": "tune_lin", "date": "2026-12-05T00:00:00+00:00", "commit": "a" * 40}
    history.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataFileError, match=r"a history file \(.aitune/history/<hardware>.jsonl"):
        load_run(history)


def test_a_baseline_or_a_comparison_passed_for_a_run_is_called_what_it_is(runs, tmp_path, capsys):
    baseline = tmp_path / "tune_lin.json"
    baseline.write_text(json.dumps({"schema_version": 1, "fixture": "tune_lin", "backends": {}, "environment": {}}))
    err = _error(capsys, baseline, runs[1])
    assert f"{baseline}: not an aitune-ci run file: it looks like a committed baseline" in err

    comparison = tmp_path / "c.json"
    assert _compare(*runs, "-o", comparison) == 0
    capsys.readouterr()
    err = _error(capsys, runs[0], comparison)
    assert f"{comparison}: not an aitune-ci run file: it looks like the output of `aitune-ci compare`" in err


def test_an_unknown_schema_version_names_the_file_and_the_fix(runs, tmp_path, capsys):
    future = tmp_path / "future.json"
    data = json.loads(runs[1].read_text())
    data["schema_version"] = 99
    future.write_text(json.dumps(data))
    err = _error(capsys, runs[0], future)
    assert f"{future}: unknown run schema_version 99 (this aitune-ci reads 1). To fix: upgrade aitune-ci" in err


def test_runs_from_other_hardware_are_compared_with_a_prominent_warning(runs, tmp_path, capsys):
    other = tmp_path / "h100.json"
    data = json.loads(runs[1].read_text())
    for result in data["results"]:
        result["environment"].update(hardware_key="NVIDIA-H100-80GB-HBM3", device_type="cuda")
    other.write_text(json.dumps(data))

    assert _compare(runs[0], other, "-o", tmp_path / "c.md") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("WARNING: The runs come from different hardware (cpu-")
    assert "> [!WARNING]\n> The runs come from different hardware" in (tmp_path / "c.md").read_text()


def test_runs_without_a_fixture_in_common_are_an_error_that_lists_both(runs, tmp_path, capsys):
    renamed = tmp_path / "renamed.json"
    data = json.loads(runs[0].read_text())
    for result in data["results"]:
        result["name"] = "tune_other"
    data["verdicts"] = []
    renamed.write_text(json.dumps(data))
    err = _error(capsys, renamed, runs[1])
    assert (
        f"{renamed} and {runs[1]} have no fixture in common ({renamed}: tune_other; {runs[1]}: tune_extra, tune_lin)"
        in err
    )


def test_an_output_of_an_unknown_format_is_refused_before_anything_runs(runs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(runs[0]), str(runs[1]), "-o", "diff.txt"])
    assert exit_info.value.code == 2
    assert "cannot tell the format of 'diff.txt': end it in .md" in capsys.readouterr().err
