"""Baseline files as the plugin tests need them written (imported by conftest.py and test modules here)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aitune_ci.store.baseline import Baseline


def other_work(data: dict[str, Any]) -> dict[str, Any]:
    """A baseline's data as a nightly of other code (another work key) writes it, its record intact:
    with its own key, a stored check of unchanged code would pass untimed (``BaselineWork``)."""
    baseline = Baseline.from_json(data)
    if baseline.work is None:
        return data
    return json.loads(replace(baseline, work=replace(baseline.work, key="0" * 64)).to_json())
