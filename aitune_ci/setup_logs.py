"""Third-party log records of a one-time set-up, kept at debug level in aitune-ci's own log.

A library's first import or first use logs what concerns its own packaging: torchao on a CPU
torch ("Failed to load .../_C_mxfp8...so"), torch's ONNX exporter building its op registry
("torchvision is not installed. Skipping torchvision::nms", once per torchvision op). Those lines
reached `aitune-ci backends` before its table, and every failing item's captured log. They stay
readable with ``-vv`` (the plugin shows aitune-ci's debug records then).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["setup_logs_at_debug"]

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def setup_logs_at_debug(*names: str) -> Iterator[None]:
    """While the block runs, the records of loggers ``names`` (and their children) go to this
    module's logger at debug level instead of their handlers and pytest's log capture."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = _Keep()
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg.handlers, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [keep], False
    try:
        yield
    finally:
        for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate = handlers, propagate
        for record in records:
            _log.debug("%s: %s", record.name, record.getMessage())
