"""Timing a one-off block with the garbage collector off, as ``timeit`` times: a collection lands in some timings only.

By the time a check times an artifact's load and first call, its process holds every model, build and
compile cache it tuned, hundreds of thousands of Python objects. A full collection that falls inside
the timed block walks all of them, and whether one falls inside is down to the collector's counters,
not to the artifact (``bench/first_call_gc.py``). On the lent H200 the example's text encoder's first
call held one of 540 ms in 1981 ms (``reports/h200/first_call_gc_in_turns.md``); on a 2-core CPU with
CPU-sized models, 3 of 6 first calls held one of 278-341 ms and read 1295-1667 ms, against 1295-1320 ms
with the collector off (``reports/cpu-small/first_call_gc.md``).

The collector is switched off for the block rather than the heap frozen: a full collection inside a
frozen block counts only the unfrozen objects as the old generation, and after the thaw the next full
collection of the whole heap comes early, in whatever runs next (a measurement, say). Off, no automatic
collection runs inside the block and the collector's counters carry on as if the block had not been
timed. An explicit one still runs: dynamo's ``gc.collect(1)`` after each compile
(``torch._dynamo.config.run_gc_after_compile``; 32-46 ms of each first call in the CPU run above) is
part of what a first call costs in any process. What the block allocates is collected after it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic garbage collection runs inside the block; the collector is back on after it, if it was on before.

    A collector already off on entry (the caller's own ``gc.disable()``, or an enclosing block) is left off.
    """
    if not gc.isenabled():
        yield
        return
    try:
        gc.disable()
        yield
    finally:
        gc.enable()
