"""The aitune-ci command: demo, backends, inspect (real runs, small budgets)."""

from __future__ import annotations

import json

import torch

from aitune_ci.cli import main
from aitune_ci.environment import environment_fingerprint


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
    assert "model.ait" in err and "not a complete .ait archive" in err
