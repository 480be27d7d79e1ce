"""The "did you mean" hint an error about a misspelt name ends with: one rule for what counts as close.

Pure and torch-free, so a usage error raised before anything heavy is imported (a backend name on the
command line, a key in ``[tool.aitune]``) can carry it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

__all__ = ["did_you_mean"]


def did_you_mean(word: str, choices: Iterable[str], *, quote: Callable[[str], str] = repr) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or "" when none is close.

    ``quote`` writes the name as the user would type it where they typed it: ``repr`` for Python
    (a fixture's declaration), ``json.dumps`` for a TOML string, ``str`` for a bare TOML key.
    """
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return f" (did you mean {quote(close[0])}?)" if close else ""
