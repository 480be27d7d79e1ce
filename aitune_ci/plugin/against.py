"""The PR's base, checked out from git and imported under its own module names, beside the head.

Relative mode (``--aitune-against REF``) times base and head interleaved in one process, because a
process keeps its own speed offset for life on a GPU: a base process and a head process taking
turns are not a pair. So the base's fixture modules, and the user's model code they import, are
loaded from a git worktree of REF into this process without replacing the head's modules of the
same names: while the base is imported and its fixtures called, the head's repo modules are set
aside and the worktree's paths come first; afterwards the base's modules are renamed under
``aitune_base.`` and the head's put back. Models built then keep their own classes and globals.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aitune_ci.errors import AituneCIError
from aitune_ci.plugin.discovery import find_tune_fixtures

__all__ = ["BaseCheckout", "BaseCheckoutError"]

T = TypeVar("T")

#: Prefix of the base's modules in ``sys.modules`` once they are set aside.
MODULE_PREFIX = "aitune_base"


class BaseCheckoutError(AituneCIError):
    """The base ref could not be checked out or imported; the message says what to do."""


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaseCheckoutError(f"git {' '.join(args)} failed to run in {repo}: {exc}") from None
    if done.returncode != 0:
        raise BaseCheckoutError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _installed_roots() -> tuple[str, ...]:
    """Where installed packages live: their modules are shared by base and head, never swapped."""
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    return tuple(os.path.realpath(p) for p in paths)


@dataclass
class BaseCheckout:
    """A detached git worktree of ``ref`` (the PR's base) inside the user's repository.

    Attributes:
        ref: what the user asked for (a branch, tag or sha).
        sha: the commit it resolved to.
        repo: the repository's top folder (the head's checkout).
        root: the worktree's top folder.
    """

    ref: str
    sha: str
    repo: Path
    root: Path
    #: the base's modules by their own names, set aside (as ``aitune_base.<name>``) between calls
    _aside: dict[str, types.ModuleType] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, repo: Path, ref: str, parent: Path) -> BaseCheckout:
        """Check ``ref`` out into a fresh worktree under ``parent`` (reused when it already holds that sha)."""
        try:
            top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        except BaseCheckoutError as exc:
            raise BaseCheckoutError(
                f"--aitune-against {ref!r} needs a git checkout of the repo ({exc}): run it in a clone, or drop "
                "--aitune-against to check against the committed baselines"
            ) from None
        try:
            sha = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except BaseCheckoutError:
            raise BaseCheckoutError(
                f"--aitune-against {ref!r}: no such commit in {top}. Fetch it first (in CI: "
                "`actions/checkout` with `fetch-depth: 0`, or `git fetch origin <base>`)."
            ) from None
        root = parent / f"base-{sha[:12]}"
        if (root / ".git").exists():
            if _git(root, "rev-parse", "HEAD") == sha:
                return cls(ref, sha, top, root)
            _git(top, "worktree", "remove", "--force", str(root))
        parent.mkdir(parents=True, exist_ok=True)
        _git(top, "worktree", "add", "--detach", "--force", str(root), sha)
        return cls(ref, sha, top, root)

    def remove(self) -> None:
        """Delete the worktree (best effort: a leftover one is reused or replaced next time)."""
        with contextlib.suppress(BaseCheckoutError):
            _git(self.repo, "worktree", "remove", "--force", str(self.root))

    def path_of(self, head_path: Path) -> Path:
        """The base's file at the same place as ``head_path`` in the head's checkout."""
        return self.root / Path(head_path).resolve().relative_to(self.repo.resolve())

    def fixtures(self, head_files: Sequence[Path], call: Callable[[str, Callable[..., Any], Path], T]) -> dict[str, T]:
        """Import the base's version of each file and ``call(name, fixture_function, base_file)`` for its fixtures.

        The calls run while the base's modules are in place, so a fixture that imports model code
        when called gets the base's. Files the base lacks are skipped (a new fixture has no base).
        Returns ``{fixture name: what call returned}``; the first definition of a name wins.
        """
        found: dict[str, T] = {}
        with self._imported() as load:
            for head_file in head_files:
                base_file = self.path_of(head_file)
                if not base_file.is_file():
                    continue
                module = load(base_file)
                for name, func in find_tune_fixtures(module):
                    if name not in found:
                        found[name] = call(name, func, base_file)
        return found

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` with the base's modules in place again: a base fixture called after ``fixtures``
        (when its head fixture is tuned) imports the base's code, as it would have during ``fixtures``.
        """
        with self._imported():
            return fn()

    @contextlib.contextmanager
    def _imported(self) -> Iterator[Callable[[Path], types.ModuleType]]:
        repo = os.path.realpath(self.repo)
        base = os.path.realpath(self.root)
        installed = _installed_roots()

        def in_repo(module: types.ModuleType) -> bool:
            file = getattr(module, "__file__", None)
            if not file:
                return False
            path = os.path.realpath(file)
            return (
                path.startswith(repo + os.sep)
                and not path.startswith(base + os.sep)
                and not path.startswith(installed)
                and "site-packages" not in path.split(os.sep)
                and module.__name__.split(".")[0] not in ("aitune_ci", MODULE_PREFIX)
            )

        head_modules = {name: m for name, m in list(sys.modules.items()) if in_repo(m)}
        for name in head_modules:
            del sys.modules[name]
        saved_path = list(sys.path)
        sys.path[:] = [self._moved(p, repo, base) for p in sys.path]
        if base not in sys.path:
            sys.path.insert(0, base)
        importlib.invalidate_caches()
        sys.modules.update(self._aside)  # what earlier calls imported from the base, under its own names
        before = set(sys.modules) - set(self._aside)

        def load(file: Path) -> types.ModuleType:
            digest = hashlib.sha256(str(file).encode()).hexdigest()[:10]
            name = f"{MODULE_PREFIX}.{file.stem}_{digest}"
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise BaseCheckoutError(f"cannot import the base's {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            # Its own folder first, as pytest's default import mode does for a conftest or test module.
            sys.path.insert(0, str(file.parent))
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise BaseCheckoutError(
                    f"importing the base's {file.relative_to(self.root)} at {self.sha[:12]} raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            finally:
                sys.path.remove(str(file.parent))
            return module

        try:
            yield load
        finally:
            for name in set(sys.modules) - before:
                file = getattr(sys.modules[name], "__file__", None) or ""
                if name.startswith(MODULE_PREFIX + ".") or not os.path.realpath(file).startswith(base + os.sep):
                    continue  # ours already, or an installed library imported for the first time: shared
                self._aside[name] = sys.modules[f"{MODULE_PREFIX}.{name}"] = sys.modules.pop(name)
            sys.modules.update(head_modules)
            sys.path[:] = saved_path
            importlib.invalidate_caches()

    @staticmethod
    def _moved(path: str, repo: str, base: str) -> str:
        """``path`` inside the head's checkout, pointed at the same place in the base's."""
        real = os.path.realpath(path or os.getcwd())
        if real == repo:
            return base
        if real.startswith(repo + os.sep) and not real.startswith(base + os.sep):
            return base + real[len(repo) :]
        return path
