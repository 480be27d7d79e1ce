"""Collection builds no model: items come from a plan (decorator, cache, baseline), fixtures are called lazily.

Every fixture here logs each call to ``built.log`` (one line: fixture name and process id), so a
test sees exactly when and where a model was built. The plan's staleness is made real: a fixture
reads its backends from a helper module, so editing that module changes the spec while the
file that defines the fixture (the one the cache is keyed on) stays the same.
"""

from __future__ import annotations

import json

import pytest
from test_plugin_relative import MODELS as SPIN_MODELS
from test_plugin_relative import _git

from aitune_ci.fixture import Declared, tune_fixture
from aitune_ci.plugin.plan import PLAN_SCHEMA_VERSION, Drift, Plan, PlanCache, plan_from_baseline, plan_from_declaration

_LOGGED = """
import os
from pathlib import Path

import torch
import aitune_ci as ait

LOG = Path(__file__).parent / "built.log"


def built(name):
    with LOG.open("a") as f:
        f.write(f"{{name}} {{os.getpid()}}\\n")
"""

_FIXTURE = """

@ait.tune_fixture{declare}
def {name}():
    built("{name}")
    return ait.TuneSpec(model=torch.nn.Linear(8, 4), samples=[torch.randn(2, 8)], backends={backends}, device="cpu")
"""


def _conftest(project, *fixtures: tuple[str, str, str]) -> None:
    """``fixtures``: (name, decorator arguments such as ``(backends=[...])`` or "", backends source text)."""
    text = _LOGGED.format() + "".join(_FIXTURE.format(name=n, declare=d, backends=b) for n, d, b in fixtures)
    project.write("conftest.py", text)


def _built(project) -> list[str]:
    path = project.path / "built.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def _items(result: pytest.RunResult) -> list[str]:
    return [line.split("::", 1)[1] for line in result.outlines if "::tune_" in line]


# -- no model at collection when a plan exists -----------------------------------------------------
def test_collect_only_with_a_declared_plan_builds_no_model(project):
    _conftest(project, ("tune_lin", '(backends=["eager-bf16"])', "None"))

    result = project.tune("--collect-only", "-q")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert _items(result) == ["tune_lin[eager]", "tune_lin[eager-bf16]", "tune_lin[selection]"]
    assert _built(project) == []
    assert not (project.path / ".aitune" / "plans").exists()  # the declaration is the plan: nothing cached


def test_a_spec_without_backends_tunes_what_its_decorator_declares(project):
    _conftest(project, ("tune_lin", '(backends=["eager-bf16"])', "None"))

    result = project.tune()

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert set(project.verdicts(result)) == {"tune_lin[eager]", "tune_lin[eager-bf16]"}
    assert _built(project) == ["tune_lin"]  # called once, by the item that tuned it


def test_the_first_collection_calls_the_fixture_once_and_caches_its_plan(project):
    _conftest(project, ("tune_lin", "", '["eager", "eager-bf16"]'))

    first = project.tune("--collect-only", "-q")
    second = project.tune("--collect-only", "-q")

    assert _items(first) == _items(second) == ["tune_lin[eager]", "tune_lin[eager-bf16]", "tune_lin[selection]"]
    assert _built(project) == ["tune_lin"]  # the first collection only
    plans = project.path / ".aitune" / "plans"
    entry = json.loads((plans / "tune_lin.json").read_text())
    assert entry["schema_version"] == PLAN_SCHEMA_VERSION
    assert (entry["backends"], entry["mixed"], entry["source"]["file"]) == (
        ["eager", "eager-bf16"],
        False,
        "conftest.py",
    )
    assert (plans / ".gitignore").read_text().splitlines()[-1] == "*"  # a local cache, never committed


def test_editing_the_file_that_defines_the_fixture_replans_it(project):
    _conftest(project, ("tune_lin", "", '["eager"]'))
    project.tune("--collect-only", "-q")

    _conftest(project, ("tune_lin", "", '["eager", "eager-bf16"]'))
    result = project.tune("--collect-only", "-q")

    assert _items(result) == ["tune_lin[eager]", "tune_lin[eager-bf16]", "tune_lin[selection]"]
    assert _built(project) == ["tune_lin", "tune_lin"]


def test_the_committed_baseline_plans_a_fixture_without_calling_it(project):
    _conftest(project, ("tune_lin", "", '["eager-bf16", "eager"]'))
    project.tune("--aitune-update").assert_outcomes(passed=3)
    assert _built(project) == ["tune_lin"]  # evaluated at collection (no plan yet), tuned by the same call
    for path in (project.path / ".aitune" / "plans").glob("*.json"):
        path.unlink()  # a fresh checkout in CI: the cache is not committed, the baseline is

    result = project.tune("--collect-only", "-q")

    assert _items(result) == ["tune_lin[eager]", "tune_lin[eager-bf16]", "tune_lin[selection]"]
    assert _built(project) == ["tune_lin"]


def test_backend_filter_and_shard_apply_to_planned_items(project):
    _conftest(
        project,
        ("tune_a", '(backends=["eager-bf16", "eager-fp16"])', "None"),
        ("tune_b", '(backends=["eager-bf16", "eager-fp16"])', "None"),
    )

    result = project.tune("--aitune-backends", "eager-fp16", "--aitune-shard", "2/2", "--collect-only", "-q")

    assert _items(result) == ["tune_b[eager]", "tune_b[eager-fp16]", "tune_b[selection]"]
    assert _built(project) == []


def test_a_deselected_fixture_is_never_built(project):
    _conftest(
        project,
        ("tune_kept", '(backends=["eager"])', '["eager"]'),
        ("tune_dropped", '(backends=["eager"])', '["eager"]'),
    )

    result = project.tune("-k", "tune_kept")

    result.assert_outcomes(passed=2, deselected=2)
    assert _built(project) == ["tune_kept"]


def test_a_fixture_that_raises_when_called_lazily_fails_every_item_with_its_error(project):
    project.write(
        "conftest.py",
        "import aitune_ci as ait\n\n\n"
        "@ait.tune_fixture(backends=['eager'])\n"
        "def tune_broken():\n"
        "    raise FileNotFoundError('weights.bin is missing')\n",
    )

    result = project.tune("-v")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["tune_broken raised FileNotFoundError: weights.bin is missing"])


def test_a_declared_unknown_backend_fails_with_a_suggestion(project):
    _conftest(project, ("tune_lin", '(backends=["eager-bf61"])', "None"))

    result = project.tune()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*names unknown backend 'eager-bf61'*eager-bf16*aitune-ci backends*"])
    assert _built(project) == []


# -- a stale plan loses no check --------------------------------------------------------------------
_FROM_HELPER = """
import os
from pathlib import Path

import torch
import aitune_ci as ait
from mybackends import BACKENDS


@ait.tune_fixture{declare}
def tune_lin():
    with (Path(__file__).parent / "built.log").open("a") as f:
        f.write(f"tune_lin {{os.getpid()}}\\n")
    torch.manual_seed(0)
    return ait.TuneSpec(model=torch.nn.Linear(8, 4), samples=[torch.randn(2, 8)], backends=BACKENDS, device="cpu")
"""


def _helper_repo(project, backends: list[str], declare: str = "") -> None:
    project.write("conftest.py", _FROM_HELPER.format(declare=declare))
    _set_backends(project, backends)


def _set_backends(project, backends: list[str]) -> None:
    project.write("mybackends.py", f"BACKENDS = {backends!r}\n")
    for stale in (project.path / "__pycache__").glob("mybackends*"):
        stale.unlink()  # inline runs import it again; an mtime in the same second would keep the old bytecode


def test_a_stale_plan_skips_a_removed_backend_and_checks_an_added_one_under_selection(project):
    _helper_repo(project, ["eager", "eager-bf16"])
    project.tune("--aitune-update").assert_outcomes(passed=3)

    # The helper drops eager-bf16: the cached plan (same conftest.py) still has its item.
    _set_backends(project, ["eager"])
    removed = project.tune("-rs")

    assert removed.ret == pytest.ExitCode.OK, removed.stdout.str()
    removed.assert_outcomes(passed=2, skipped=1)
    removed.stdout.fnmatch_lines(
        [
            "*tune_lin[[]eager-bf16[]]: this item was made from the plan cached by an earlier run*no longer tunes "
            "eager-bf16 (it tunes eager). The plan is refreshed*"
        ]
    )
    assert _items(project.tune("--collect-only", "-q")) == ["tune_lin[eager]", "tune_lin[selection]"]

    # The helper brings eager-bf16 back, ~30 dB less accurate than its baseline (not a timing, which a
    # loaded machine may decline to judge): the plan has no item for it.
    _set_backends(project, ["eager", "eager-bf16"])
    project.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)
    added = project.tune()

    assert added.ret == pytest.ExitCode.TESTS_FAILED
    added.assert_outcomes(passed=1, failed=1)
    assert project.verdicts(added)["tune_lin[eager-bf16]"] == "REGRESSED (accuracy)"
    added.stdout.fnmatch_lines(
        [
            "*tune_lin: winner *",
            "*tune_lin[[]eager-bf16[]] (no item: not in the plan): FAILED *REGRESSED*",
            "*the items came from the plan cached by an earlier run*The plan is refreshed*",
        ]
    )
    assert _items(project.tune("--collect-only", "-q")) == [
        "tune_lin[eager]",
        "tune_lin[eager-bf16]",
        "tune_lin[selection]",
    ]
    assert len(_built(project)) == 3  # once per tuning run: collection never called it


def test_an_added_backend_that_passes_keeps_the_run_green_and_is_reported(project):
    _helper_repo(project, ["eager"])
    project.tune("--collect-only", "-q")
    _set_backends(project, ["eager", "eager-bf16"])

    result = project.tune()

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert project.verdicts(result) == {"tune_lin[eager]": "NEW", "tune_lin[eager-bf16]": "NEW"}
    result.stdout.fnmatch_lines(
        ["*tune_lin: its spec tunes eager-bf16, which had no item (checked under its [[]selection[]] item)*"]
    )


def test_a_spec_that_disagrees_with_its_declaration_fails_naming_both(project):
    _helper_repo(project, ["eager"], declare='(backends=["eager", "eager-bf16"])')

    result = project.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tune_lin[[]eager-bf16[]]: this item was made from the @ait.tune_fixture(backends=...) declaration, "
            "but the spec of tune_lin no longer tunes eager-bf16 (it tunes eager). Make @ait.tune_fixture(backends=..., "
            "modules=...) of tune_lin list what its spec tunes: eager.*"
        ]
    )


# -- xdist: a worker builds only what it tunes ------------------------------------------------------
def test_each_xdist_worker_builds_only_the_fixtures_it_tunes(project):
    pytest.importorskip("xdist")
    _conftest(
        project,
        ("tune_a", '(backends=["eager"])', '["eager"]'),
        ("tune_b", '(backends=["eager"])', '["eager"]'),
    )

    result = project.tune("-n", "2", subprocess=True)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=4)
    assert sorted(_built(project)) == ["tune_a", "tune_b"]  # each once, in all processes together


# -- relative mode: the base's fixture is called only for a tuned head fixture ----------------------
_MODELS = SPIN_MODELS  # the busy-wait model of the relative-mode tests


_RELATIVE_CONFTEST = """
from pathlib import Path

import torch
import aitune_ci as ait


def built(name):
    with open("{log}", "a") as f:
        f.write(f"{{name}} {{Path(__file__).parent.name}}\\n")


@ait.tune_fixture(backends=["eager"])
def tune_a():
    built("tune_a")
    from mymodels import Spin  # imported when called: lazily, the base's code must still be the base's

    return ait.TuneSpec(model=Spin().eval(), samples=[torch.randn(4, 16)])


@ait.tune_fixture(backends=["eager"])
def tune_b():
    built("tune_b")
    from mymodels import Spin

    return ait.TuneSpec(model=Spin().eval(), samples=[torch.randn(2, 16)])
"""


@pytest.mark.quiet  # asserts on latency measured here
def test_relative_mode_calls_a_base_fixture_only_when_its_head_fixture_is_tuned(pytester, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    log = pytester.path.parent / f"{pytester.path.name}-built.log"
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naitune_measure_seconds = "1.0"\n')
    pytester.makepyfile(**{"mymodels/__init__.py": _MODELS.format(spin=0.001)})
    pytester.makeconftest(_RELATIVE_CONFTEST.format(log=log))
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-qm", "base")
    pytester.makepyfile(**{"mymodels/__init__.py": _MODELS.format(spin=0.0005)})  # the head is twice as fast
    _git(pytester.path, "commit", "-qam", "head")

    result = pytester.runpytest_subprocess(
        "--aitune", "--aitune-against", "HEAD~1", "--aitune-report", "run.json", "-k", "tune_a"
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdicts = {v["fixture"]: v for v in json.loads((pytester.path / "run.json").read_text())["verdicts"]}
    assert set(verdicts) == {"tune_a"}
    assert verdicts["tune_a"]["mode"] == "relative"
    assert verdicts["tune_a"]["kind"] == "IMPROVED"  # only the base's own Spin (1 ms) makes the head faster
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [name for name, _ in calls] == ["tune_a", "tune_a"]  # head and base; neither built tune_b
    assert {folder for _, folder in calls} == {pytester.path.name, calls[1][1]} and calls[0][1] != calls[1][1]


# -- pure parts -------------------------------------------------------------------------------------
def test_baseline_plan_puts_eager_first_and_sees_submodule_rows_as_a_mixed_check():
    data = {
        "schema_version": 1,
        "backends": {"inductor": {}, "eager": {}, "aoti": {}, "backbone/inductor": {}, "mixed": {}},
    }

    plan = plan_from_baseline(data, "b.json")

    assert plan == Plan(("eager", "aoti", "inductor"), True, "baseline", "b.json")
    assert plan.checks(["aoti"]) == ["eager", "aoti", "mixed"]
    assert plan_from_baseline({**data, "schema_version": 99}, "b.json") is None  # the check reports it
    assert plan_from_baseline({"schema_version": 1, "backends": {}}, "b.json") is None


def test_declaration_adds_eager_and_rejects_unknown_names():
    known = {"eager", "inductor", "aoti"}

    assert plan_from_declaration("tune_x", Declared(("inductor",), ("head",)), known) == Plan(
        ("eager", "inductor"), True, "decorator"
    )
    error = plan_from_declaration("tune_x", Declared(("inductr",)), known)
    assert isinstance(error, str) and "unknown backend 'inductr'" in error and "inductor" in error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backends": "eager"}, "expects a list of names"),
        ({"backends": ["eager", "eager"]}, "lists a name twice"),
        ({"modules": ["head"]}, "only completes backends"),
        ({"backends": ["eager"], "modules": [""]}, "non-empty strings"),
    ],
)
def test_decorator_arguments_are_checked_when_decorating(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        tune_fixture(**kwargs)


def test_cached_plan_is_valid_only_for_the_same_source_and_machine(tmp_path):
    cache = PlanCache(tmp_path / "plans")
    source = {"file": "conftest.py", "sha256": "a" * 64}
    cache.write("tune_x", ["eager", "inductor"], False, source, machine="m1")

    assert cache.read("tune_x", "a" * 64, lambda: "m1") == Plan(
        ("eager", "inductor"), False, "cache", str(cache.path("tune_x"))
    )
    assert cache.read("tune_x", "b" * 64, lambda: "m1") is None  # the file changed
    assert cache.read("tune_x", "a" * 64, lambda: "m2") is None  # backends=None: another machine decides
    cache.path("tune_x").write_text("{ not json")
    note = cache.read("tune_x", "a" * 64, lambda: "m1")
    assert isinstance(note, str) and "tune_x.json" in note and "rewritten" in note


def test_drift_names_removed_and_added_checks():
    drift = Drift("tune_x", "cache", ".aitune/plans/tune_x.json", ("eager", "aoti"), ("eager", "inductor"))

    assert (drift.removed, drift.added) == (("aoti",), ("inductor",))
    assert drift.removed_outcome("aoti").outcome.value == "skipped"
    declared = Drift("tune_x", "decorator", None, ("eager", "aoti"), ("eager",))
    assert declared.removed_outcome("aoti").outcome.value == "failed"
