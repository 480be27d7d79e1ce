"""The folder a GPU's figures go in: ``reports/<gpu>/``, one rule for every bench.

The benches had three: every word of the product name (``h100-80gb-hbm3``), its first word
(``h100``), and the name up to its first dash (``h100 80gb hbm3``, with spaces). The first merges
an H100 PCIe's figures with an H100 SXM's, the last makes a folder name with spaces. Every word it
is, as ``aitune_ci``'s hardware key does; figures of the "NVIDIA H100 80GB HBM3" lent before this
rule are in ``reports/h100/`` (its README says so), the H200's in ``reports/h200/`` either way.

Run as a script with the product name as its argument (``bench/gpu_pr_check.sh`` does, from
``nvidia-smi``, so that it needs no torch import), it prints the folder name.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_folder(product_name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"h100-80gb-hbm3"``; empty for an empty name."""
    name = product_name.strip().removeprefix("NVIDIA ").lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def report_dir(device: str, cpu: str = "") -> Path:
    """``reports/<gpu>`` for a CUDA ``device`` (the name of its first GPU), else ``reports/<cpu>``."""
    if device.startswith("cuda"):
        import torch

        return ROOT / "reports" / gpu_folder(torch.cuda.get_device_name(0))
    return ROOT / "reports" / cpu if cpu else ROOT / "reports"


if __name__ == "__main__":
    print(gpu_folder(" ".join(sys.argv[1:])))
