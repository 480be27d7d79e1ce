"""Quiet by default: what tuning raises (warnings, torch's trace records) goes to aitune's tally, not pytest's.

pytest records the warnings of each test phase inside ``warnings.catch_warnings`` with the
user's ``-W`` and ``filterwarnings`` applied, and prints every one in its "warnings summary"
(``_pytest/warnings.py``: ``catch_warnings_for_item`` → ``pytest_warning_recorded``). A tune raises
dozens, nearly all from torch and the libraries a model imports. So ``catching`` opens a nested
``catch_warnings`` around aitune's own work only (evaluating tune fixtures at collection, and each
generated item's run) and counts what is raised there in a ``WarningTally``, which the terminal
summary shows as one line (``-v``: one line per warning) and the run JSON and reports carry.

What stays the user's:
- the user's tests (any item that is not aitune's): untouched, pytest reports their warnings;
- an ``ignore`` filter (``-W`` or ``filterwarnings``) still silences a warning inside tuning;
- an ``error`` filter is turned into recording inside tuning only: a torch deprecation must not
  fail an inductor check, while ``-W error`` keeps failing the user's own tests.

Torch's structured trace (``torch._logging.trace_structured``) logs an empty DEBUG record per
compile event to the ``torch.__trace`` logger, which torch detaches from the logger tree
(``propagate = False``) and which stays silent while it has no handler. Since pytest 9.1
(pytest-dev/pytest#14375) pytest attaches its log capture to every non-propagating logger, so
that one too: a failed check that compiled then shows hundreds of empty ``DEBUG torch.__trace``
lines under "Captured log call", and torch does the work of every trace event for nobody.
``trace_kept_from_pytest`` takes pytest's handlers off that one logger while aitune works; the
user's own handlers there (``TORCH_TRACE``'s file) stay, and other tests are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import sysconfig
import warnings
from typing import Iterator, TextIO

from aitune_ci.caught_warnings import COLLECTION, WarningTally, detail_lines, package_of, summary_line

__all__ = ["TORCH_TRACE_LOGGER", "catching", "summary_lines", "trace_kept_from_pytest"]

#: The logger ``torch._logging.trace_structured`` writes to (``torch._logging._internal.trace_log``).
TORCH_TRACE_LOGGER = "torch.__trace"


@contextlib.contextmanager
def catching(tally: WarningTally, phase: str = COLLECTION, fixture: str | None = None) -> Iterator[None]:
    """Count the warnings raised in the block in ``tally``, and keep torch's trace out of pytest's logs.

    The filters in force (pytest's, with the user's ``-W`` and ``filterwarnings``) still decide
    which warnings are raised, except that ``error`` records instead of raising (see the module).
    """
    places: dict[str, tuple[str, str, bool]] = {}  # filename -> (package, shown path, in the stdlib)

    def record(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        place = places.get(filename)
        if place is None:
            place = places[filename] = (*package_of(filename, sys.path), _in_stdlib(filename))
        package = place[0]
        if place[2]:
            # A stacklevel that lands in the standard library (torch's pytree deprecation points into
            # copyreg) names the library that warned instead: the caller of warnings.warn.
            issuer = _warn_caller()
            if issuer is not None:
                package = package_of(issuer, sys.path)[0]
        tally.add(
            category=category.__name__,
            message=str(message),
            filename=place[1],
            lineno=lineno,
            package=package,
            phase=phase,
            fixture=fixture,
        )

    with warnings.catch_warnings(), trace_kept_from_pytest():
        _record_instead_of_error()
        warnings.showwarning = record
        yield


_STDLIB = os.path.normpath(sysconfig.get_paths()["stdlib"]) + os.sep
_WARNINGS_FILE = os.path.normpath(warnings.__file__)
_THIS_FILE = os.path.normpath(__file__)


def _in_stdlib(filename: str) -> bool:
    path = os.path.normpath(filename) if os.path.isabs(filename) else ""
    return path.startswith(_STDLIB) and "site-packages" not in path and "dist-packages" not in path


def _warn_caller() -> str | None:
    """The file of the frame that called ``warnings.warn`` (above ``record`` and the warnings module)."""
    frame = sys._getframe(2)  # record's caller: the warnings module
    while frame is not None and os.path.normpath(frame.f_code.co_filename) in (_WARNINGS_FILE, _THIS_FILE):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else None


def _record_instead_of_error() -> None:
    """Re-install the filters in force with ``error`` read as ``always`` (inside a ``catch_warnings``)."""
    filters = list(warnings.filters)
    if not any(f[0] == "error" for f in filters):
        return
    warnings.resetwarnings()
    for action, message, category, module, lineno in filters:
        warnings.filterwarnings(
            "always" if action == "error" else action,
            _pattern(message),
            category,
            _pattern(module),
            lineno,
            append=True,
        )


def _pattern(field: re.Pattern[str] | str | None) -> str:
    """A filter's message or module as ``filterwarnings`` takes it (Python's own defaults hold exact strings)."""
    if field is None:
        return ""
    if isinstance(field, str):
        return re.escape(field) + r"\Z"
    return field.pattern


@contextlib.contextmanager
def trace_kept_from_pytest() -> Iterator[None]:
    """pytest's log handlers are off ``torch.__trace`` in the block, and back on after it."""
    logger = logging.getLogger(TORCH_TRACE_LOGGER)
    taken = [h for h in logger.handlers if type(h).__module__.split(".")[0] in ("_pytest", "pytest")]
    for handler in taken:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in taken:
            logger.addHandler(handler)  # pytest removes its per-phase handlers itself, after this


def summary_lines(tally: WarningTally, *, verbosity: int, reported: bool) -> list[str]:
    """The terminal summary's warning line, and with ``-v`` one line per distinct warning."""
    entries = tally.entries()
    line = summary_line(entries, verbose=verbosity > 0, reported=reported)
    if line is None:
        return []
    return [line, *detail_lines(entries)] if verbosity > 0 else [line]
