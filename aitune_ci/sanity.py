"""Sanity checks that catch fake wins: a quantization that did not apply, a speed-up too good to be true.

Pure: plain numbers in, reasons out. The torchao backend counts its converted layers and asks
:func:`conversion_problem`; the engine hands every measured backend to :func:`implausible_speedups`
before choosing the winner.

Why these rules. Users of torchao and TensorRT keep reporting two kinds of fake win:

- a quantization config that matched no layer (a conv-only model under a Linear-only recipe, a
  filter that skipped everything): the "quantized" model is the float model, any speed-up is
  noise or a side effect, and its accuracy "passes" trivially;
- a 4-6x "speed-up" that came with an accuracy collapse: work was skipped (a layer folded away, a
  wrong kernel, a cache hit on stale outputs) and the outputs still squeaked past a loose gate.

The first is certain and FAILS the backend. The second is a suspicion: it is flagged *for review*
(the backend is never selected as the winner, and its check fails until someone acknowledges it in
``[tool.aitune.acknowledged]``), never silently accepted and never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_SPEEDUP",
    "REVIEW_SQNR_MARGIN_DB",
    "SanityConfig",
    "SpeedClaim",
    "conversion_problem",
    "implausible_speedups",
]

#: A backend more than this many times faster than the best other backend *and* less accurate is
#: flagged for review. 3x over the best other backend is beyond what a compiler or int8/fp8
#: weights give a model already tuned by another backend (measured on the H100, torch.compile and
#: AOTInductor stay within ~1.5x of each other; int8/fp8 over bf16 within ~2x); with eager as the
#: only other backend it also holds for most models, and ``[tool.aitune] max_plausible_speedup``
#: raises it (TensorRT fp16 over fp32 eager can honestly reach 5x).
DEFAULT_MAX_SPEEDUP = 3.0

#: An SQNR this much below the other backends' counts as an accuracy drop (1 dB is ~26% more noise
#: power; less is what re-ordered float reductions move).
REVIEW_SQNR_MARGIN_DB = 1.0

#: Cosine this much below the other backends' counts as an accuracy drop.
REVIEW_COSINE_MARGIN = 1e-4


@dataclass(frozen=True)
class SanityConfig:
    """How the engine applies the speed-up check.

    Attributes:
        max_speedup: the largest plausible speed-up over the best other backend; ``inf`` turns the check off.
        accepted: backends a human has acknowledged (``[tool.aitune.acknowledged]``): not flagged.
        sqnr_ceiling_db: SQNR above this is float rounding (as the baseline comparison treats it).
    """

    max_speedup: float = DEFAULT_MAX_SPEEDUP
    accepted: frozenset[str] = frozenset()
    sqnr_ceiling_db: float = 80.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_speedup, (int, float))
            or isinstance(self.max_speedup, bool)
            or not self.max_speedup > 1
        ):
            raise ValueError(
                f"SanityConfig.max_speedup must be a number > 1 (inf turns it off), got {self.max_speedup!r}"
            )


@dataclass(frozen=True)
class SpeedClaim:
    """One measured, accurate backend as the speed-up check sees it.

    ``sqnr_db`` and ``cosine`` are its worst output leaf's against the eager reference (``inf`` and
    1.0 for exact outputs); None when not measured.
    """

    backend: str
    median_ms: float
    sqnr_db: float | None = None
    cosine: float | None = None


def conversion_problem(
    backend: str, converted: int, total: int, *, layer: str = "Linear", model: str = ""
) -> str | None:
    """Why a quantized build is not quantized at all (``converted == 0``), or None when some layer converted.

    A partial conversion is legitimate (fp8 skips layers whose dims are not multiples of 16); none
    at all is not a quantized backend, and its "speed-up" would be an artifact.
    """
    if converted > 0:
        return None
    of = f" of {model}" if model else ""
    if total == 0:
        why = f"the model has no {layer} layer, and the recipe quantizes {layer} layers only"
    else:
        why = "the recipe skipped every one of them (a filter, a shape or dtype it does not support)"
    return (
        f"{backend} converted 0 of {total} {layer} layers{of} (it quantized no layer): {why}. "
        "It would run the float model, so any speed-up would be an artifact; drop this backend for this model"
    )


def _clamped(sqnr: float | None, ceiling: float) -> float:
    if sqnr is None or math.isnan(sqnr):
        return math.nan
    return min(sqnr, ceiling)


def implausible_speedups(
    claims: Sequence[SpeedClaim],
    max_speedup: float = DEFAULT_MAX_SPEEDUP,
    *,
    sqnr_ceiling_db: float = 80.0,
) -> dict[str, str]:
    """Backends more than ``max_speedup`` times faster than the best other one *and* less accurate than every other.

    "Less accurate": its SQNR (clamped at ``sqnr_ceiling_db``) is more than ``REVIEW_SQNR_MARGIN_DB``
    below the lowest of the others', or its cosine more than ``REVIEW_COSINE_MARGIN`` below theirs.
    Eager counts among the others (SQNR inf: exact), so a backend compared with eager alone
    "drops" as soon as it is not exact. A fast backend with the others' accuracy is a real win and
    passes; so does a slow inaccurate one (the accuracy gate and the baseline judge it).

    Returns:
        ``{backend: reason}`` of the flagged ones (empty when fewer than two backends were measured).
    """
    out: dict[str, str] = {}
    if not math.isfinite(max_speedup) or len(claims) < 2:
        return out
    for c in claims:
        others = [o for o in claims if o.backend != c.backend and o.median_ms > 0]
        if not others or c.median_ms <= 0:
            continue
        fastest = min(others, key=lambda o: o.median_ms)
        speedup = fastest.median_ms / c.median_ms
        if speedup <= max_speedup:
            continue
        drop = _accuracy_drop(c, others, sqnr_ceiling_db)
        if drop is None:
            continue
        out[c.backend] = (
            f"{speedup:.1f}x faster than the best other backend ({fastest.backend}, {fastest.median_ms:.4g} ms vs "
            f"{c.median_ms:.4g} ms) while {drop}; a speed-up beyond {max_speedup:g}x with an accuracy drop is "
            "usually skipped work or wrong outputs that slipped past the gate. If it is real, acknowledge it: "
            "add this check to [tool.aitune.acknowledged] with the reason (or raise max_plausible_speedup)"
        )
    return out


def _accuracy_drop(c: SpeedClaim, others: Sequence[SpeedClaim], ceiling: float) -> str | None:
    """How ``c`` is less accurate than every other claim, or None when it is not."""
    own = _clamped(c.sqnr_db, ceiling)
    theirs = [(_clamped(o.sqnr_db, ceiling), o.sqnr_db, o.backend) for o in others if o.sqnr_db is not None]
    theirs = [t for t in theirs if not math.isnan(t[0])]
    if not math.isnan(own) and theirs:
        lowest, raw, who = min(theirs)
        if own < lowest - REVIEW_SQNR_MARGIN_DB:
            return f"its SQNR is {c.sqnr_db:.1f} dB against {raw:.1f} dB for {who}, the least accurate other backend"
    cosines = [(o.cosine, o.backend) for o in others if o.cosine is not None and not math.isnan(o.cosine)]
    if c.cosine is not None and not math.isnan(c.cosine) and cosines:
        lowest_cos, who = min(cosines)
        if c.cosine < lowest_cos - REVIEW_COSINE_MARGIN:
            return f"its cosine is {c.cosine:.5f} against {lowest_cos:.5f} for {who}, the least accurate other backend"
    return None
