"""Run a timing loop at a known place on CPython's frame stack, whatever the caller's depth.

CPython (3.11 and later) keeps frames in chunks of a per-thread data stack and frees a chunk as
soon as the frame at its start returns. A call whose frames cross a chunk boundary therefore maps
and unmaps a chunk every time it runs. Whether a call does depends on how deep its caller already
is (pytest in-process or in a subprocess, plugin or CLI, stored or relative mode). On this 2-core
CPU a 16x16 ``nn.Linear`` cost 3.7 µs at most caller depths and 18-21 µs in windows of ~5 depths
every ~100 frames; the example's small eager encoder cost 2.05 ms or up to 3.68 ms
(``bench/stack_depth_probe.py``, ``reports/stack_depth_probe.md``).

:func:`on_fresh_chunk` calls ``work`` from a frame larger than any chunk the stack holds, so
CPython starts a new chunk for it. The chunk lives as long as that frame does, and everything
``work`` calls starts at the same offset in it. A model whose calls fit in the chunk's room
(~15 KiB of frames) never crosses a boundary. A deeper one crosses at the same place every time,
in every process. Older Pythons allocate each frame on the heap, and there this costs one call.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

__all__ = ["on_fresh_chunk"]

_T = TypeVar("_T")

#: Local slots of the owner's frame: 4200 pointers (~33 KiB), more than a 16 KiB chunk, so the
#: frame never fits in the chunk in use and CPython allocates a chunk for it (rounded up to 64 KiB).
_SLOTS = 4200


def _make_owner() -> Callable[[Callable[[], Any]], Any]:
    names = " = ".join(f"_s{i}" for i in range(_SLOTS))
    # The assignment never runs; it only makes the names locals, and locals size the frame.
    source = f"def owner(work):\n    if work is None:\n        {names} = None\n    return work()\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<aitune_ci.frame_stack>", "exec"), namespace)  # noqa: S102 - fixed source
    return namespace["owner"]


_OWNER = _make_owner()


def on_fresh_chunk(work: Callable[[], _T]) -> _T:
    """``work()``, called at the start of a fresh frame-stack chunk (see the module docstring)."""
    return _OWNER(work)
