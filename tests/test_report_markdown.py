"""The PR comment / step summary of a real run (tests/data/), compared with golden files, plus the
GitHub side: the size limit, annotations and step outputs.

Regenerate the golden files after an intended change with ``AITUNE_UPDATE_GOLDEN=1 pytest tests/test_report_markdown.py``
and review their diff.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
from large_run import large_run

from aitune_ci.github import annotations, publish, step_outputs
from aitune_ci.report.markdown import DEFAULT_MARKER, MAX_COMMENT_CHARS, render_markdown
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
URL = "https://github.com/acme/models/actions/runs/123456789"


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(DATA / "report_run.json")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("AITUNE_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; create it with AITUNE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"differs from {path}; if intended, regenerate with AITUNE_UPDATE_GOLDEN=1"
    )


def _regressed(run: dict) -> dict:
    """The real run where the CNN's inductor check regressed in latency (as the verdict engine writes it)."""
    out = copy.deepcopy(run)
    for v in out["verdicts"]:
        if v["fixture"] == "tune_small_cnn" and v["backend"] == "inductor":
            now = round(v["baseline_median_ms"] * 1.31, 4)
            v.update(kind="REGRESSED", reasons=["latency"], delta=0.31, delta_ci=[0.12, 0.53], current_median_ms=now)
            v.update(p_value=0.001, q_value=0.004, threshold=0.05)
            v["message"] = f"tune_small_cnn[inductor]: REGRESSED (latency). {now} ms vs baseline: +31.0% slower."
    return out


def test_comment_of_a_real_run_matches_golden(run: dict) -> None:
    _golden("report_comment.md", render_markdown(run, report_url=URL))


def test_truncated_comment_matches_golden_and_fits(run: dict) -> None:
    text = render_markdown(_regressed(run), report_url=URL, max_chars=2500)
    assert len(text) <= 2500
    _golden("report_comment_truncated.md", text)


def test_comment_starts_with_marker_and_leads_with_the_verdict(run: dict) -> None:
    lines = render_markdown(run).splitlines()
    assert lines[0] == DEFAULT_MARKER
    assert lines[2].startswith("## ") and "faster, nothing regressed" in lines[2]


def test_regressions_come_first_and_unchanged_checks_fold(run: dict) -> None:
    text = render_markdown(_regressed(run))
    assert "## 🔴 aitune-ci: 1 regression" in text
    changed, unchanged = text.split("<details>", 1)
    rows = [line for line in changed.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `tune_small_cnn[inductor]` | 🔴 REGRESSED (latency)")
    assert "IMPROVED" in rows[1]
    assert "PASS" not in changed.split("### What changed", 1)[1]
    assert "SKIPPED" in unchanged and "</details>" in unchanged
    assert "pytest --aitune --aitune-update --aitune-fixtures tune_small_cnn" in text


def test_huge_run_stays_under_githubs_limit_with_a_note(run: dict) -> None:
    big = copy.deepcopy(run)
    for i in range(400):  # 400 copies of each fixture: ~5,600 checks
        for r in run["results"]:
            big["results"].append({**copy.deepcopy(r), "name": f"{r['name']}_{i}"})
        for v in run["verdicts"]:
            big["verdicts"].append({**copy.deepcopy(v), "fixture": f"{v['fixture']}_{i}"})
    text = render_markdown(big, report_url=URL)
    assert len(text) <= MAX_COMMENT_CHARS
    assert text.startswith(DEFAULT_MARKER)
    note = re.search(
        r"_…and (\d[\d,]*) more checks not shown \([^)]*\): this comment is limited to 65,536 characters\. "
        r"The full table is in the \[full report\]",
        text,
    )
    assert note, "the truncation says how many rows were left out and where to see them"
    shown = len(re.findall(r"^\| `", text, flags=re.MULTILINE))
    assert shown + int(note.group(1).replace(",", "")) == len(big["verdicts"])
    assert "Winners" in text  # the tail survives truncation


def test_table_cells_escape_pipes_and_newlines(run: dict) -> None:
    odd = copy.deepcopy(run)
    for v in odd["verdicts"]:
        if v["kind"] == "SKIPPED":
            v["notes"] = ["unavailable | here\nsecond line"]
    text = render_markdown(odd)
    assert "unavailable \\| here second line" in text


@pytest.mark.parametrize("reused", [False, True], ids=["tuned", "stored-result"])
def test_a_check_whose_base_does_the_same_work_shows_why_in_full(run: dict, reused: bool) -> None:
    from aitune_ci.check import SAME_WORK_NOTE, _reused_note
    from aitune_ci.result import TuneResult

    stored = TuneResult.from_json({**run["results"][0], "created_at": "2026-12-03T10:00:01+00:00"})
    note = _reused_note(stored, relative=True) if reused else SAME_WORK_NOTE
    same = copy.deepcopy(run)
    for v in same["verdicts"]:
        if v["kind"] == "PASS":
            v.update(mode="relative", base_ref="main (1a2b3c4d5e6f)", identical_to_base=True, delta=None)
            v.update(delta_ci=None, baseline_median_ms=None, paired=False, notes=[note])
    text = render_markdown(same)
    assert f"| {note} |" in text  # whole, not cut at the cell limit


def test_environment_mismatch_is_a_warning_line_and_annotation(run: dict) -> None:
    odd = copy.deepcopy(run)
    odd["verdicts"][0]["env_mismatch"] = {"driver": ["575.51.03", "580.159.04"]}
    assert "> [!WARNING]" in render_markdown(odd) and "`575.51.03` → `580.159.04`" in render_markdown(odd)
    assert "> [!WARNING]" not in render_markdown(run)
    lines = annotations(odd)
    assert lines[-1].startswith("::warning title=aitune-ci%3A environment mismatch::the environment differs")


def test_annotations_flag_only_failing_checks_as_errors(run: dict) -> None:
    assert annotations(run) == []  # the real run has no regression
    lines = annotations(_regressed(run))
    assert len(lines) == 1
    assert lines[0].startswith("::error title=aitune-ci%3A tune_small_cnn[inductor] regressed::")
    quarantined = _regressed(run)
    for v in quarantined["verdicts"]:
        v["quarantined"] = True
    assert [line.split(" ", 1)[0] for line in annotations(quarantined)] == ["::warning"]


def test_step_outputs_and_summary_are_written_for_actions(
    run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    echoed: list[str] = []
    status = publish(
        _regressed(run), report_url=URL, reports={"html": "out/report.html"}, comment=False, echo=echoed.append
    )
    assert status == 0
    assert summary.read_text() == render_markdown(_regressed(run), report_url=URL)
    written = outputs.read_text()
    parsed = {
        name: written.split(f"{name}<<{delimiter}\n", 1)[1].split(f"\n{delimiter}", 1)[0]
        for name, delimiter in re.findall(r"^([\w-]+)<<(ghadelimiter_[\w-]+)$", written, flags=re.M)
    }
    assert parsed["verdict"] == "regressed" and parsed["verdict-kind"] == "REGRESSED" and parsed["failing"] == "true"
    assert parsed["regressed"] == "1" and parsed["report-html"] == "out/report.html"
    assert int(parsed["total"]) == len(run["verdicts"])
    assert echoed and echoed[0].startswith("::error")


def test_step_outputs_count_each_outcome(run: dict) -> None:
    out = step_outputs(run)
    kinds = [v["kind"] for v in run["verdicts"]]
    assert out["verdict"] == "pass" and out["verdict-kind"] == "IMPROVED" and out["failing"] is False
    assert out["passed"] == kinds.count("PASS") and out["skipped"] == kinds.count("SKIPPED")
    assert out["improved"] == kinds.count("IMPROVED") and out["total"] == len(kinds)


# --- the oversized comment: 700 fixtures, 234 regressions --------------------------------------

_ROW = re.compile(r"^\| `(?P<check>[^`]+)` \| \S+ (?P<kind>[A-Z]+)", flags=re.MULTILINE)
_NOTE = re.compile(r"_…and (?P<n>[\d,]+) more checks? not shown \((?P<kinds>[^)]*)\)")


def _balanced(text: str) -> None:
    """Every code fence and ``<details>`` that opens also closes."""
    fences = [line for line in text.splitlines() if line.startswith("```")]
    assert len(fences) % 2 == 0, "a code fence is left open"
    assert text.count("<details>") == text.count("</details>"), "a <details> is left open"


def _omitted(text: str) -> dict[str, int]:
    note = _NOTE.search(text)
    if not note:
        return {}
    kinds = {label: int(n.replace(",", "")) for n, label in (part.split(" ", 1) for part in note["kinds"].split(", "))}
    assert sum(kinds.values()) == int(note["n"].replace(",", ""))
    return kinds


@pytest.fixture(scope="module")
def big_run() -> dict:
    return large_run(700, 234)


@pytest.mark.parametrize("max_chars", [1000, 1500, 2500, 6000, 20000, 40000, MAX_COMMENT_CHARS])
def test_oversized_run_fits_keeps_regressions_first_and_counts_what_it_cut(big_run: dict, max_chars: int) -> None:
    text = render_markdown(big_run, report_url=URL, max_chars=max_chars)
    assert len(text) <= max_chars
    assert text.startswith(DEFAULT_MARKER + "\n") and "## 🔴 aitune-ci: 234 regressions" in text
    assert "Nothing changed beyond the noise" not in text
    _balanced(text)
    rows = [m["kind"] for m in _ROW.finditer(text)]
    assert rows == sorted(rows, key=lambda k: k != "REGRESSED"), "a regression comes after another row"
    omitted = _omitted(text)
    assert len(rows) + sum(omitted.values()) == len(big_run["verdicts"])
    assert rows.count("REGRESSED") + omitted.get("regressed", 0) == 234
    if omitted:
        assert "this comment is limited to" in text and f"[full report]({URL})" in text


def test_oversized_run_shows_the_largest_slowdowns_first(big_run: dict) -> None:
    text = render_markdown(big_run, max_chars=6000)
    shown = [m["check"] for m in _ROW.finditer(text)]
    deltas = {f"{v['fixture']}[{v['backend']}]": v["delta"] for v in big_run["verdicts"] if v["kind"] == "REGRESSED"}
    assert shown and all(check in deltas for check in shown)
    assert [deltas[c] for c in shown] == sorted(deltas.values(), reverse=True)[: len(shown)]
    assert "the HTML report artifact of this workflow run" in text  # no URL: where the full table is


def test_oversized_run_at_githubs_limit_shows_most_regressions_and_short_tail_lists(big_run: dict) -> None:
    text = render_markdown(big_run, report_url=URL)
    rows = [m["kind"] for m in _ROW.finditer(text)]
    assert rows.count("REGRESSED") == 234  # every regression fits; the unchanged checks are cut
    winners = re.search(r"^\*\*Winners:\*\* (.*)$", text, flags=re.MULTILINE)
    assert winners
    more = re.search(r"…and ([\d,]+) more fixtures: see", winners.group(1))
    assert more and winners.group(1).count(" → ") + int(more.group(1).replace(",", "")) == 700
    commands = re.findall(r"^pytest --aitune --aitune-update --aitune-fixtures (\S+)$", text, flags=re.MULTILINE)
    more_commands = re.search(r"_…and ([\d,]+) more fixtures with a regression", text)
    assert commands and more_commands and len(commands) + int(more_commands.group(1)) == 234
    assert len(text) <= MAX_COMMENT_CHARS and len(winners.group(0)) <= MAX_COMMENT_CHARS // 8


def test_a_run_that_fits_loses_nothing(run: dict) -> None:
    text = render_markdown(_regressed(run))
    assert "not shown" not in text and "more fixtures" not in text
    assert len(_ROW.findall(text)) == len(run["verdicts"])


def test_nothing_changed_is_said_only_when_nothing_changed(run: dict) -> None:
    quiet = copy.deepcopy(run)
    for v in quiet["verdicts"]:
        if v["kind"] == "IMPROVED":
            v.update(kind="PASS", reasons=[])
    assert "Nothing changed beyond the noise." in render_markdown(quiet)
    assert "Nothing changed beyond the noise." not in render_markdown(run)


def test_html_in_a_note_cannot_open_markup(run: dict) -> None:
    odd = copy.deepcopy(run)
    for v in odd["verdicts"]:
        if v["kind"] == "SKIPPED":
            v["notes"] = ["unavailable: <details><summary>x</summary>"]
    text = render_markdown(odd)
    _balanced(text)
    assert "&lt;details>" in text


def test_a_limit_too_small_for_any_comment_is_refused(run: dict) -> None:
    with pytest.raises(ValueError, match="at least 1,000"):
        render_markdown(run, max_chars=500)


def test_a_regression_against_the_base_is_accepted_by_an_acknowledgement_not_an_update(run: dict) -> None:
    """A new user ran the comment's update command on a relative check: the base still measured the
    same, and the check still failed. What accepts it there is [tool.aitune.acknowledged]."""
    relative = _regressed(run)
    for v in relative["verdicts"]:
        v.update(mode="relative", base_ref="main (1a2b3c4d5e6f)")
    text = render_markdown(relative)
    assert "--aitune-update" not in text
    assert "acknowledge it in pyproject.toml" in text
    # bounded: the slowdown's CI reached +53%, so at most +60% is accepted (an entry without a bound
    # accepted every later slowdown of the check)
    assert (
        '[tool.aitune.acknowledged]\n"tune_small_cnn[inductor]" = '
        '{ reason = "why this change is expected", max_slowdown = "60%" }'
    ) in text
    # a check acknowledged already, whose bound this slowdown exceeded: raise it (a second line of
    # the same key would make pyproject.toml fail to parse)
    exceeded = copy.deepcopy(relative)
    for v in exceeded["verdicts"]:
        if v["kind"] == "REGRESSED":
            v["acknowledged"] = "new kernel"
    text = render_markdown(exceeded)
    assert '# "tune_small_cnn[inductor]" is acknowledged already: raise its max_slowdown to "60%"' in text
    stored = render_markdown(_regressed(run))
    assert "pytest --aitune --aitune-update --aitune-fixtures tune_small_cnn" in stored
    assert '"tune_small_cnn[inductor]" = ' not in stored


def test_checks_whose_latency_was_not_judged_are_not_counted_as_unchanged(run: dict) -> None:
    """A 2.8x slowdown beside a busy neighbour passed, not judged, and the comment filed it under
    "unchanged"; it is counted apart."""
    busy = copy.deepcopy(run)
    for v in busy["verdicts"]:
        if v["fixture"] == "tune_small_cnn" and v["backend"] == "eager":
            v.update(delta=None, delta_ci=None, notes=["latency not judged: other processes took 0.91 CPU cores"])
    text = render_markdown(busy)
    assert "<summary>12 unchanged (6 passed, 6 skipped), 1 with latency not judged (1 passed)</summary>" in text


def test_a_pass_that_could_not_judge_latency_gets_no_green_headline(run: dict) -> None:
    """Two new users' busy runners: slowdowns of 15-51% passed "not judged", and the comment read
    "✅ no regressions ... Nothing changed beyond the noise" with the reason folded away."""
    from aitune_ci.report import render_report

    busy = copy.deepcopy(run)
    for v in busy["verdicts"]:
        if v["kind"] == "IMPROVED":
            v.update(kind="PASS", reasons=[])
        if v["fixture"] == "tune_small_cnn" and v["backend"] == "eager":
            v.update(delta=None, delta_ci=None, notes=["latency not judged: other processes took 0.91 CPU cores"])
    text = render_markdown(busy)
    assert "✅" not in text.split("\n\n")[1]
    assert f"## ⚠️ aitune-ci: no regressions, but latency not judged for 1 of {len(busy['verdicts'])} checks" in text
    assert (
        "Nothing changed beyond the noise in the checks that were judged. Latency was not judged for 1 check, "
        "so it could not find a "
        "slowdown: latency not judged: other processes took 0.91 CPU cores"
    ) in text
    assert step_outputs(busy)["not-judged"] == 1 and step_outputs(run)["not-judged"] == 0
    html = render_report(busy, ".html")
    assert 'id="not-judged"' in html and "other processes took 0.91 CPU cores" in html


def test_a_check_doing_the_same_work_as_its_base_is_unchanged_not_unjudged(run: dict) -> None:
    """Nothing could have changed in it: a PR that changes no model read "14 with latency not judged"."""
    same = copy.deepcopy(run)
    for v in same["verdicts"]:
        if v["kind"] in ("PASS", "IMPROVED"):
            v.update(kind="PASS", reasons=[], mode="relative", base_ref="main (1a2b3c4d5e6f)", identical_to_base=True)
            v.update(
                delta=None, delta_ci=None, paired=False, notes=["latency not compared: the base does the same work"]
            )
    text = render_markdown(same)
    assert "## ✅ aitune-ci: no regressions" in text and "not judged" not in text
    assert "| same work |" in text  # not an older reading of the same work beside "identical"
    assert step_outputs(same)["not-judged"] == 0


def test_a_merge_with_a_missing_shard_fails_the_comment_report_and_outputs(run: dict) -> None:
    """`aitune-ci merge --allow-missing-shards` recorded the lost shard, and the comment read "✅ no regressions"."""
    from aitune_ci.report import render_report

    merged = {**copy.deepcopy(run), "missing_shards": [2]}
    text = render_markdown(merged)
    assert "no regressions" not in text and "## ❌ aitune-ci: 1 missing shard" in text
    assert "### Missing shards: 2\n\nNo results came from shard 2 of this split" in text
    html = render_report(merged, ".html")
    assert 'id="missing-shards"' in html
    outputs = step_outputs(merged)
    assert outputs["verdict"] == "failed" and outputs["failing"] is True and outputs["missing-shards"] == 1


@pytest.mark.parametrize("winner", ["eager", "mixed"])
def test_the_parts_choices_are_shown_only_when_their_mixture_won(run: dict, winner: str) -> None:
    """A tune with modules=[...] records each part's choice whether or not the mixture won; a new
    user's whole-model onnxruntime winner was shown as "mixed: backbone=onnxruntime, head=eager"."""
    from aitune_ci.report import render_report

    tuned = copy.deepcopy(run)
    result = tuned["results"][0]
    result.update(winner=winner, module_choice={"features": "inductor", "classifier": "eager"})
    text, html = render_markdown(tuned), render_report(tuned, ".html")
    shown = "(mixed: features=inductor, classifier=eager)" in text
    assert shown is (winner == "mixed"), text
    assert ("features → inductor" in html) is (winner == "mixed")


def test_a_broken_fixture_makes_the_comment_report_and_outputs_fail(run: dict) -> None:
    """A run whose fixture could not be checked read "✅ no regressions" everywhere but the terminal."""
    from aitune_ci.report import render_report

    broken = {
        **copy.deepcopy(run),
        "broken": [{"fixture": "tune_bert", "error": "tune_bert: baseline unreadable\nmore"}],
    }
    text = render_markdown(broken)
    assert "no regressions" not in text and "## ❌ aitune-ci: 1 broken fixture" in text
    assert "### Broken: no verdict for these fixtures\n\n- `tune_bert`: tune_bert: baseline unreadable" in text
    html = render_report(broken, ".html")
    assert 'id="broken"' in html and "<code>tune_bert</code>" in html
    outputs = step_outputs(broken)
    assert outputs["verdict"] == "failed" and outputs["failing"] is True and outputs["broken"] == 1


def test_a_backend_that_stopped_working_gets_no_acknowledgement_or_update_to_copy(run: dict) -> None:
    """A new user pasted the comment's acknowledgement for a backend now failing its accuracy gate,
    and the check failed on, the comment now telling them to raise a max_slowdown."""
    broken = copy.deepcopy(run)
    for v in broken["verdicts"]:
        if v["fixture"] == "tune_small_cnn" and v["backend"] == "inductor":
            v.update(kind="REGRESSED", reasons=["accuracy", "now-failing"], delta=None, delta_ci=None)
    for mode in ("relative", "stored"):
        for v in broken["verdicts"]:
            v.update(mode=mode, base_ref="main (1a2b3c4d5e6f)" if mode == "relative" else None)
        text = render_markdown(broken)
        assert "## 🔴 aitune-ci: 1 regression" in text
        assert (
            "[tool.aitune.acknowledged]" not in text and "--aitune-update --aitune-fixtures tune_small_cnn" not in text
        )
        # what does resolve it, in the comment too (only the terminal said it)
        assert "A backend that stopped working (it no longer builds, runs or passes its accuracy gate) is fixed" in text
        assert (
            "- `tune_small_cnn[inductor]`: fix the backend (or, if the drop is expected, widen the spec's "
            "TuneSpec(tolerance=...), which every backend of the fixture shares)"
        ) in text
