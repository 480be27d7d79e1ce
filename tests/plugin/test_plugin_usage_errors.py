"""Option values a user easily gets wrong end the run at once, with the fix, before anything is tuned.

Each of these used to be accepted: a typo'd backend silently dropped its checks (a green PR check
of fewer backends), a report suffix crashed a finished run before its history line was written,
and an --aitune-* option without --aitune made a nightly that wrote nothing and passed.
"""

from __future__ import annotations

import pytest


def test_an_unknown_backend_in_the_filter_is_named_with_the_closest_one(project):
    project.add_fixture("tune_lin", backends=("eager", "onnxruntime"))

    result = project.tune("--aitune-backends", "eager,onxruntime")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--aitune-backends names an unknown backend 'onxruntime' (did you mean 'onnxruntime'?)*aitune-ci backends*"]
    )


def test_a_report_of_no_known_format_is_refused_before_tuning(project):
    project.add_fixture("tune_lin")

    result = project.tune("--aitune-update", "--aitune-report", "run.json", "--aitune-report", "out.xyz")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aitune-report: cannot tell the report format of 'out.xyz'*.html*"])
    assert not (project.path / ".aitune").exists()  # nothing tuned, nothing written


def test_a_report_of_no_known_format_in_the_ini_is_refused_naming_the_key(project):
    project.add_fixture("tune_lin")
    project.configure(ini='aitune_report = ["run.json", "run.yaml"]')

    result = project.tune()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option aitune_report = *cannot tell the report format of 'run.yaml'*"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--aitune-measure-seconds", "-1", "*--aitune-measure-seconds expects seconds above 0 such as 4, got '-1'*"),
        ("--aitune-threshold", "5", "*--aitune-threshold '5' reads as a fraction, 500%: write 5% for 5 percent*"),
    ],
)
def test_a_value_out_of_its_range_is_a_usage_error(project, option, value, message):
    project.add_fixture("tune_lin")

    result = project.tune(option, value)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_an_aitune_option_without_aitune_is_a_usage_error(project):
    project.add_fixture("tune_lin")

    result = project.run("--aitune-update", "--aitune-report", "run.json")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--aitune-update, --aitune-report does nothing without --aitune*run pytest --aitune --aitune-update*"]
    )


@pytest.mark.parametrize(
    "ini",
    [
        'aitune_report = ["run.json"]\naitune_measure_seconds = "0.2"',
        'addopts = "--aitune-measure-seconds=0.2 --aitune-report=run.json"',
    ],
    ids=["ini-keys", "addopts"],
)
def test_aitune_options_in_the_ini_or_addopts_leave_a_plain_run_alone(project, ini):
    """A repo configures aitune in its ini file, or carries --aitune-* options in addopts (or
    PYTEST_ADDOPTS) for its --aitune runs, and still runs its unit tests with plain pytest."""
    project.add_fixture("tune_lin")
    project.configure(ini=ini)
    project.write("test_unit.py", "def test_one():\n    assert True\n")

    result = project.run()

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)


def test_a_repo_config_key_naming_no_check_is_said_once(project):
    project.add_fixture("tune_lin")
    project.configure(aitune=project.AITUNE + '\n\n[tool.aitune.thresholds]\n"tune_lni[eager]" = 0.5\n')

    result = project.tune("--aitune-update")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            '*warning: *pyproject.toml: [[]tool.aitune.thresholds[]]: "tune_lni[[]eager[]]" matches no check collected '
            'in this run (did you mean "tune_lin[[]eager[]]"?)*'
        ]
    )
    assert result.stdout.str().count("matches no check collected") == 1


def test_strict_markers_without_xdist_runs_and_warns_about_no_mark(project):
    """Items carried pytest-xdist's ``xdist_group`` mark even where xdist is not loaded: every run
    warned about an unknown mark, and ``--strict-markers`` (a common addopts) ended it in an
    INTERNALERROR before anything was tuned."""
    project.add_fixture("tune_lin")

    result = project.tune(
        "--aitune-update",
        "-p",
        "no:xdist",
        "--strict-markers",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
        subprocess=True,  # in-process, the xdist this suite runs under stays registered
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "xdist_group" not in result.stdout.str() + result.stderr.str()
