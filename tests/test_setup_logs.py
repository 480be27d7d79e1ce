"""``aitune_ci.setup_logs``: a one-time set-up's third-party log lines at debug, errors as they were."""

from __future__ import annotations

import logging

import pytest

from aitune_ci.setup_logs import setup_logs_at_debug


def test_warnings_go_to_debug_errors_pass_and_the_logger_is_restored(caplog):
    lib = logging.getLogger("some_lib.registry")
    before = (list(logging.getLogger("some_lib").handlers), logging.getLogger("some_lib").propagate)
    with caplog.at_level(logging.DEBUG):
        with setup_logs_at_debug("some_lib"):
            lib.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            lib.error("Failed to register %s. Skipped", "aten::foo")
        seen = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("some_lib.registry", logging.WARNING, "torchvision is not installed. Skipping torchvision::nms") not in seen
    assert (
        "aitune_ci.setup_logs",
        logging.DEBUG,
        "WARNING some_lib.registry: torchvision is not installed. Skipping torchvision::nms",
    ) in seen
    # an error can be why the set-up's next step fails: it is handled as it would have been
    assert ("some_lib.registry", logging.ERROR, "Failed to register aten::foo. Skipped") in seen
    assert (list(logging.getLogger("some_lib").handlers), logging.getLogger("some_lib").propagate) == before


def test_the_blocks_own_error_survives_a_broken_log_call_and_added_handlers_stay():
    lib = logging.getLogger("other_lib")
    added = logging.NullHandler()
    with pytest.raises(RuntimeError, match="the export failed"):
        with setup_logs_at_debug("other_lib"):
            lib.addHandler(added)  # a library that sets up its logging on first use
            lib.warning("%d ops", "not a number")  # formats only when replayed
            raise RuntimeError("the export failed")
    assert added in lib.handlers
    lib.removeHandler(added)
