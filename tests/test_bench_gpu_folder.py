"""bench/_gpu_folder.py: the one rule naming a GPU's report folder, from Python and from the shell benches."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("_gpu_folder", ROOT / "bench" / "_gpu_folder.py")
assert _spec and _spec.loader
gpu_folder_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_folder_module)

NAMES = {
    "NVIDIA H200": "h200",
    "NVIDIA H100 80GB HBM3": "h100-80gb-hbm3",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA A100-SXM4-80GB": "a100-sxm4-80gb",
    "Tesla T4": "tesla-t4",
    "": "",
}


@pytest.mark.parametrize(("name", "folder"), NAMES.items())
def test_every_word_of_the_product_name(name: str, folder: str) -> None:
    assert gpu_folder_module.gpu_folder(name) == folder


def test_two_h100_variants_do_not_share_a_folder() -> None:
    assert gpu_folder_module.gpu_folder("NVIDIA H100 PCIe") != gpu_folder_module.gpu_folder("NVIDIA H100 80GB HBM3")


def test_cpu_runs_keep_their_folder() -> None:
    assert gpu_folder_module.report_dir("cpu") == ROOT / "reports"
    assert gpu_folder_module.report_dir("cpu", cpu="cpu-small") == ROOT / "reports" / "cpu-small"


@pytest.mark.parametrize("script", ["gpu_pr_check.sh", "run_gpu_suite.sh"])
@pytest.mark.parametrize(("name", "folder"), [("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"), ("NVIDIA H200", "h200")])
def test_the_shell_benches_name_the_folder_by_the_same_rule(
    tmp_path: Path, script: str, name: str, folder: str
) -> None:
    """The script's own ``GPU=`` line, run with an ``nvidia-smi`` on PATH that prints ``name``
    (a stand-in: there is no GPU here)."""
    text = (ROOT / "bench" / script).read_text()
    line = re.search(r"^GPU=\$\(.*_gpu_folder\.py.*$", text, re.MULTILINE)
    assert line, f"{script} does not take its folder name from bench/_gpu_folder.py"
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho '{name}'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PY"] = sys.executable
    done = subprocess.run(
        ["bash", "-c", f'{line.group(0)}\necho "$GPU"', str(ROOT / "bench" / script)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == folder
