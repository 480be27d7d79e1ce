"""Git plumbing for the baseline PR: every git command it runs, with tokens kept out of argv and messages."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from aitune_ci.errors import AituneCIError

__all__ = ["Git", "GitError", "PushTarget", "push_target", "redact_url"]

#: Git LFS's own filter settings (what ``git lfs install`` writes), passed with ``-c`` so a runner
#: whose git config lacks them still stores pointers, and ``required`` makes a broken filter fail loudly
#: instead of committing the raw file.
LFS_FILTER_CONFIG = (
    "filter.lfs.clean=git-lfs clean -- %f",
    "filter.lfs.process=git-lfs filter-process",
    "filter.lfs.required=true",
)

_TOKEN_ENV = "AITUNE_CI_PUSH_TOKEN"
# A credential helper that answers from the environment: the token never enters argv (readable by
# every user in /proc/<pid>/cmdline), the remote URL, .git/config, or a message git prints.
_CREDENTIAL_HELPER = f'!f() {{ test "$1" = get && echo username=x-access-token && echo "password=${_TOKEN_ENV}"; }}; f'


class GitError(AituneCIError):
    """A git command failed; the message holds its stderr with every secret replaced by ``***``."""


@dataclass(frozen=True)
class PushTarget:
    """How to reach the remote: its name, extra ``-c`` settings, and environment (where a token travels).

    Attributes:
        remote: the git remote's name (``origin``): git and git-lfs keep using its own configuration.
        display: the remote's URL without credentials, safe to print.
        config: ``-c`` settings for every command that talks to the remote.
        env: environment for those commands.
    """

    remote: str
    display: str
    config: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        """Whether the token is offered to the remote."""
        return bool(self.config)


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (scp-like and local paths unchanged)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def push_target(remote: str, remote_url: str, *, token: str | None, server_url: str | None) -> PushTarget:
    """Decide whether a push to ``remote_url`` carries the token: only over HTTP(S) to GitHub's own host.

    The token goes as the password of user ``x-access-token`` (what GitHub expects from an installation
    or workflow token), answered by a credential helper that reads it from the environment. Any other
    helper and ``actions/checkout``'s persisted ``extraheader`` for that host are switched off for the
    command, so the token passed here (a GitHub App token, say) is the one that is used.

    Args:
        remote: the remote's name.
        remote_url: its push URL (``git remote get-url --push``).
        token: the token; None or empty pushes with whatever git is configured with.
        server_url: ``$GITHUB_SERVER_URL`` (``https://github.com`` when None).
    """
    display = redact_url(remote_url)
    if not token:
        return PushTarget(remote, display)
    parts = urlsplit(remote_url)
    server = urlsplit(server_url or "https://github.com")
    host = parts.netloc.rpartition("@")[2].lower()
    if parts.scheme not in ("http", "https") or host != server.netloc.lower():
        return PushTarget(remote, display)  # ssh, a local path, or another host: never send it the token
    origin = f"{server.scheme}://{server.netloc}/"
    config = (
        f"http.{origin}.extraheader=",  # an empty value resets the list checkout may have persisted
        "credential.helper=",  # likewise for helpers configured on the runner
        f"credential.helper={_CREDENTIAL_HELPER}",
    )
    return PushTarget(remote, display, config, {_TOKEN_ENV: token})


class Git:
    """Runs git in one repository; failures raise :class:`GitError` with the secrets redacted.

    Args:
        cwd: a folder inside the repository.
        secrets: strings replaced by ``***`` in every message (the token).
        timeout: seconds one git command may take.
    """

    def __init__(self, cwd: str | os.PathLike[str], *, secrets: Iterable[str] = (), timeout: float = 900) -> None:
        self.cwd = Path(cwd)
        self.secrets = tuple(s for s in secrets if s)
        self.timeout = timeout

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def run(
        self,
        *args: str,
        input: bytes | None = None,  # noqa: A002 - subprocess's name
        env: Mapping[str, str] | None = None,
        config: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``git [-c config]... args``; raise GitError when it fails and ``check`` is set."""
        argv = ["git", *(item for c in config for item in ("-c", c)), *args]
        full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
        try:
            done = subprocess.run(
                argv, cwd=self.cwd, input=input, capture_output=True, env=full_env, timeout=self.timeout
            )
        except FileNotFoundError:
            raise GitError("git is not installed (or not on PATH)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} did not finish within {self.timeout:.0f} s") from None
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
            raise GitError(self.redact(f"git {' '.join(args[:2])} failed: {said}"))
        return done

    def text(self, *args: str, **kwargs: Any) -> str:
        """The stripped stdout of ``git args`` (keywords as for :meth:`run`)."""
        return self.run(*args, **kwargs).stdout.decode("utf-8", "replace").strip()

    # --- the repository ----------------------------------------------------------------------

    def toplevel(self) -> Path:
        """The working tree's top folder."""
        return Path(self.text("rev-parse", "--show-toplevel"))

    def rev_parse(self, rev: str) -> str:
        return self.text("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")

    def tree_of(self, rev: str) -> str:
        return self.text("rev-parse", "--verify", f"{rev}^{{tree}}")

    def check_branch_name(self, branch: str) -> None:
        if self.run("check-ref-format", "--branch", branch, check=False).returncode != 0:
            raise GitError(f"{branch!r} is not a valid branch name")

    def status(self, pathspec: str) -> bytes:
        """``git status --porcelain -z`` of ``pathspec``, untracked files listed one by one; ignored ones left out."""
        return self.run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", pathspec).stdout

    def tracks_any(self, pathspec: str) -> bool:
        """Whether the index holds any file under ``pathspec``."""
        return bool(self.run("ls-files", "-z", "--", pathspec).stdout)

    def lfs_version(self) -> str | None:
        """``git lfs version``'s line, or None when git-lfs is not installed."""
        done = self.run("lfs", "version", check=False)
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def check_attr(self, attribute: str, paths: Sequence[str], *, index: str | None = None) -> dict[str, str]:
        """``attribute``'s value per path: from the working tree's ``.gitattributes``, or, with ``index``, from
        that index file's (``--cached``)."""
        if not paths:
            return {}
        args = ["check-attr", "-z", "--stdin", *(["--cached"] if index else []), attribute]
        out = self.run(*args, input=_nul_join(paths), env=_index_env(index)).stdout.decode("utf-8", "surrogateescape")
        fields = out.split("\0")
        return {fields[i]: fields[i + 2] for i in range(0, len(fields) - 2, 3)}

    def remote_push_url(self, remote: str) -> str:
        done = self.run("remote", "get-url", "--push", remote, check=False)
        if done.returncode != 0:
            raise GitError(f"no git remote named {remote!r} (see `git remote -v`); pass --remote NAME")
        return done.stdout.decode().strip()

    # --- building a commit without touching the checkout -------------------------------------

    @contextlib.contextmanager
    def temporary_index(self, tree_ish: str) -> Iterator[str]:
        """An index file outside the repository holding ``tree_ish``, deleted afterwards."""
        with tempfile.TemporaryDirectory(prefix="aitune-index-") as folder:
            index = os.path.join(folder, "index")
            self.run("read-tree", tree_ish, env=_index_env(index))
            yield index

    def stage(self, index: str, paths: Sequence[str], *, lfs: bool) -> None:
        """Make ``paths`` in ``index`` what the working tree holds: added, updated, or removed when gone."""
        self.run(
            "update-index",
            "--add",
            "--remove",
            "-z",
            "--stdin",
            input=_nul_join(paths),
            env=_index_env(index),
            config=LFS_FILTER_CONFIG if lfs else (),
        )

    def write_tree(self, index: str) -> str:
        return self.text("write-tree", env=_index_env(index))

    def diff_name_status(self, index: str, rev: str) -> bytes:
        """``git diff-index --cached --name-status -z rev`` against ``index``: what a commit of it changes."""
        return self.run(
            "diff-index", "--cached", "--no-renames", "--name-status", "-z", rev, env=_index_env(index)
        ).stdout

    def blob_text(self, tree: str, path: str) -> str:
        return self.text("cat-file", "blob", f"{tree}:{path}")

    def commit_tree(self, tree: str, parent: str, message: str, *, name: str, email: str) -> str:
        identity = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        return self.text("commit-tree", tree, "-p", parent, input=message.encode(), env=identity)

    # --- the remote --------------------------------------------------------------------------

    def remote_branch(self, target: PushTarget, branch: str) -> str | None:
        """The commit ``branch`` points at on the remote, or None when it does not exist there."""
        out = self.text(
            "ls-remote", "--heads", target.remote, f"refs/heads/{branch}", env=target.env, config=target.config
        )
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def lfs_push(self, target: PushTarget, oids: Sequence[str]) -> None:
        """Upload exactly these LFS objects (not a scan of history, whose old objects a CI checkout lacks)."""
        if oids:
            self.run("lfs", "push", "--object-id", target.remote, *oids, env=target.env, config=target.config)

    def push(self, target: PushTarget, commit: str, branch: str, expected: str | None) -> None:
        """Point the remote's ``branch`` at ``commit``, only if it still is at ``expected`` (None: absent)."""
        self.run(
            "push",
            # The LFS objects are uploaded by lfs_push; a pre-push hook would rescan the history instead.
            "--no-verify",
            f"--force-with-lease=refs/heads/{branch}:{expected or ''}",
            target.remote,
            f"{commit}:refs/heads/{branch}",
            env=target.env,
            config=target.config,
        )


def _index_env(index: str | None) -> dict[str, str]:
    return {"GIT_INDEX_FILE": index} if index else {}


def _nul_join(paths: Iterable[str]) -> bytes:
    return b"".join(os.fsencode(p) + b"\0" for p in paths)
