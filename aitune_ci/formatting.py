"""Numbers as every file and report writes them: one rounding rule, one millisecond and percent style.

Two JSON encodings of a non-finite number exist on disk, and both stay: run and result files keep
``NaN``/``Infinity`` tokens (Python's json reads them back), while baselines and history, which
people diff and other tools read, use strict JSON with the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

import math

__all__ = ["fmt_db", "fmt_ms", "fmt_p", "fmt_pct", "round_sig", "strict_number"]


def round_sig(x: float, digits: int = 6) -> float:
    """``x`` to ``digits`` significant digits, for stable, diff-friendly JSON; NaN and ±inf unchanged."""
    if not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def strict_number(x: float) -> float | str:
    """``round_sig(x)``, or ``"nan"``/``"inf"``/``"-inf"`` where strict JSON has no number for ``x``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return round_sig(x)


def fmt_ms(x: float | None) -> str:
    """A duration in milliseconds, no unit: 4 significant digits, ``-`` when unknown."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4g}" if x < 1000 else f"{x:,.0f}"


def fmt_pct(x: float | None) -> str:
    """``+4.2%`` for a relative change, ``-`` when unknown."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:+.1f}%"


def fmt_db(x: float) -> str:
    """A signal-to-noise ratio in dB, ``inf`` for an exact match."""
    return "inf" if x == math.inf else f"{x:.1f}"


def fmt_p(x: float | None) -> str:
    """A p- or q-value, two significant digits, ``-`` when unknown."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2g}"
