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
    """While the block runs, the records of loggers ``names`` (and their children) below ERROR go to
    this module's logger at debug level (with their traceback) instead of their handlers and
    pytest's log capture. ERROR and above are handled as they would have been, after the block: a
    "Failed to register ..." there can be why an export fails. Handlers a library adds during the
    block are kept."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = _Keep()
    loggers = [logging.getLogger(name) for name in names]
    saved = [(list(lg.handlers), lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [keep], False
    try:
        yield
    finally:
        for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
            added = [h for h in lg.handlers if h is not keep and h not in handlers]
            lg.handlers, lg.propagate = handlers + added, propagate
        for record in records:
            _replay(record)


def _replay(record: logging.LogRecord) -> None:
    """One kept record: ERROR and above to its own logger's handlers, the rest at debug level here.
    Never raises: a record whose arguments do not format must not replace the block's own error."""
    try:
        if record.levelno >= logging.ERROR:
            logging.getLogger(record.name).handle(record)
        else:
            _log.debug("%s %s: %s", record.levelname, record.name, record.getMessage(), exc_info=record.exc_info)
    except Exception:  # noqa: BLE001 (a third party's broken log call)
        pass
