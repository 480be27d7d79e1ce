"""What writing the artifact a PR check times the load of costs, before and after ``save_for_load_timing``.

A relative check times each side's winner load and first call (``check._time_load``) from a ``.ait`` it
writes to a temporary folder and deletes once the fixture is judged. On the H200 (2026-12-04 night,
``reports/h200/pr_check/dec04-night/slowdown-warm.pytest.log``) ~0.7-1.9 s per side per fixture went
to that save, the load and the first call aside. It used to be ``ait.save`` with the spec hash (a
digest of every weight and of the user's code, which only artifact reuse reads); now it is
``save_for_load_timing``, without it (still fsynced, so no write-back runs during the timed load). This bench tunes the example's fixtures (eager only: the
difference is in the weights and the hash, not the payload), then alternates the two ways of writing
the same result ``--rounds`` times and loads each file once, to show the loads are alike.

    PYTHONPATH=.:examples/gpu-repo python bench/load_timing_save.py [--small] [--rounds N] [--out DIR]

Writes ``load_timing_save.{json,md}`` into ``--out`` (default ``reports/<gpu>/``, or ``reports/cpu/``;
``reports/cpu-small/`` with ``--small``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))

import torch  # noqa: E402
from _gpu_folder import gpu_folder  # noqa: E402  (bench/, on sys.path as the script's folder)

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.engine import tune  # noqa: E402
from aitune_ci.measure import MeasureConfig  # noqa: E402
from aitune_ci.store.artifact import load, save, spec_hash  # noqa: E402
from aitune_ci.store.artifact.saving import save_for_load_timing  # noqa: E402

SCHEMA_VERSION = 1
FIXTURES = ("tune_resnet50", "tune_text_encoder", "tune_fusion")


def _machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"this CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def _specs(small: bool) -> dict[str, Any]:
    """The example's fixtures that build here (the image classifier needs torchvision), eager only."""
    os.environ["GPU_REPO_SMALL"] = "1" if small else "0"
    import importlib.util

    where = ROOT / "examples" / "gpu-repo" / "tests" / "aitune" / "conftest.py"
    module_spec = importlib.util.spec_from_file_location("gpu_repo_conftest", where)
    assert module_spec is not None and module_spec.loader is not None
    conftest = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(conftest)
    specs = {}
    for name in FIXTURES:
        fixture = getattr(conftest, name)
        try:
            spec = getattr(fixture, "__wrapped__", fixture)()
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        specs[name] = replace(spec, backends=["eager"], modules=None)
    return specs


def _time_saves(spec: Any, result: Any, rounds: int, folder: Path) -> dict[str, Any]:
    """Each way of writing ``result``, ``rounds`` times in alternation; then one load of each file."""
    ways = {
        "save with spec hash (before)": lambda p: save(
            result, p, spec_hash=spec_hash(spec, ["eager"], result.environment)
        ),
        "save_for_load_timing (now)": lambda p: save_for_load_timing(result, p),
    }
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    infos = {}
    for i in range(rounds):
        order = list(ways) if i % 2 == 0 else list(reversed(ways))
        for way in order:
            path = folder / f"{i}-{list(ways).index(way)}.ait"
            t0 = time.perf_counter()
            infos[way] = ways[way](path)
            seconds[way].append(time.perf_counter() - t0)
    loads: dict[str, list[float]] = {way: [] for way in ways}
    for i in range(3):  # in alternation too: a process's first load of a file pays more than the next
        for way in list(ways) if i % 2 == 0 else list(reversed(ways)):
            info = infos[way]
            t0 = time.perf_counter()
            load(info.path, copy.deepcopy(spec.model), expected_sha256=info.sha256)
            loads[way].append(time.perf_counter() - t0)
    size = next(iter(infos.values())).size_bytes
    return {
        "size_mb": round(size / 1e6, 1),
        "save_s": {way: [round(s, 4) for s in values] for way, values in seconds.items()},
        "median_save_s": {way: round(statistics.median(values), 4) for way, values in seconds.items()},
        "load_s": {way: [round(s, 4) for s in values] for way, values in loads.items()},
        "median_load_s": {way: round(statistics.median(values), 4) for way, values in loads.items()},
    }


def _markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Writing the artifact a check times the load of",
        "",
        f"{payload['machine']} · torch {payload['torch']} · {payload['date']} · `{payload['args']}`",
        "",
        "| fixture | .ait size | save with spec hash (before) | save_for_load_timing (now) | saved | load (before, now) |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for name, row in payload["fixtures"].items():
        before, now = row["median_save_s"].values()
        lo_b, lo_n = (f"{min(v):.3f}-{max(v):.3f}" for v in row["save_s"].values())
        loads = ", ".join(f"{s:.3f} s" for s in row["median_load_s"].values())
        lines.append(
            f"| {name} | {row['size_mb']} MB | {before:.3f} s ({lo_b}) | {now:.3f} s ({lo_n}) | "
            f"{before - now:.3f} s | {loads} |"
        )
    lines += [
        "",
        f"Medians (and ranges) of {payload['rounds']} saves each, in alternation, after one tune per fixture;",
        "loads: medians of 3 of each file, in alternation.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="the example's CPU-sized models")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = gpu_folder(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu"
    out = args.out or ROOT / "reports" / (f"{folder}-small" if args.small else folder)
    fixtures = {}
    config = MeasureConfig(max_total_s=0.5)
    with tempfile.TemporaryDirectory(prefix="aitune-bench-save-") as tmp:
        for name, spec in _specs(args.small).items():
            result = tune(spec, backends=["eager"], measure_config=config, progress=None)
            fixtures[name] = _time_saves(spec, result, args.rounds, Path(tmp))
            print(name, json.dumps(fixtures[name]["median_save_s"]), flush=True)
    payload = {
        "schema_version": SCHEMA_VERSION,
        "machine": _machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": " ".join(sys.argv[1:]) or "(defaults)",
        "rounds": args.rounds,
        "fixtures": fixtures,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "load_timing_save.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / "load_timing_save.md", _markdown(payload))
    print(_markdown(payload))


if __name__ == "__main__":
    main()
