"""The --aitune-* option parsers: a value a user can easily get wrong is refused before anything is tuned."""

from __future__ import annotations

import argparse

import pytest

from aitune_ci.options import parse_report, parse_seconds, parse_threshold


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), ("150%", 1.5), ("0.999", 0.999)])
def test_a_threshold_is_a_fraction_or_a_percentage(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "1", "1.5", "9"])
def test_a_bare_number_of_one_or_more_is_refused_with_both_readings(text: str) -> None:
    """'5' for five percent would read as 500%, under which a 2x slowdown passes."""
    with pytest.raises(argparse.ArgumentTypeError, match=rf"write {text}% for {text} percent, or \d+% if you mean it"):
        parse_threshold(text)


@pytest.mark.parametrize("text", ["-1", "0", "nan", "inf", "abc", ""])
def test_a_measurement_budget_is_seconds_above_zero(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expects seconds above 0"):
        parse_seconds(text)
    assert parse_seconds("0.5") == 0.5


def test_a_report_path_names_a_format(tmp_path) -> None:
    assert parse_report("run.json") == "run.json"
    assert parse_report("out/report.benchmark.json") == "out/report.benchmark.json"
    with pytest.raises(argparse.ArgumentTypeError, match=r"cannot tell the report format of 'out.xyz'.*\.html"):
        parse_report("out.xyz")
    with pytest.raises(argparse.ArgumentTypeError, match="cannot tell the report format"):
        parse_report(str(tmp_path))  # a folder: no suffix


def test_a_folder_named_like_a_report_is_refused(tmp_path) -> None:
    folder = tmp_path / "reports.json"
    folder.mkdir()
    with pytest.raises(argparse.ArgumentTypeError, match="is a directory: give a file"):
        parse_report(str(folder))
