"""``gc_paused``: no automatic collection inside the block, the collector as it was after it."""

from __future__ import annotations

import gc

import pytest

from aitune_ci.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    gc.enable()
    yield
    gc.enable()


class _Cycle:
    """A reference cycle that notes when the collector frees it."""

    freed = 0

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.freed += 1


def test_no_collection_runs_inside_the_block_however_much_it_allocates() -> None:
    _Cycle.freed = 0
    collections: list[int] = []

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(on_collection)
    try:
        with gc_paused():
            for _ in range(50 * gc.get_threshold()[0]):  # far past generation 0's threshold
                _Cycle()
            assert (collections, _Cycle.freed) == ([], 0)
        assert gc.isenabled()
        gc.collect()
    finally:
        gc.callbacks.remove(on_collection)
    assert _Cycle.freed == 50 * gc.get_threshold()[0]  # collected after the block


def test_the_collector_is_back_on_when_the_block_raises() -> None:
    with pytest.raises(ValueError), gc_paused():
        assert not gc.isenabled()
        raise ValueError("a load that fails")

    assert gc.isenabled()


def test_a_collector_the_caller_switched_off_stays_off() -> None:
    gc.disable()

    with gc_paused(), gc_paused():
        pass

    assert not gc.isenabled()
