"""examples/gpu-repo and bench/gpu_pr_check.py: the example collects here, its injected changes do what they claim.

The GPU run itself (nightly plus three relative-mode PR checks) is the lead's device call; here the
pure logic of the bench (patches, verdict judgement, goals) and the example's models are tested on CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gpu-repo"
_spec = importlib.util.spec_from_file_location("gpu_pr_check", ROOT / "bench" / "gpu_pr_check.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["gpu_pr_check"] = bench
_spec.loader.exec_module(bench)

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
NEEDS_TORCHVISION = "torchvision is not installed here (pip install torchvision); the ResNet-50 fixture needs it"


def _example_files(patch) -> dict[str, str]:
    return {name: (EXAMPLE / name).read_text() for name, _, _ in patch}


def _copy_example(tmp_path: Path, patch=()) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".aitune"))
    for name, text in bench.apply_patch(_example_files(patch), patch).items():
        (repo / name).write_text(text)
    return repo


# -- the patches -------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", ["comment", "refactor", "slowdown", "accuracy"])
def test_each_patch_applies_once_to_the_example_and_leaves_valid_python(check):
    patch = bench.PATCHES[check]
    before = _example_files(patch)
    after = bench.apply_patch(before, patch)
    for name, _old, new in patch:
        assert after[name] != before[name]
        assert after[name].count(new) == 1
        compile(after[name], name, "exec")


def test_the_comment_is_the_same_work_as_the_base_and_the_refactor_is_not():
    """The comment PR passes untimed (comments are not in the work key); the refactor PR times both sides."""
    from aitune_ci.store.build_inputs import _code_digest

    def digest(patch) -> str:
        text = bench.apply_patch(_example_files(bench.REFACTOR_PATCH), patch)["acme_models/heads.py"]
        return _code_digest("heads.py", text.encode())

    assert digest(bench.COMMENT_PATCH) == digest(())
    assert digest(bench.REFACTOR_PATCH) != digest(())


def test_a_patch_that_no_longer_matches_names_the_file_and_the_fix():
    files = {"acme_models/vision.py": "RESNET_STAGES = (3, 4, 23, 3)\n"}
    with pytest.raises(bench.PhaseError, match=r"acme_models/vision\.py: .* found it 0 times; .*SLOWDOWN_PATCH"):
        bench.apply_patch(files, bench.SLOWDOWN_PATCH[:1])


def _acme_modules() -> list[str]:
    return [n for n in sys.modules if n == "acme_models" or n.startswith("acme_models.")]


def _flops(repo: Path, small: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict:
    """The bench's FLOPs script, run here (not in a subprocess: importing torch and transformers again
    for each of base and head cost ~6 s a run); ``acme_models`` of ``repo`` is imported afresh."""
    with monkeypatch.context() as m:
        m.chdir(repo)
        m.setenv("GPU_REPO_SMALL", "1" if small else "0")
        m.setattr(sys, "path", list(sys.path))  # the script puts the repo first
        for name in _acme_modules():
            m.delitem(sys.modules, name)
        capsys.readouterr()
        exec(compile(bench._FLOPS_SCRIPT, "flops_script", "exec"), {"__name__": "__flops__"})
        printed = capsys.readouterr().out
        for name in _acme_modules():
            del sys.modules[name]
    return json.loads(printed.strip().splitlines()[-1])


@pytest.mark.parametrize("small", [True, False], ids=["small", "full"])
def test_the_injected_slowdown_adds_work_to_every_model(tmp_path, small, monkeypatch, capsys):
    base = _flops(_copy_example(tmp_path / "base"), small, monkeypatch, capsys)
    head = _flops(_copy_example(tmp_path / "head", bench.SLOWDOWN_PATCH), small, monkeypatch, capsys)
    for fixture in ("tune_resnet50", "tune_text_encoder", "tune_fusion"):
        if isinstance(base[fixture], str):  # the full ResNet-50 needs torchvision
            assert not small and not HAS_TORCHVISION and "torchvision" in base[fixture]
            continue
        # +20-38% FLOPs here: sized so that the GPU pays >= 10% more time (FLOPs are not time), and
        # far from doubling, which any check would catch
        assert 1.15 <= head[fixture] / base[fixture] <= 1.45, (fixture, head[fixture] / base[fixture])


def _head_class(text: str) -> type[torch.nn.Module]:
    namespace: dict = {}
    exec(compile(text, "heads.py", "exec"), namespace)
    return namespace["ClassifierHead"]


def test_the_accuracy_break_changes_only_what_is_compiled():
    """Eager output is unchanged; a traced (exported) head takes the bf16 branch and drifts past fp32 tolerance."""
    patched = bench.apply_patch(_example_files(bench.ACCURACY_PATCH), bench.ACCURACY_PATCH)["acme_models/heads.py"]
    torch.manual_seed(0)
    good = _head_class((EXAMPLE / "acme_models/heads.py").read_text())(512, 16).eval()
    broken = _head_class(patched)(512, 16).eval()
    broken.load_state_dict(good.state_dict())
    x = torch.randn(8, 512) * 3 + 1
    with torch.no_grad():
        assert torch.equal(good(x), broken(x))
        exported = torch.export.export(broken, (x,)).module()
        traced = exported(x)
    assert not torch.allclose(traced, good(x), atol=1e-4, rtol=1e-4)
    assert torch.allclose(traced, good(x), atol=0.1)  # numerics drift; the model is not simply broken


def test_backends_that_trace_the_model_are_the_ones_the_accuracy_break_affects():
    compiled = ["inductor", "inductor-reduce-overhead", "aoti", "onnxruntime", "tensorrt", "torch-tensorrt"]
    compiled += ["torchao-int8dq-compiled"]
    plain = ["eager", "eager-fp16", "eager-bf16", "cudagraphs", "torchao-int8wo", "mixed"]
    assert all(bench.is_compiled(b) for b in compiled)
    assert not any(bench.is_compiled(b) for b in plain)


# -- judging the runs --------------------------------------------------------------------------------


def _v(backend, kind, reasons=(), fixture="tune_x", notes=()):
    return {"fixture": fixture, "backend": backend, "kind": kind, "reasons": list(reasons), "notes": list(notes)}


def test_unchanged_passes_only_when_every_judged_check_passes():
    ok = [_v("eager", "PASS"), _v("inductor", "PASS"), _v("tensorrt", "SKIPPED")]
    assert bench.judge_check("unchanged", ok)["ok"]
    bad = bench.judge_check("unchanged", ok + [_v("aoti", "IMPROVED")])
    assert not bad["ok"] and bad["offenders"] == ["tune_x[aoti]"]
    assert not bench.judge_check("unchanged", [_v("eager", "SKIPPED")])["ok"]  # nothing judged is no evidence


def test_a_comment_counts_as_no_change_and_the_summary_says_what_was_timed():
    timed = {**_v("eager", "PASS"), "paired": True, "delta": 0.004}
    untimed = {**_v("inductor", "PASS"), "identical_to_base": True, "delta": None}
    j = bench.judge_check("comment", [timed, untimed])
    assert j["ok"] and (j["paired"], j["identical"]) == (1, 1)
    assert j["measured_delta"] == {"tune_x[eager]": 0.004}
    s = bench.summarize([_run("comment-warm", "comment", "warm", 90.0, [timed, _v("aoti", "IMPROVED")])])
    assert s["goals"]["unchanged_all_pass"] is False
    md = bench.render_markdown(s, {"machine": "test"})
    assert "- comment (warm): 1 of 2 PASS; 1 timed against the base (paired), 0 untimed" in md
    assert "not PASS: tune_x[aoti]" in md
    reused = {**_run("unchanged-warm", "unchanged", "warm", 20.0, [untimed]), "reused_results": 1}
    md = bench.render_markdown(bench.summarize([reused]), {"machine": "test"})
    assert "1 untimed (the base does the same work); 1 fixture(s) not tuned: the runner's stored result" in md


def test_slowdown_must_regress_on_latency_wherever_both_sides_ran():
    verdicts = [
        _v("eager", "REGRESSED", ["latency"]),
        _v("inductor", "PASS", notes=["latency not judged: ..."]),
        _v("cudagraphs", "FAILED"),  # failed on both sides: not a latency check
        _v("tensorrt", "SKIPPED"),
    ]
    j = bench.judge_check("slowdown", verdicts)
    assert (j["affected"], j["caught"], j["missed"], j["ok"]) == (2, ["tune_x[eager]"], ["tune_x[inductor]"], False)
    assert j["missed_notes"] == {"tune_x[inductor]": ["latency not judged: ..."]}


def test_accuracy_break_must_be_caught_on_compiled_backends_and_nowhere_else():
    verdicts = [
        _v("eager", "PASS"),
        _v("cudagraphs", "REGRESSED", ["latency"]),
        _v("inductor", "REGRESSED", ["accuracy"]),
        _v("aoti", "REGRESSED", ["now-failing"]),
        _v("onnxruntime", "SKIPPED"),
    ]
    j = bench.judge_check("accuracy", verdicts)
    assert j["ok"] and j["affected"] == 2
    assert j["false_alarms"] == ["tune_x[cudagraphs]"]
    j = bench.judge_check("accuracy", [_v("inductor", "REGRESSED", ["latency"]), _v("aoti", "FAILED")])
    assert not j["ok"] and j["missed"] == ["tune_x[inductor]", "tune_x[aoti]"]


def _run(phase, check, variant, wall, verdicts, timed_out=False):
    return {
        "phase": phase,
        "check": check,
        "variant": variant,
        "wall_s": wall,
        "exit_code": 0,
        "timed_out": timed_out,
        "verdicts": verdicts,
    }


def test_summary_goals_from_times_ratios_and_verdicts():
    passing = [_v("eager", "PASS"), _v("inductor", "PASS")]
    slow = [_v("eager", "REGRESSED", ["latency"]), _v("inductor", "REGRESSED", ["latency"])]
    runs = [
        _run("nightly", "nightly", "cold", 300.0, [_v("eager", "NEW")]),
        _run("unchanged-cold", "unchanged", "cold", 400.0, passing),
        _run("unchanged-warm", "unchanged", "warm", 60.0, passing),
        _run("slowdown-cold", "slowdown", "cold", 650.0, slow),
        _run("slowdown-warm", "slowdown", "warm", 200.0, slow),
    ]
    s = bench.summarize(runs, {"tune_x": 1.1})
    assert s["nightly"]["wall_s"] == 300.0 and s["nightly"]["counts"] == {"NEW": 1}
    assert s["checks"]["unchanged"]["cold_over_warm"] == pytest.approx(6.67)
    assert s["checks"]["slowdown"]["cold_over_warm"] == pytest.approx(3.25)
    assert s["goals"] == {
        "pr_check_warm_le_3min": False,  # slowdown warm took 200 s
        "pr_check_cold_le_10min": False,  # slowdown cold took 650 s
        "warm_ge_5x_faster_than_cold": False,
        "unchanged_all_pass": True,
        "slowdown_caught_on_every_backend": True,
        "accuracy_break_caught_on_every_compiled_backend": None,  # not run
    }
    md = bench.render_markdown(s, {"machine": "test", "small": True})
    assert "| unchanged | 400.0 | 60.0 | - | - | 6.67 |" in md
    assert "- accuracy break caught on every backend it affects: **not measured**" in md


def test_a_timed_out_run_fails_its_time_goal_and_has_no_ratio():
    runs = [
        _run("unchanged-cold", "unchanged", "cold", 540.0, None, timed_out=True),
        _run("unchanged-warm", "unchanged", "warm", 50.0, [_v("eager", "PASS")]),
    ]
    s = bench.summarize(runs)
    assert s["checks"]["unchanged"]["cold_over_warm"] is None
    assert s["goals"]["pr_check_cold_le_10min"] is False
    assert s["goals"]["unchanged_all_pass"] is False  # the cold run said nothing


def test_a_stored_mode_run_is_shown_beside_the_relative_ones_and_not_counted_in_the_goals():
    caught = [_v(b, "REGRESSED", ["latency"]) for b in ("eager", "inductor")]
    stored = [_v("eager", "PASS"), _v("inductor", "REGRESSED", ["latency"])]
    runs = [
        _run("slowdown-warm", "slowdown", "warm", 150.0, caught),
        _run("slowdown-stored", "slowdown", "stored", 400.0, stored),
    ]
    s = bench.summarize(runs)

    assert s["goals"]["pr_check_warm_le_3min"] is True  # 400 s in stored mode is not a warm relative check
    assert s["goals"]["slowdown_caught_on_every_backend"] is True  # nor is its missed eager
    row = next(
        line for line in bench.render_markdown(s, {"machine": "test"}).splitlines() if line.startswith("| slowdown")
    )
    assert "| 400.0 |" in row and "'PASS': 1" in row and row.endswith("| yes |")


def test_phases_expand_in_run_order_and_unknown_ones_are_refused():
    assert bench.expand_phases(["nightly", "unchanged", "accuracy-warm2"]) == [
        ("nightly", "nightly", ""),
        ("unchanged-cold", "unchanged", "cold"),
        ("unchanged-warm", "unchanged", "warm"),
        ("accuracy-warm2", "accuracy", "warm2"),
    ]
    assert bench.expand_phases(["slowdown-stored"]) == [("slowdown-stored", "slowdown", "stored")]
    assert len(bench.expand_phases(["checks"])) == 10  # five checks, cold and warm
    with pytest.raises(SystemExit, match="unknown phase 'fast'"):
        bench.expand_phases(["fast"])


# -- the example repo on this machine ----------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example (a run writes plans and reports into its repo)."""
    return _copy_example(tmp_path)


def _pytest(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_example_collects_three_tune_fixtures_without_a_gpu(example):
    done = _pytest(example, "--collect-only", "-q", "--aitune")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for item in ("tune_text_encoder[eager]", "tune_text_encoder[torchao-int8wo]", "tune_fusion[mixed]"):
        assert f"tests/aitune/conftest.py::{item}" in done.stdout
    assert "tests/aitune/conftest.py::tune_resnet50[selection]" in done.stdout


def test_without_torchvision_the_resnet_fixture_fails_saying_what_to_install(example):
    if HAS_TORCHVISION:
        pytest.skip("torchvision is installed here: the fixture builds")
    done = _pytest(example, "--aitune", "-q", "-k", "tune_resnet50")
    assert done.returncode == 1
    assert "the image classifier needs torchvision" in done.stdout
    assert "pip install torchvision" in done.stdout


@pytest.mark.skipif(not HAS_TORCHVISION, reason=NEEDS_TORCHVISION)
def test_with_torchvision_every_fixture_collects_its_backends(example):
    done = _pytest(example, "--collect-only", "-q", "--aitune")
    assert done.returncode == 0
    for backend in ("eager", "cudagraphs", "aoti", "tensorrt"):
        assert f"tune_resnet50[{backend}]" in done.stdout


def test_a_check_without_a_nightly_says_to_run_it_and_still_writes_the_summary(tmp_path, capsys):
    results = tmp_path / "pr_check"
    status = bench.main(["unchanged-cold", "--work", str(tmp_path / "work"), "--results", str(results)])
    assert status == 2
    assert "run the `nightly` phase first" in capsys.readouterr().out
    summary = json.loads((results / "summary.json").read_text())
    assert summary["nightly"] is None and summary["checks"] == {}
    assert set(summary["goals"].values()) == {None}
    assert "**not measured**" in (results / "summary.md").read_text()
