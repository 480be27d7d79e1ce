"""The aitune-ci command: run, demo, backends, inspect (real runs, small budgets)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from aitune_ci.cli import main
from aitune_ci.cli.run_command import split_pytest_args
from aitune_ci.environment import environment_fingerprint

_PROJECT_CONFTEST = textwrap.dedent(
    """
    import torch
    import aitune_ci as ait


    @ait.tune_fixture
    def tune_x():
        torch.manual_seed(0)
        return ait.TuneSpec(model=torch.nn.Linear(8, 4), samples=[torch.randn(2, 8)], backends=["eager"], device="cpu")
    """
)


def test_help_lists_every_command_without_importing_torch():
    code = (  # `python -m aitune_ci.cli --help`, then a look at what it imported
        "import runpy, sys\n"
        "sys.argv = ['aitune-ci', '--help']\n"
        "try:\n    runpy.run_module('aitune_ci.cli', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    for command in ("run", "backends", "demo", "inspect", "report", "comment", "merge"):
        assert f"    {command} " in out
    assert out.splitlines()[-1] == "no torch"


def test_everything_after_run_goes_to_pytest_untouched():
    assert split_pytest_args(["-v", "run", "-k", "x", "--help", "--", "-v"]) == (
        ["-v", "run"],
        ["-k", "x", "--help", "--", "-v"],
    )
    assert split_pytest_args(["report", "run.json", "--html", "r.html"]) == (
        ["report", "run.json", "--html", "r.html"],
        [],
    )
    assert split_pytest_args(["--help"]) == (["--help"], [])


def test_run_help_says_what_run_is_before_pytests_help(tmp_path, monkeypatch, capfd):
    """`aitune-ci run --help` printed pytest's help alone: a new user could not tell what run does."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--help"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("aitune-ci run [PYTEST ARGS]: runs `pytest --aitune PYTEST ARGS` here")
    assert "--aitune-update" in out  # pytest's help, with the plugin's section


def test_run_tunes_a_project_with_pytest_and_returns_its_exit_status(tmp_path, monkeypatch, capfd):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n\n[tool.aitune]\nmax_confirmations = 0\n")
    (tmp_path / "conftest.py").write_text(_PROJECT_CONFTEST)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a tiny matmul on a shared box: one thread, less noise

    status = main(["run", "-v", "-p", "no:cacheprovider", "--aitune-measure-seconds", "0.2"])

    captured = capfd.readouterr()
    out = captured.out
    assert status == 0, out + captured.err
    assert "tune_x[eager] PASSED" in out and "aitune: 1 new" in out
    assert main(["run", "-p", "no:cacheprovider", "--no-such-option"]) == 4  # pytest's usage error, passed on


def test_demo_tunes_both_example_models_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backends", "eager,eager-bf16,tensorrt", "--measure-seconds", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "small_cnn (cpu" in printed and "small_encoder (cpu" in printed
    assert "UNAVAILABLE" in printed and "tensorrt is not installed" in printed
    for name in ("small_cnn", "small_encoder"):
        data = json.loads((out / f"{name}.json").read_text())
        assert data["schema_version"] == 1 and data["winner"] in ("eager", "eager-bf16")
    report = (out / "demo.md").read_text()
    assert report.startswith("# aitune-ci demo\n")
    env = environment_fingerprint("cpu")
    assert f"on {env['cpu']} ({env['cpu_capability']}" in report and f"torch {torch.__version__}" in report


def test_backends_lists_every_backend_with_the_reason_it_cannot_run(capsys):
    assert main(["backends", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    env = environment_fingerprint("cpu")
    assert printed.startswith(f"cpu on {env['cpu']} ({env['cpu_capability']}")
    assert "inductor" in printed and "onnxruntime" in printed
    assert "cudagraphs" in printed and "needs CUDA" in printed


def test_backends_for_a_device_this_machine_lacks_still_prints_the_table(capsys):
    import pytest

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["backends", "--device", "cuda"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("cuda: not on this machine (")
    assert "inductor" in printed and "cudagraphs" in printed


def test_inspect_of_a_file_that_is_not_an_artifact_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "model.ait"
    bogus.write_text("version https://git-lfs.github.com/spec/v1\n")
    assert main(["inspect", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert "model.ait: a Git LFS pointer, not the artifact" in err and "git lfs pull" in err
    bogus.write_bytes(b"PK\x03\x04 cut short")
    assert main(["inspect", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert "model.ait" in err and "not a complete .ait archive" in err
