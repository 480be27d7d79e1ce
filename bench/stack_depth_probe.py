"""How much one call of a model costs depending on how deep the caller's Python stack is.

CPython (3.11 here, the same code in 3.12 and 3.13) keeps frames in chunks of a per-thread data
stack and frees a chunk as soon as its last frame returns. A call whose frames cross a chunk
boundary therefore maps and unmaps a chunk every time it runs. Found in this repo's tests: the
first tune of a long-lived test process timed a 4 µs ``nn.Linear`` at 11-18 µs. The same calls
ran at 3.8 µs in a closure two frames up, and at every depth on a fresh thread.

A timing harness called from deep inside pytest can sit on such a boundary; a PR check, a nightly
and a serving process each sit somewhere else. This probe times each model at caller depths
0..``--depths`` (extra Python frames above the timing loop), on the main thread as the caller
left it, and on a fresh thread, whose stack starts empty.

    PYTHONPATH=.:examples/gpu-repo python bench/stack_depth_probe.py [--device cuda] [--out DIR]

Writes ``stack_depth_probe.{json,md}`` into ``--out`` (default ``reports/`` on CPU,
``reports/<gpu>/`` on CUDA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))

from _gpu_folder import report_dir  # noqa: E402  (bench/, on sys.path as the script's folder)

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.frame_stack import on_fresh_chunk  # noqa: E402

#: where the sweeps run: as the caller left the main thread, a fresh thread, and a fresh chunk
#: (``aitune_ci.frame_stack``, how ``measure``'s timer runs its loops since 2026-12-03)
WHERE = ("main_thread", "fresh_thread", "fresh_chunk")


def _models(device: str, small: bool) -> dict[str, Callable[[], Any]]:
    """name -> a zero-argument call: a tiny Linear, and the example's encoder eager and compiled."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16).eval().to(device)
    x = torch.randn(4, 16, device=device)
    calls: dict[str, Callable[[], Any]] = {"linear 16x16": lambda: lin(x)}
    try:
        from acme_models import text
    except ImportError as exc:  # transformers missing: the Linear alone still shows the effect
        print(f"encoder skipped: {exc}", flush=True)
        return calls
    encoder = text.text_classifier(small=small).eval().to(device)
    batch, seq = (2, 32) if small else (8, 128)
    ids = torch.randint(1000, 30000, (batch, seq), device=device)
    mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    compiled = torch.compile(encoder)
    with torch.inference_mode():
        compiled(input_ids=ids, attention_mask=mask)  # compile here, not in the timing
    calls["encoder eager"] = lambda: encoder(input_ids=ids, attention_mask=mask)
    calls["encoder inductor"] = lambda: compiled(input_ids=ids, attention_mask=mask)
    return calls


def _per_call_us(fn: Callable[[], Any], device: str, calls: int, repeats: int) -> float:
    """Median over ``repeats`` loops of the mean microseconds per call (synchronized at both ends)."""
    means = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        means.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(means)


def _at_depth(depth: int, fn: Callable[[], Any], device: str, calls: int, repeats: int) -> float:
    """``fn`` timed under ``depth`` extra frames (``calls`` 0: ``fn`` is the timing itself)."""
    if depth:
        return _at_depth(depth - 1, fn, device, calls, repeats)
    return fn() if calls == 0 else _per_call_us(fn, device, calls, repeats)


def _sweep(
    fn: Callable[[], Any], device: str, depths: int, calls: int, repeats: int, fresh_chunk: bool = False
) -> list[float]:
    """Per-call µs at each caller depth; ``fresh_chunk``: each loop entered as aitune's timer enters it."""
    with torch.inference_mode():
        fn()
        if fresh_chunk:
            return [
                _at_depth(d, lambda: on_fresh_chunk(lambda: _per_call_us(fn, device, calls, repeats)), device, 0, 0)
                for d in range(depths + 1)
            ]
        return [_at_depth(d, fn, device, calls, repeats) for d in range(depths + 1)]


def _on_fresh_thread(work: Callable[[], Any]) -> Any:
    out: dict[str, Any] = {}

    def run() -> None:
        out["value"] = work()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["value"]


def _summary(times: list[float]) -> dict[str, Any]:
    fastest = min(times)
    return {
        "fastest_us": fastest,
        "slowest_us": max(times),
        "slowest_over_fastest": max(times) / fastest,
        "slow_depths": [d for d, t in enumerate(times) if t > 1.3 * fastest],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda. Default: cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--depths", type=int, default=250, help="extra caller frames to sweep (a chunk holds ~200 small frames)"
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per loop of the Linear (the encoder: 1/30)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = args.device
    torch.set_num_threads(1)  # one thread: no intra-op team to start or spin on a second thread
    small = device == "cpu"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    out = Path(args.out or report_dir(device))
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "schema_version": 1,
        "device": gpu,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "models": {},
    }
    for name, fn in _models(device, small).items():
        calls = args.calls if name.startswith("linear") else max(args.calls // 30, 3)
        main_times = _sweep(fn, device, args.depths, calls, args.repeats)
        thread_times = _on_fresh_thread(lambda fn=fn, calls=calls: _sweep(fn, device, args.depths, calls, args.repeats))
        chunk_times = _sweep(fn, device, args.depths, calls, args.repeats, fresh_chunk=True)
        report["models"][name] = {
            "main_thread_us": main_times,
            "fresh_thread_us": thread_times,
            "fresh_chunk_us": chunk_times,
            "main_thread": _summary(main_times),
            "fresh_thread": _summary(thread_times),
            "fresh_chunk": _summary(chunk_times),
        }
        print(name, json.dumps({k: report["models"][name][k] for k in WHERE}), flush=True)
    atomic_write_text(out / "stack_depth_probe.json", json.dumps(report, indent=1) + "\n")
    lines = [
        "# One call's cost against the caller's stack depth (`bench/stack_depth_probe.py`)",
        "",
        f"{gpu}, Python {report['python']}, torch {report['torch']}. Each model timed at {args.depths + 1} caller "
        "depths (extra Python frames above the timing loop): on the main thread, on a fresh thread, and on the "
        "main thread entered through `aitune_ci.frame_stack.on_fresh_chunk` (as `measure` times now); "
        f"one torch thread. Per call: the median of {args.repeats} loops' means.",
        "",
        "| model | where | fastest µs | slowest µs | slowest / fastest | depths > 1.3x fastest |",
        "|---|---|--:|--:|--:|---|",
    ]
    for name, row in report["models"].items():
        for where in WHERE:
            s = row[where]
            lines.append(
                f"| {name} | {where.replace('_', ' ')} | {s['fastest_us']:.1f} | {s['slowest_us']:.1f} | "
                f"{s['slowest_over_fastest']:.2f} | {', '.join(map(str, s['slow_depths'])) or '-'} |"
            )
    atomic_write_text(out / "stack_depth_probe.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
