"""A baseline from another machine of the same hardware key: compared, with the difference named."""

from __future__ import annotations

import json

from aitune_ci.environment import environment_fingerprint


def test_a_baseline_from_a_cpu_with_another_instruction_set_names_the_difference(project):
    """Clouds name different CPUs alike ("AMD EPYC"): the key matches, the kernels do not."""
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    data = project.load_baseline("tune_lin")
    here = environment_fingerprint("cpu")
    data["environment"].update(cpu_capability="AVX512-elsewhere", cpu_features="avx2 fma avx512f avx512_bf16")
    project.save_baseline("tune_lin", data)  # an edit: the record of the update's work no longer answers

    project.tune("--aitune-report", "run.json")

    verdict = json.loads((project.path / "run.json").read_text())["verdicts"][0]
    assert verdict["env_mismatch"] == {
        "cpu_capability": ["AVX512-elsewhere", here["cpu_capability"]],
        "cpu_features": ["avx2 fma avx512f avx512_bf16", here["cpu_features"]],
    }
    assert "Environment differs from the baseline (cpu_capability AVX512-elsewhere -> " in verdict["message"]


def test_a_baseline_written_before_the_cpu_was_recorded_is_not_called_different(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    data = project.load_baseline("tune_lin")
    for key in ("cpu_capability", "cpu_features"):
        del data["environment"][key]
    del data["work"]  # recorded since, as the CPU was: an older aitune-ci wrote neither
    project.save_baseline("tune_lin", data)

    project.tune("--aitune-report", "run.json")

    verdict = json.loads((project.path / "run.json").read_text())["verdicts"][0]
    assert verdict["env_mismatch"] == {}
