"""Timing a block without the tuning process's heap in it: a full collection of that heap lands in some timings only.

By the time a check times an artifact's load and first call, its process holds every model, build and
compile cache it tuned, hundreds of thousands of Python objects. A full collection that falls inside
the timed block walks all of them, and whether one falls inside is down to the collector's counters,
not to the artifact. On this project's 2-core CPU (``bench/first_call_gc.py``, CPU-sized models, 720k
objects) two of four first calls of the text encoder took a full collection of 335-383 ms, +30%, and
the other two none. ``gc.freeze()`` moves what is alive when the block starts to the permanent
generation, so collections inside the block walk only what the block made: frozen, the four first
calls read 1108-1147 ms, with 29-51 ms of collection each.

What a serving process pays for collections depends on its own heap (a fresh one that had imported
torch and transformers held 510k objects), which no check can know; both sides of a comparison are
timed frozen, so the reading is the artifact's own work.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Objects alive on entry are left out of garbage collection until the block ends.

    Nothing is collected or freed by this; the collector stays on for what the block allocates. A heap
    already frozen on entry (by the caller's own code, or an enclosing block) is left as it was found.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
