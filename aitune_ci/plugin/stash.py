"""Where the plugin keeps its per-run state on ``config.stash`` (cheap to import: pytest only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from aitune_ci.plugin.session import AituneSession

__all__ = ["collectors_key", "session_key"]

#: This run's session, created by ``pytest_configure`` under ``--aitune``.
session_key: pytest.StashKey[AituneSession] = pytest.StashKey()
#: Directory and module collectors by path, to parent generated items under.
collectors_key = pytest.StashKey[dict]()
