"""A broken tune fixture fails its own items with a message saying what to do; other fixtures still run."""

from __future__ import annotations

import pytest

_BROKEN = """
import pytest
import torch
import aitune_ci as ait


@pytest.fixture(scope="session")
def model_path():
    return "model.pt"


@ait.tune_fixture
def tune_needs_fixture(model_path):
    return ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], backends=["eager"], device="cpu")


@ait.tune_fixture
def tune_raises():
    raise FileNotFoundError("weights.bin is missing")


@ait.tune_fixture
def tune_returns_model():
    return torch.nn.Linear(2, 2)
"""


@pytest.fixture
def broken(project):
    project.write("test_broken.py", _BROKEN)
    project.add_fixture("tune_fine")
    return project.tune("-v")


def test_broken_fixture_gets_one_failing_item_and_the_good_one_still_passes(broken):
    broken.assert_outcomes(passed=2, failed=3)
    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    broken.stdout.fnmatch_lines_random(
        [
            "test_broken.py::tune_needs_fixture[[]selection[]] FAILED*",
            "test_broken.py::tune_raises[[]selection[]] FAILED*",
            "test_broken.py::tune_returns_model[[]selection[]] FAILED*",
            "conftest.py::tune_fine[[]eager[]] PASSED*",
        ]
    )


def test_fixture_that_requests_another_fixture_says_to_build_it_inside(broken):
    broken.stdout.fnmatch_lines(
        [
            "tune_needs_fixture requests fixtures (model_path), but `pytest --aitune` calls tune_* fixtures itself*"
            "no other fixture exists for it*Build what it needs inside the fixture*"
        ]
    )


def test_fixture_that_raises_names_the_exception_and_where_in_the_users_code(broken):
    broken.stdout.fnmatch_lines(
        [
            "tune_raises raised FileNotFoundError: weights.bin is missing",
            '  at test_broken.py:19 in tune_raises: raise FileNotFoundError("weights.bin is missing")',
        ]
    )


def test_fixture_returning_the_model_says_to_return_a_tunespec(broken):
    broken.stdout.fnmatch_lines(
        ["tune_returns_model returned Linear (Linear(*)); a tune_* fixture must return ait.TuneSpec(model=*"]
    )


def test_failure_message_is_shown_without_a_traceback(broken):
    out = broken.stdout.str()
    assert "Traceback" not in out
    assert "AituneCheckFailed" not in out


def test_spec_that_fails_validation_fails_with_the_spec_error(project):
    project.write(
        "conftest.py",
        "import torch\nimport aitune_ci as ait\n\n\n"
        "@ait.tune_fixture\n"
        "def tune_typo():\n"
        "    return ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], backends=['eagr'])\n",
    )

    result = project.tune()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["tune_typo raised SpecError: *eagr*"])


def test_tune_fixture_decorator_rejects_a_name_without_the_tune_prefix(project):
    project.write(
        "conftest.py",
        "import aitune_ci as ait\n\n\n@ait.tune_fixture\ndef resnet():\n    pass\n",
    )

    result = project.tune()

    assert result.ret != pytest.ExitCode.OK
    result.stderr.fnmatch_lines(["*'resnet': the name must start with 'tune_' (e.g. tune_resnet)*"])


def test_two_different_fixtures_with_one_name_fail_asking_for_a_rename(project):
    project.add_fixture("tune_twice", where="conftest.py")
    project.add_fixture("tune_twice", where="test_models.py")

    result = project.tune()

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["tune_twice is defined twice, in conftest.py and in test_models.py*names must be unique. Rename one of them."]
    )


def test_fixture_imported_into_a_test_module_is_tuned_once(project):
    project.add_fixture("tune_shared", where="shared_fixtures.py")
    project.write("test_models.py", "from shared_fixtures import tune_shared  # noqa: F401\n")
    project.write("test_more.py", "from shared_fixtures import tune_shared  # noqa: F401\n")

    result = project.tune("-v")

    result.assert_outcomes(passed=2)
    assert project.verdicts(result) == {"tune_shared[eager]": "NEW"}


def test_the_count_line_counts_the_fixtures_that_failed_before_any_verdict(broken):
    """It read "aitune: 1 new" beside pytest's "3 failed": the summary a user reads left them out."""
    broken.stdout.fnmatch_lines(
        [
            "aitune: 1 new, 3 fixtures broken "
            "(tune_needs_fixture, tune_raises, tune_returns_model: see the failures above)"
        ]
    )
