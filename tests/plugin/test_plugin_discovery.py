"""Which items `pytest --aitune` generates, what they are called, and that it does nothing without --aitune."""

from __future__ import annotations

import pytest


def test_conftest_and_module_fixtures_get_backend_and_selection_items(project):
    project.add_fixture("tune_shared", backends=("eager", "eager-bf16"), where="conftest.py")
    project.add_fixture("tune_local", backends=("eager",), where="test_models.py")

    result = project.tune("-v")

    result.stdout.fnmatch_lines_random(
        [
            "conftest.py::tune_shared[[]eager[]] PASSED*",
            "conftest.py::tune_shared[[]eager-bf16[]] PASSED*",
            "conftest.py::tune_shared[[]selection[]] PASSED*",
            "test_models.py::tune_local[[]eager[]] PASSED*",
            "test_models.py::tune_local[[]selection[]] PASSED*",
        ]
    )
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.OK


def test_fixture_in_a_nested_conftest_is_named_after_its_file(project):
    project.add_fixture("tune_nested", where="models/conftest.py")
    project.write("models/test_models.py", "def test_plain():\n    pass\n")

    result = project.tune("-v")

    result.stdout.fnmatch_lines_random(
        ["models/conftest.py::tune_nested[[]eager[]] PASSED*", "models/conftest.py::tune_nested[[]selection[]] PASSED*"]
    )
    result.assert_outcomes(passed=3)


def test_eager_is_always_checked_even_when_the_spec_omits_it(project):
    project.add_fixture("tune_lin", backends=("eager-bf16",))

    result = project.tune("--collect-only", "-q")

    result.stdout.fnmatch_lines(
        [
            "conftest.py::tune_lin[[]eager[]]",
            "conftest.py::tune_lin[[]eager-bf16[]]",
            "conftest.py::tune_lin[[]selection[]]",
        ]
    )


def test_backends_option_filters_items_but_keeps_eager(project):
    project.add_fixture("tune_lin", backends=("eager", "eager-fp16", "eager-bf16"))

    result = project.tune("--aitune-backends", "eager-bf16", "--collect-only", "-q")

    out = result.stdout.str()
    assert "tune_lin[eager]" in out and "tune_lin[eager-bf16]" in out
    assert "tune_lin[eager-fp16]" not in out


def test_keyword_selects_one_fixture_and_the_other_is_not_tuned(project):
    project.add_fixture("tune_kept")
    project.add_fixture("tune_dropped")

    result = project.tune("-k", "tune_kept")

    result.assert_outcomes(passed=2, deselected=2)
    assert set(project.verdicts(result)) == {"tune_kept[eager]"}
    assert "tune_dropped" not in result.stdout.str()


def test_without_aitune_option_no_items_are_generated(project):
    project.add_fixture("tune_lin")
    project.write("test_plain.py", "def test_plain():\n    pass\n")

    result = project.run("-v")

    result.assert_outcomes(passed=1)
    assert "tune_lin" not in result.stdout.str()
    assert " aitune " not in result.stdout.str()
    assert not (project.path / ".aitune").exists()


def test_without_aitune_option_the_plugin_does_not_import_torch(project):
    # A conftest that does not import torch itself: the fixture body would, but is never called.
    project.write(
        "conftest.py",
        "import aitune_ci as ait\n\n\n"
        "@ait.tune_fixture\n"
        "def tune_lazy():\n"
        "    import torch\n\n"
        "    return ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)])\n",
    )
    project.write(
        "test_modules.py",
        "import sys\n\n\n"
        "def test_torch_is_not_imported():\n"
        "    assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('aitune_ci'))\n",
    )

    result = project.run("-p", "no:cacheprovider", subprocess=True)

    result.assert_outcomes(passed=1)


def test_plugin_can_be_disabled_with_p_no_aitune(project):
    project.add_fixture("tune_lin")
    project.write("test_plain.py", "def test_plain():\n    pass\n")

    disabled = project.run("-p", "no:aitune", "-v")
    disabled.assert_outcomes(passed=1)
    assert "tune_lin" not in disabled.stdout.str()

    rejected = project.run("-p", "no:aitune", "--aitune")
    assert rejected.ret == pytest.ExitCode.USAGE_ERROR
    rejected.stderr.fnmatch_lines(["*unrecognized arguments: --aitune*"])


def test_plain_pytest_fixture_named_tune_is_discovered_too(project):
    project.write(
        "conftest.py",
        "import pytest\nimport torch\nimport aitune_ci as ait\n\n\n"
        "@pytest.fixture(scope='session')\n"
        "def tune_plain():\n"
        "    return ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], backends=['eager'], device='cpu')\n",
    )

    result = project.tune("-v")

    result.stdout.fnmatch_lines(["conftest.py::tune_plain[[]eager[]] PASSED*"])
    result.assert_outcomes(passed=2)


def test_tune_fixture_can_still_be_requested_by_an_ordinary_test(project):
    project.add_fixture("tune_lin")
    project.write(
        "test_uses_spec.py",
        "def test_spec_is_a_tunespec(tune_lin):\n    assert type(tune_lin).__name__ == 'TuneSpec'\n",
    )

    result = project.run()

    result.assert_outcomes(passed=1)


def test_aitune_marker_selects_or_excludes_the_generated_items(project):
    project.add_fixture("tune_lin")
    project.write("test_plain.py", "def test_plain():\n    pass\n")

    only = project.tune("-m", "aitune", "--collect-only", "-q")
    without = project.tune("-m", "not aitune", "--collect-only", "-q")

    only.stdout.fnmatch_lines(
        [
            "conftest.py::tune_lin[[]eager[]]",
            "conftest.py::tune_lin[[]selection[]]",
            "2/3 tests collected (1 deselected)*",
        ]
    )
    without.stdout.fnmatch_lines(["test_plain.py::test_plain", "1/3 tests collected (2 deselected)*"])
