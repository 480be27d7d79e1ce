"""What the paired-timing benches share: the A/A model, the round orders they compare, their report.

``bench/paired_slot_bias.py``, ``bench/paired_estimators.py`` and ``bench/aa_placement.py`` run as
scripts, so this folder is on ``sys.path`` and they import this module by its bare name.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import aitune_ci.measure as measure_module
from aitune_ci.atomic import atomic_write_text
from aitune_ci.measure import ABBA, BAAB

ROOT = Path(__file__).resolve().parents[1]
#: The model of tests/test_paired_aa_centring.py: ~0.3 ms per call on the 2-core CI machine.
MLP = (256, 1024, 256)
BATCH = 64

#: name -> (round order, rounds combined into one ratio before the median).
ORDERS: dict[str, tuple[Callable[[int], tuple[str, ...]], int]] = {
    # shipped until 2026-12-03: ABBA every round, median over single rounds
    "abba-only": (lambda i: ABBA, 1),
    # tried, not shipped: ABBA / BAAB alternating, median over single rounds
    "alternating-per-round": (lambda i: ABBA if i % 2 == 0 else BAAB, 1),
    # shipped since: ABBA / BAAB alternating, each pair's two ratios combined first
    "balanced": (measure_module.paired_round_order, measure_module.ROUNDS_PER_PAIR),
}


def mlp_model() -> torch.nn.Module:
    torch.manual_seed(0)
    a, b, c = MLP
    return torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.GELU(), torch.nn.Linear(b, c)).eval()


@contextlib.contextmanager
def round_order(name: str) -> Iterator[None]:
    """``measure_paired`` pairs its rounds the way ``ORDERS[name]`` says until the block ends."""
    shipped = ORDERS["balanced"]
    measure_module.paired_round_order, measure_module.ROUNDS_PER_PAIR = ORDERS[name]  # type: ignore[assignment]
    try:
        yield
    finally:
        measure_module.paired_round_order, measure_module.ROUNDS_PER_PAIR = shipped  # type: ignore[assignment]


def write_report(out: Path, name: str, args: str, rows: dict[str, Any], markdown: Callable[[dict], str]) -> None:
    """``OUT/NAME.json`` (with machine, torch, date and the command's arguments) and ``OUT/NAME.md``; prints the md."""
    payload = {
        "schema_version": 1,
        "machine": f"this CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": args,
        **rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", markdown(payload))
    print(markdown(payload))
