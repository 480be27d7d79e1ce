"""Exceptions raised by aitune-ci.

The tree::

    AituneCIError                 base: catch this to catch everything below
    ├── SpecError                 a TuneSpec (or a tune_* fixture) is wrong; says which field and why
    ├── BackendError              a backend name is unknown or a backend cannot be used
    │   └── BackendUnavailable    the backend exists but cannot run here (reason attached)
    ├── DataFileError             a baseline / result / history file is corrupt or of an unknown schema
    ├── ArtifactError             a .ait file is unsafe, corrupt, or not loadable here
    └── GitHubError               the GitHub API refused or failed a request (status attached)
"""

from __future__ import annotations

__all__ = [
    "AituneCIError",
    "ArtifactError",
    "BackendError",
    "BackendUnavailable",
    "DataFileError",
    "GitHubError",
    "SpecError",
]


class AituneCIError(Exception):
    """Base class of every error aitune-ci raises on purpose."""


class SpecError(AituneCIError, ValueError):
    """A TuneSpec field (or what a tune_* fixture returned) is not what is expected."""


class BackendError(AituneCIError):
    """A backend is unknown, or cannot be used as asked."""


class BackendUnavailable(BackendError):
    """The backend exists but cannot run on this machine; ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"backend {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


class BackendNotApplicable(BackendError):
    """The backend has nothing to work on in this module (a quantizer finds no layer of the kind it converts).

    For the whole model that fails the backend: the user asked for it. For a part tuned with
    ``modules=[...]`` it is expected (a conv backbone has no Linear layer), so the part leaves the
    backend out as unavailable, with ``reason``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DataFileError(AituneCIError):
    """A JSON file aitune-ci reads is corrupt, truncated, or of an unknown schema.

    The message always names the file and the command that regenerates it.
    """

    def __init__(self, path: object, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}. To fix: {fix}")
        self.path = path
        self.problem = problem
        self.fix = fix
        #: a newer aitune-ci wrote the file: an update must not overwrite it (it would lose what that one keeps)
        self.written_by_newer = False


class ArtifactError(AituneCIError):
    """A .ait artifact is unsafe, corrupt, from another environment, or cannot be loaded."""


class GitHubError(AituneCIError):
    """The GitHub API refused or failed a request; ``status`` is the HTTP status (None: no answer).

    The message says what to change (permissions, repository, token) and never holds the token.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
