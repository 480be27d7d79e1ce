"""Is an AOTInductor package loaded from disk as fast as the same package just built? (A/A, one process)

A relative PR check pairs the base with the head "like with like": where the head rebuilt, the base
rebuilds too, because on the H200 a cache-loaded *inductor* build timed ~7% slower than a fresh one
(reports/h200/pr_check/README.md). For an ahead-of-time payload a build and a load end in the same
call (``AOTIBackend._load_package``), so the base could load the nightly's package instead of
rebuilding it (16-25 s of a model-changing check on the H200) if the two time alike. This builds the
example's ResNet-50 once with the real aoti backend, loads the same package through ``AOTIBackend.load``
as the build cache does, and times the pair with ``measure_paired`` ``--pairs`` times, fresh as A and
loaded as B, then swapped (B fresh) so a position effect shows.

    PYTHONPATH=.:examples/gpu-repo python bench/aoti_fresh_vs_loaded.py [--device cpu --small] [--pairs 6]

Writes ``aoti_fresh_vs_loaded.{json,md}`` into ``--out`` (default ``reports/<gpu>/``, or ``reports/``),
after every pair, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _gpu_folder import gpu_folder  # bench/, on sys.path as the script's folder

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1


def _write(out: Path, data: dict[str, Any]) -> None:
    from aitune_ci.atomic import atomic_write_text

    rows = data["pairs"]
    lines = [
        "# A fresh AOTInductor build against the same package loaded (`bench/aoti_fresh_vs_loaded.py`)",
        "",
        f"{data['machine']}, {data['model']}, built in {data['build_s']:.1f} s, loaded in {data['load_s']:.2f} s. "
        "Each row is one `measure_paired` (ratio > 1: B slower).",
        "",
        "| # | A | B | ratio B/A | 95% CI | rounds |",
        "|--:|---|---|--:|---|--:|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r['a']} | {r['b']} | {r['ratio']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r['n']} |"
        )
    loaded_over_fresh = [r["ratio"] if r["b"] == "loaded" else 1 / r["ratio"] for r in rows]
    if loaded_over_fresh:
        data["loaded_over_fresh_median"] = statistics.median(loaded_over_fresh)
        lines += ["", f"Loaded over fresh, median of {len(rows)} pairs: **{data['loaded_over_fresh_median']:.4f}** "
                  f"(range {min(loaded_over_fresh):.4f}-{max(loaded_over_fresh):.4f})."]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "aoti_fresh_vs_loaded.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "aoti_fresh_vs_loaded.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized model")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0, help="measure_paired's max_total_s per pair")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))
    from acme_models.vision import image_classifier

    from aitune_ci.backends.aoti import AOTIBackend
    from aitune_ci.backends.base import BuildContext
    from aitune_ci.engine import one_time_setup
    from aitune_ci.measure import MeasureConfig, measure_paired

    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    out = Path(args.out) if args.out else ROOT / "reports" / gpu_folder(gpu) if gpu else ROOT / "reports"
    size, batch = (64, 4) if args.small else (224, 32)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    backend = AOTIBackend()
    one_time_setup(backend, device)  # as the engine does before a build: its time is the model's alone
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "machine": f"{gpu or 'cpu ' + platform.machine()}, torch {torch.__version__}",
        "model": "the example's image classifier (ResNet-50" + (", CPU size)" if args.small else ", bs32 224x224)"),
        "pairs": [],
    }
    with tempfile.TemporaryDirectory() as work:
        model = image_classifier(small=args.small).eval().to(device)
        ctx = BuildContext(device=device, dtype=torch.float32, workdir=Path(work) / "build")
        t0 = time.perf_counter()
        fresh = backend.build(model, [((x,), {})], ctx)
        data["build_s"] = time.perf_counter() - t0
        saved = Path(work) / "saved"
        saved.mkdir()
        meta = backend.save(fresh, saved)
        copy = Path(work) / "cache-entry"  # the build cache copies the payload out and loads the copy
        shutil.copytree(saved, copy)
        t0 = time.perf_counter()
        loaded = backend.load(model, copy, meta, BuildContext(device=device, dtype=torch.float32, workdir=copy))
        data["load_s"] = time.perf_counter() - t0
        calls = {"fresh": lambda: fresh(x), "loaded": lambda: loaded(x)}
        config = MeasureConfig(max_total_s=args.seconds)
        for i in range(args.pairs):
            a, b = ("fresh", "loaded") if i % 2 == 0 else ("loaded", "fresh")
            est = measure_paired(calls[a], calls[b], device, config)
            row = {"a": a, "b": b, "ratio": est.ratio, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n}
            data["pairs"].append(row)
            print(
                f"[{i + 1}/{args.pairs}] {b} over {a}: {est.ratio:.4f} [{est.ci_low:.4f}, {est.ci_high:.4f}]",
                flush=True,
            )
            _write(out, data)
    print((out / "aoti_fresh_vs_loaded.md").read_text())


if __name__ == "__main__":
    main()
