"""Every --aitune-* option is also an ini key under [tool.pytest.ini_options]; the command line wins."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker


def test_aitune_dir_from_ini_places_the_baselines(project):
    project.add_fixture("tune_lin")
    project.configure(ini='aitune_dir = "custom"')

    result = project.tune("--aitune-update")

    assert result.ret == pytest.ExitCode.OK
    assert set(project.baselines("custom")) == {"tune_lin"}
    assert not (project.path / ".aitune").exists()
    result.stdout.fnmatch_lines([f"aitune: baselines in {project.path / 'custom'} (updating)"])


def test_command_line_dir_wins_over_the_ini(project):
    project.add_fixture("tune_lin")
    project.configure(ini='aitune_dir = "custom"')

    project.tune("--aitune-update", "--aitune-dir", "from_cli")

    assert set(project.baselines("from_cli")) == {"tune_lin"}
    assert not (project.path / "custom").exists()


def test_every_option_can_live_in_the_ini(project):
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.configure(
        ini="\n".join(
            [
                "aitune = true",
                "aitune_update = true",
                'aitune_backends = "eager"',
                'aitune_measure_seconds = "0.3"',
                'aitune_threshold = "150%"',
                'aitune_report = ["run.json"]',
            ]
        )
    )

    result = project.run("-v")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["conftest.py::tune_lin[[]eager[]] PASSED*"])
    assert "tune_lin[eager-bf16]" not in result.stdout.str()
    assert set(project.load_baseline("tune_lin")["backends"]) == {"eager"}
    report = json.loads((project.path / "run.json").read_text())
    assert [(v["backend"], v["kind"]) for v in report["verdicts"]] == [("eager", "NEW")]


def test_threshold_from_ini_is_applied(project):
    """Read from the run JSON, not from a PASS: see test_plugin_repo_config.py."""
    project.add_fixture("tune_lin")
    for _ in range(5):  # five updates in separate runs arm the stored latency verdict
        project.tune("--aitune-update")
    project.forget_work("tune_lin")  # of other code: this run is judged, not passed as the same work
    project.configure(ini='aitune_threshold = "900%"', aitune="")

    project.tune("--aitune-report", "run.json")

    report = json.loads((project.path / "run.json").read_text())
    assert [(v["backend"], v["threshold"]) for v in report["verdicts"]] == [("eager", 9.0)]


def test_invalid_ini_value_is_a_usage_error_naming_the_key(project):
    project.add_fixture("tune_lin")
    project.configure(ini='aitune_threshold = "fast"')

    result = project.tune()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option aitune_threshold = 'fast'*expects a fraction (0.05) or percent (5%)*"])


def test_invalid_command_line_value_is_a_usage_error(project):
    project.add_fixture("tune_lin")

    result = project.tune("--aitune-shard", "3/2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aitune-shard '3/2': i must be between 1 and n*"])
