"""The github-action-benchmark export (``tool: customSmallerIsBetter``): its schema, its values, the CLI flag.

The schema is the one the action parses with (benchmark-action/github-action-benchmark,
``src/extract.ts``): ``z.array(z.object({name: z.coerce.string(), value: z.coerce.number(),
range: z.coerce.string().optional(), unit: z.coerce.string(), extra: z.coerce.string().optional()}))``;
an empty list makes the action fail with "No benchmark result was found".
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from aitune_ci.cli import main
from aitune_ci.report import REPORT_FORMATS, render_report, report_suffix
from aitune_ci.report.action_benchmark import to_action_benchmark
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(DATA / "report_run.json")


def _check_schema(entries: object) -> None:
    """What github-action-benchmark's zod schema accepts, without its coercions (we write the exact types)."""
    assert isinstance(entries, list) and entries, "the action fails on an empty list"
    for entry in entries:
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["name"], str) and entry["name"]
        assert isinstance(entry["unit"], str) and entry["unit"]
        assert isinstance(entry["value"], (int, float)) and not isinstance(entry["value"], bool)
        assert math.isfinite(entry["value"])
        for key in ("range", "extra"):
            assert key not in entry or isinstance(entry[key], str)


def test_every_measured_backend_is_one_entry_with_its_median_in_ms(run: dict) -> None:
    text = render_report(run, ".action-benchmark.json")
    entries = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    _check_schema(entries)
    measured = {
        f"{r['name']}[{b['backend']}]": b["latency"] for r in run["results"] for b in r["backends"] if b["latency"]
    }
    assert len(entries) == len(measured)  # one entry each: names are unique chart keys
    assert {e["name"] for e in entries} == set(measured)
    for entry in entries:
        lat = measured[entry["name"]]
        assert entry["unit"] == "ms" and entry["value"] == lat["median_ms"]
        half = (lat["ci_high_ms"] - lat["ci_low_ms"]) / 2
        assert entry["range"].startswith("± ") and float(entry["range"][2:]) == pytest.approx(half, rel=1e-3)
        assert "95% CI of the median" in entry["extra"] and "p99" in entry["extra"]


def test_the_tooltip_carries_the_verdict_of_a_checked_backend(run: dict) -> None:
    entries = {e["name"]: e for e in to_action_benchmark(run)}
    kinds = {f"{v['fixture']}[{v['backend']}]": v["kind"] for v in run["verdicts"]}
    for name, entry in entries.items():
        if name in kinds:
            assert f"verdict {kinds[name]}" in entry["extra"]


def test_a_backend_without_a_finite_median_is_left_out(run: dict) -> None:
    odd = copy.deepcopy(run)
    first = next(b for b in odd["results"][0]["backends"] if b["latency"])
    first["latency"]["median_ms"] = float("inf")
    names = {e["name"] for e in to_action_benchmark(odd)}
    assert f"{odd['results'][0]['name']}[{first['backend']}]" not in names
    json.loads(render_report(odd, ".action-benchmark.json"))  # still strict JSON


def test_the_format_is_a_row_of_the_table_with_its_own_suffix_and_flag() -> None:
    assert report_suffix("nightly.action-benchmark.json") == ".action-benchmark.json"
    assert report_suffix("nightly.benchmark.json") == ".benchmark.json"  # the pytest-benchmark export keeps its own
    fmt = REPORT_FORMATS[".action-benchmark.json"]
    assert (fmt.name, fmt.flag, fmt.keywords) == ("action-benchmark", "--action-benchmark-json", ())
    with pytest.raises(TypeError, match="takes no options"):
        render_report({"results": [], "verdicts": []}, ".action-benchmark.json", commit="x")


def test_aitune_ci_report_writes_it(run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_file, out = tmp_path / "run.json", tmp_path / "bench" / "aitune.action-benchmark.json"
    run_file.write_text(json.dumps(run))
    assert main(["report", str(run_file), "--action-benchmark-json", str(out), "--aitune-dir", str(tmp_path)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert json.loads(out.read_text()) == to_action_benchmark(run)
