"""``frozen_heap``: what is alive on entry stays out of the collector's passes, and only for the block."""

from __future__ import annotations

import gc

import pytest

from aitune_ci.heap import frozen_heap


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_objects_alive_on_entry_are_frozen_for_the_block_and_thawed_after() -> None:
    kept = [[i] for i in range(10_000)]  # lists: tracked by the collector

    with frozen_heap():
        assert gc.get_freeze_count() >= len(kept)
        made_inside = [[i] for i in range(100)]
        assert gc.is_tracked(made_inside[0])
    assert gc.get_freeze_count() == 0


def test_the_heap_is_thawed_when_the_block_raises() -> None:
    with pytest.raises(ValueError), frozen_heap():
        raise ValueError("a load that fails")

    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_by_the_caller_stays_frozen() -> None:
    gc.freeze()
    before = gc.get_freeze_count()

    with frozen_heap(), frozen_heap():
        pass

    assert gc.get_freeze_count() == before > 0


def test_a_full_collection_inside_the_block_leaves_what_was_alive_on_entry_alone() -> None:
    # a cycle alive on entry but unreachable inside the block: frozen, a full collection must not free it
    seen: list[str] = []

    class Node:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            seen.append("freed")

    gc.disable()  # only the collections below: an automatic one could free the cycle before the block
    try:
        Node()  # garbage (a reference cycle), not yet collected
        with frozen_heap():
            gc.collect()
            assert seen == []
        gc.collect()
        assert seen == ["freed"]
    finally:
        gc.enable()
