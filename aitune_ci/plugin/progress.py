"""Live progress of a tune on pytest's terminal, and the library's log records routed to it.

Tuning runs inside a test item, where output is captured: capture is suspended for each line, as
pytest-benchmark does, so a long tune shows what it is doing while it does it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys

import pytest

__all__ = ["TerminalProgress"]

#: Per-round timing lines: shown only with ``-v`` (the base's too, in relative mode).
_CHATTY = ("round ", "warm-up ", "iterations per round")
_BASE = "base · "
#: Our own warnings: ``warning: ...`` or ``tune_x: warning: ...`` (not a compiler's, quoted in an error).
_WARNING = re.compile(r"^(\S+: )?warning: ")


class TerminalProgress:
    """``progress(message)`` for the session, and a logging handler for the ``aitune_ci`` logger."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET

    def __call__(self, message: str) -> None:
        config = self.config
        # Both plugins register in their own pytest_configure, so look them up now.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        warning = _WARNING.match(message) is not None  # shown at any verbosity: -q is common in CI
        if reporter is None or (config.get_verbosity() < 0 and not warning):
            return
        if config.get_verbosity() < 1 and message.removeprefix(_BASE).startswith(_CHATTY):
            return
        worker = getattr(config, "workerinput", {}).get("workerid")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            if worker is None:
                reporter.write_line(f"[aitune] {message}")
            else:
                # An xdist worker's terminal goes nowhere, but its stderr is the controller's: say
                # which worker (and so which GPU) is on what.
                sys.stderr.write(f"[aitune {worker}] {message}\n")
                sys.stderr.flush()

    def install(self) -> None:
        """Show the library's INFO records (``aitune_ci.*`` loggers) as progress lines."""
        progress = self

        class _ToProgress(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                progress(self.format(record))

        self._handler = _ToProgress(logging.DEBUG if self.config.get_verbosity() > 1 else logging.INFO)
        logger = logging.getLogger("aitune_ci")
        logger.addHandler(self._handler)
        self._level = logger.level
        if logger.getEffectiveLevel() > self._handler.level:
            logger.setLevel(self._handler.level)

    def uninstall(self) -> None:
        if self._handler is not None:
            logger = logging.getLogger("aitune_ci")
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None
