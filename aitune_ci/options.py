"""The ``--aitune-*`` options, added by one helper shared by pytest and the ``aitune-ci`` CLI.

Every option is also an ini key (``aitune_dir = ...`` under ``[tool.pytest.ini_options]``); the
command line wins over the ini file.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aitune_ci.report import REPORT_FORMATS, report_suffix

__all__ = [
    "OPTIONS",
    "Shard",
    "parse_shard",
    "parse_threshold",
    "parse_seconds",
    "parse_report",
    "parse_backends",
    "parse_fixtures",
    "add_options",
]


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/n"`` with 1 <= i <= n (1-based, as people count shards in a CI matrix)."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--aitune-shard expects i/n such as 1/4, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--aitune-shard {text!r}: i must be between 1 and n")
    return Shard(i, n)


def parse_threshold(text: str) -> float:
    """A relative latency tolerance: ``0.05`` or ``5%``."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--aitune-threshold expects a fraction (0.05) or percent (5%), got {text!r}"
        ) from None
    if not 0 < value < 10:
        raise argparse.ArgumentTypeError(f"--aitune-threshold {text!r} is out of range (0, 10)")
    if value >= 1 and not s.endswith("%"):
        # "5" for five percent would read as 500%, and let a 2x slowdown pass
        raise argparse.ArgumentTypeError(
            f"--aitune-threshold {text!r} reads as a fraction, {value:.0%}: write {s}% for {s} percent, "
            f"or {value:.0%} if you mean it"
        )
    return value


def parse_seconds(text: str) -> float:
    """A measurement budget in seconds: a finite number above 0."""
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"--aitune-measure-seconds expects seconds above 0 such as 4, got {text!r}")
    return value


def parse_report(text: str) -> str:
    """A report path whose suffix names a format aitune-ci writes; checked before anything is tuned,
    so that a typo cannot end a finished run (and its history line) at the report."""
    try:
        report_suffix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--aitune-report: {exc}") from None
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"--aitune-report {text!r} is a directory: give a file, such as {text}/run.json"
        )
    return str(text)


def parse_backends(text: str) -> list[str]:
    return [b.strip() for b in str(text).split(",") if b.strip()]


def parse_fixtures(text: str) -> list[str]:
    """``"tune_a,tune_b"``: exact tune fixture names (unlike ``-k``, ``tune_a`` does not match ``tune_ab``)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"--aitune-fixtures expects tune fixture names, comma-separated (tune_resnet,tune_bert), got {text!r}"
        )
    return names


@dataclass(frozen=True)
class _Option:
    flag: str
    dest: str
    help: str
    action: str = "store"
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    default: Any = None
    ini_type: str | None = "string"


def _report_help() -> str:
    """The ``--aitune-report`` help, listing every format the report table knows (argparse reads % as a format)."""
    formats = "; ".join(f"{suffix} {fmt.description}" for suffix, fmt in REPORT_FORMATS.items())
    return f"write a report; its suffix picks the format: {formats} (repeatable). Default: none".replace("%", "%%")


# One option a line: the table reads as the --help it makes.
# fmt: off
OPTIONS: tuple[_Option, ...] = (
    _Option("--aitune", "aitune", "tune every tune_* fixture, check it against its baseline. Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-dir", "aitune_dir", "where baselines, artifacts and history live. Default: .aitune", metavar="DIR", default=".aitune"),
    _Option("--aitune-update", "aitune_update", "write new baselines (and artifacts) for every tuned fixture. Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-update-new-only", "aitune_update_new_only", "write baselines only where none exists yet. Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-threshold", "aitune_threshold", "latency tolerance before a slowdown can fail: fraction or percent. Default: 5%%", type=parse_threshold, metavar="FRACTION", default=None),
    _Option("--aitune-backends", "aitune_backends", "only these backends (comma-separated). Default: each spec's own list", type=parse_backends, metavar="A,B", default=None),
    _Option("--aitune-report", "aitune_report", _report_help(), "append", type=parse_report, metavar="PATH", default=None, ini_type="linelist"),
    _Option("--aitune-fixtures", "aitune_fixtures", "only the checks of these tune fixtures, by exact name (comma-separated; tune_lin does not select tune_lin_big, as -k would); other tests are not affected. Default: all", type=parse_fixtures, metavar="NAME[,NAME]", default=None),
    _Option("--aitune-shard", "aitune_shard", "run only shard i of n (fixtures split evenly, 1-based). Default: all", type=parse_shard, metavar="I/N", default=None),
    _Option("--aitune-strict", "aitune_strict", "a missing baseline fails instead of reporting NEW. Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-warn-only", "aitune_warn_only", "report regressions (latency, accuracy, metrics) and which would fail, without failing; a backend that fails to build, run or stay accurate still fails. Per check: warn_only in [tool.aitune]. Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-reuse", "aitune_reuse", "also load the committed artifact's winner instead of building it when its spec hash matches (what a build key covers: user code by content, weights, samples, options, torch config, env vars, versions); helps where the build cache is empty, but the winner then gets no paired A/B against that artifact. Default: off (the build cache is on)", "store_true", ini_type="bool", default=False),
    _Option("--aitune-rebuild", "aitune_rebuild", "build every backend: load nothing from the build cache or the committed artifact (the fresh builds replace the cached ones), and tune and time even where the base (--aitune-against) or the baseline's latest update did the same work (no stored result answers). Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-cache-dir", "aitune_cache_dir", "the runner's build cache: each backend's build, loaded instead of rebuilt when its build key (code, weights, samples, options, torch config, env vars, versions) matches, and tune results by work key: one answers for a relative check whose base and head do that same work, and for a stored check doing the work its baseline's latest update tuned; 'off' turns both off; size capped by $AITUNE_CACHE_MAX_GB (20). Default: $AITUNE_CACHE_DIR or ~/.cache/aitune-ci/builds", metavar="DIR", default=None),
    _Option("--aitune-oversubscribe", "aitune_oversubscribe", "allow more pytest-xdist workers than GPUs (their timings disturb each other). Default: off", "store_true", ini_type="bool", default=False),
    _Option("--aitune-measure-seconds", "aitune_measure_seconds", "measurement budget per fixture (interleaved rounds). Default: 4", type=parse_seconds, metavar="S", default=None),
    _Option("--aitune-against", "aitune_against", "relative mode: build the fixtures of this git ref (the PR's base) from a worktree and time base and head interleaved in one process; each verdict rests on their paired ratio. Default: off (judge against the stored baselines)", metavar="REF", default=None),
)
# fmt: on


def add_options(addoption: Callable[..., Any], prefix: str = "") -> None:
    """Add every option through ``addoption`` (pytest's group.addoption or argparse's add_argument)."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.dest, "action": opt.action, "help": opt.help}
        if opt.action == "store":
            kwargs.update(type=opt.type, metavar=opt.metavar)
        elif opt.action == "append":
            kwargs.update(type=opt.type, metavar=opt.metavar)
        kwargs["default"] = None
        addoption(prefix + opt.flag.removeprefix("--") if prefix else opt.flag, **kwargs)
