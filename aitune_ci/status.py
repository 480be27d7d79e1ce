"""What a backend run ended as, what a check concluded, and how every report shows each: one table.

A new verdict kind is a member of :class:`VerdictKind`, its row in ``PRESENTATION`` and the rule
in :mod:`aitune_ci.verdict.judge` that produces it; the terminal table, the markdown comment, the
HTML report, its charts and the count line all read the row (severity order, icon, colour, count
label, headline) from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "BackendStatus",
    "NO_CHECKS",
    "PRESENTATION",
    "Presentation",
    "VerdictKind",
    "VerdictMode",
    "by_severity",
    "presentation",
]


class _StrEnum(str, Enum):
    """Members equal their values (``kind == "REGRESSED"``) and print as them, in JSON too."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class BackendStatus(_StrEnum):
    """How building, validating and measuring one backend ended (``BackendResult.status``)."""

    OK = "ok"
    #: built and ran, but failed the accuracy gate: measured, never selected
    INACCURATE = "inaccurate"
    FAILED = "failed"
    #: not installed / not supported on this device: the reason is in ``error``
    UNAVAILABLE = "unavailable"

    @property
    def ran(self) -> bool:
        """Built and produced outputs (accurate or not), so it was measured."""
        return self in (BackendStatus.OK, BackendStatus.INACCURATE)

    @property
    def broken(self) -> bool:
        """Failed to build or run, or gave wrong numbers: the check fails unless the baseline did too."""
        return self in (BackendStatus.FAILED, BackendStatus.INACCURATE)


class VerdictKind(_StrEnum):
    """The outcome of one check. FAILED: the backend fails and never worked in the baseline."""

    PASS = "PASS"
    IMPROVED = "IMPROVED"
    REGRESSED = "REGRESSED"
    NEW = "NEW"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"


class VerdictMode(_StrEnum):
    """What a check was judged against."""

    #: the committed baseline (nightly, history, and the fallback): other processes, other days
    STORED = "stored"
    #: the PR's base, built and timed interleaved with the head in the same process
    RELATIVE = "relative"


@dataclass(frozen=True)
class Presentation:
    """How every report shows one verdict kind.

    Attributes:
        severity: sort key, most severe first (0); also picks a run's overall verdict.
        icon: shown in the PR comment.
        colour: mid-tone colour, readable on white and on near-black (charts, HTML badges).
        css: the HTML report's class for the badge (``bad``, ``good``, ``new``, ``dim``).
        count_label: the word in ``aitune: 12 passed, 1 regressed``.
        headline: the comment's headline when this kind is the run's overall verdict.
        changed: listed among "what changed" in the comment (unchanged ones are folded away).
    """

    severity: int
    icon: str
    colour: str
    css: str
    count_label: str
    headline: str
    changed: bool


#: In the order of the count line. Severity orders every report's rows.
PRESENTATION: dict[VerdictKind, Presentation] = {
    VerdictKind.PASS: Presentation(4, "✅", "#8e8c99", "dim", "passed", "no regressions", False),
    VerdictKind.IMPROVED: Presentation(2, "🟢", "#30a46c", "good", "improved", "faster, nothing regressed", True),
    VerdictKind.REGRESSED: Presentation(0, "🔴", "#e5484d", "bad", "regressed", "regression", True),
    VerdictKind.FAILED: Presentation(1, "❌", "#e5484d", "bad", "failed", "failing backend", True),
    VerdictKind.NEW: Presentation(3, "🆕", "#3e7bfa", "new", "new", "new checks, nothing regressed", True),
    VerdictKind.SKIPPED: Presentation(5, "⏭️", "#8e8c99", "dim", "skipped", "every check skipped", False),
}

#: A run with no verdicts at all (``overall_verdict`` of nothing).
NO_CHECKS = Presentation(9, "⚪", "#8e8c99", "dim", "no checks", "no checks ran", False)


def presentation(kind: object) -> Presentation:
    """The row for ``kind`` (a member or its string value); ``NO_CHECKS`` for anything else."""
    try:
        return PRESENTATION[VerdictKind(str(kind))]
    except ValueError:
        return NO_CHECKS


def by_severity() -> list[VerdictKind]:
    """Every kind, most severe first."""
    return sorted(PRESENTATION, key=lambda k: PRESENTATION[k].severity)
