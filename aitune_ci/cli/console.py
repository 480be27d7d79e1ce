"""The CLI's console: the library logs instead of printing, so the command decides where its lines go."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

__all__ = ["console_logging"]


class _ConsoleHandler(logging.Handler):
    """Plain lines: INFO and below on stdout with the command's other output, warnings and errors on stderr.

    The stream is looked up for each record, so output redirected after installation (pytest's
    ``capsys``, ``contextlib.redirect_stdout``) is honoured.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never take the command down: report it the logging way
            self.handleError(record)


@contextlib.contextmanager
def console_logging(verbose: bool = False) -> Iterator[None]:
    """Show the records of the ``aitune_ci`` loggers on the console while the block runs.

    Args:
        verbose: show DEBUG records too. Default: INFO and above.
    """
    handler = _ConsoleHandler(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("aitune_ci")
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > handler.level:
        logger.setLevel(handler.level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
