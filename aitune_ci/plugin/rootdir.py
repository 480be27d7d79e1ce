"""A rootdir pytest took from the value of one of our path options, and how to say so.

pytest picks its rootdir and ini file before it loads plugins, from every command-line word that
names an existing path, so the value of ``--aitune-report /tmp/run.json`` takes part when the file
exists (a second run) and sits outside the repo: the rootdir moves up to ``/tmp``, the repo's
``pyproject.toml`` is not read, and baselines are looked for in ``/tmp/.aitune`` (every check NEW).
Written ``--aitune-report=/tmp/run.json`` it is one word starting with ``-``, which pytest skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from aitune_ci.options import OPTIONS

__all__ = ["PATH_OPTIONS", "hijacked_rootdir"]

#: Our options whose value is a file or folder.
PATH_OPTIONS = tuple(o.flag for o in OPTIONS if o.metavar in ("PATH", "DIR"))


def hijacked_rootdir(
    args: Sequence[str], invocation_dir: Path, rootpath: Path, inipath: Path | None
) -> str | None:
    """Why the rootdir pytest picked came from a path option's value, or None when it did not.

    It did when such a value was passed as a separate word and names an existing path, and the
    rootdir is not where the invocation directory leads: it is not that directory or above it, or
    the ini file pytest would find from there is not the one it read. ``--rootdir`` and ``-c``
    (the user's own choice) are left alone.
    """
    if any(a in ("--rootdir", "-c", "--config-file") or a.startswith(("--rootdir=", "--config-file=")) for a in args):
        return None
    nearest = _nearest_ini(invocation_dir)
    if _is_within(invocation_dir, rootpath) and (nearest is None or _same(nearest, inipath)):
        return None
    for flag, value in zip(args, args[1:], strict=False):
        path = Path(value) if Path(value).is_absolute() else invocation_dir / value
        if flag in PATH_OPTIONS and path.exists():
            read = f"its ini file {inipath}" if inipath is not None else "no ini file"
            missed = f", so {nearest} was not read" if nearest is not None and not _same(nearest, inipath) else ""
            return (
                f"pytest took its rootdir {rootpath} (and {read}) from the value of {flag} {value}: it picks "
                f"them before plugins load, from every word that names an existing path{missed}, and aitune "
                f"would look for baselines under {rootpath}. Write the option with '=': {flag}={value}"
            )
    return None


def _nearest_ini(start: Path) -> Path | None:
    """The ini file pytest would read for a run started in ``start`` with no path arguments."""
    for folder in (start, *start.parents):
        for name, marker in (
            ("pytest.ini", None),
            (".pytest.ini", None),
            ("pyproject.toml", "[tool.pytest"),
            ("tox.ini", "[pytest]"),
            ("setup.cfg", "[tool:pytest]"),
        ):
            candidate = folder / name
            if candidate.is_file() and (marker is None or _mentions(candidate, marker)):
                return candidate
    return None


def _mentions(path: Path, marker: str) -> bool:
    try:
        return marker in path.read_text(errors="replace")
    except OSError:
        return False


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _same(a: Path, b: Path | None) -> bool:
    return b is not None and a.resolve() == b.resolve()
