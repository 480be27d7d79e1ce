"""A pytest plugin for the benches: each slow garbage collection as a line in the run's output, where it happened.

Load it into a PR check of the example (``bench/gpu_pr_check.sh``) with
``PYTEST_ADDOPTS="-p bench.gc_timeline"``; the bench's pytest log then shows, among aitune's progress
lines, ``[gc] full collection 248.5 ms (gen 2, 1 of this run)`` wherever one ran, so a reader sees
whether it fell into a measuring window, a load's first call, or between them. Collections of a
younger generation are shown only past ``AITUNE_GC_TIMELINE_MS`` (default 20 ms). A summary line
ends the run. Not part of aitune-ci: a diagnostic for ``aitune_ci/gc_pause.py``'s question.

The lines are written to the stdout pytest started with (a duplicate of file descriptor 1 taken when
pytest loads the plugin, before it captures output), so captured test output cannot hold them back.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

_OUT = os.dup(1)
_MIN_MS = float(os.environ.get("AITUNE_GC_TIMELINE_MS", "20"))
_state = {"t0": 0.0, "full": 0, "full_ms": 0.0, "other": 0, "other_ms": 0.0}


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _state["t0"] = time.perf_counter()
        return
    took = (time.perf_counter() - _state["t0"]) * 1e3
    full = info["generation"] == 2
    kind = "full" if full else "other"
    _state[kind] += 1
    _state[f"{kind}_ms"] += took
    if full or took >= _MIN_MS:
        name = "full collection" if full else "collection"
        os.write(_OUT, f"[gc] {name} {took:.1f} ms (gen {info['generation']}, {_state[kind]} of this run)\n".encode())


gc.callbacks.append(_on_collection)


def pytest_unconfigure(config: Any) -> None:
    os.write(
        _OUT,
        (
            f"[gc] this run: {_state['full']} full collections, {_state['full_ms']:.0f} ms; "
            f"{_state['other']} younger ones, {_state['other_ms']:.0f} ms\n"
        ).encode(),
    )
