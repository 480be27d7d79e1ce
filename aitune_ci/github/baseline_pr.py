"""The nightly baseline refresh PR: commit what changed under ``.aitune``, push a branch, open or update its PR.

The commit is built in a temporary index on top of ``HEAD`` (``read-tree`` / ``update-index`` /
``commit-tree``) rather than with ``git checkout -B`` and ``git add``: the user's branch, index and
working tree are never touched, only the chosen files go in (no stray build output from the job),
and a refusal leaves the repository exactly as it was.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Literal, Mapping, Sequence

from aitune_ci.errors import AituneCIError, GitHubError
from aitune_ci.github.client import GitHubClient, json_body
from aitune_ci.github.git import Git, GitError, push_target

__all__ = [
    "BOT_EMAIL",
    "BOT_NAME",
    "DEFAULT_BRANCH",
    "GITHUB_MAX_FILE_BYTES",
    "GITHUB_WARN_FILE_BYTES",
    "BaselinePRError",
    "BaselinePROptions",
    "BaselinePRResult",
    "Change",
    "FileFacts",
    "FilePlan",
    "create_pull",
    "default_body",
    "default_branch",
    "find_open_pull",
    "is_lock_file",
    "lfs_pointer_oid",
    "parse_name_status",
    "parse_status",
    "plan_files",
    "refresh_baseline_pr",
    "run_url_from_env",
    "select_paths",
    "update_pull",
]

log = logging.getLogger(__name__)

DEFAULT_BRANCH = "aitune/nightly-baselines"
BOT_NAME = "aitune-ci[bot]"
BOT_EMAIL = "aitune-ci[bot]@users.noreply.github.com"
COMMIT_SUBJECT = "aitune: nightly baseline refresh"
#: GitHub refuses a push holding a file over 100 MiB and warns above 50 MiB (Git LFS files excepted).
GITHUB_MAX_FILE_BYTES = 100 * 2**20
GITHUB_WARN_FILE_BYTES = 50 * 2**20
_MAX_LISTED_FILES = 200  # the PR body lists this many changed files, then a count
_LFS_OID = re.compile(r"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_LFS_POINTER_HEADER = "version https://git-lfs.github.com/spec/v1"

Action = Literal["opened", "updated", "unchanged", "dry-run"]
ChangeKind = Literal["added", "modified", "deleted"]


class BaselinePRError(AituneCIError):
    """The refresh was refused (a file too large for GitHub, LFS misconfigured); nothing was committed or pushed."""


# --- pure decisions ------------------------------------------------------------------------------


def is_lock_file(path: str) -> bool:
    """A lock file (``history/<key>.jsonl.lock``): runtime state, never committed."""
    return PurePosixPath(path).name.endswith(".lock")


def parse_status(raw: bytes | str) -> list[tuple[str, str]]:
    """``(XY, path)`` entries of ``git status --porcelain=v1 -z``; a rename's or copy's source comes as ``"D "``.

    With ``-z`` paths are neither quoted nor escaped, and relative to the repository's top folder.
    """
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    fields = text.split("\0")
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue  # the empty field after the last NUL
        xy, path = entry[:2], entry[3:]
        entries.append((xy, path))
        if "R" in xy or "C" in xy:  # -z: the source path is the next field
            if i < len(fields) and fields[i]:
                entries.append(("D ", fields[i]))
            i += 1
    return entries


def select_paths(entries: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The paths to bring into the commit: every changed, deleted or untracked one except lock files, sorted.

    Ignored files never reach here: ``git status`` leaves them out unless asked.
    """
    return tuple(sorted({path for _, path in entries if path and not is_lock_file(path)}))


def parse_name_status(raw: bytes | str) -> tuple[Change, ...]:
    """The changes of ``git diff-index --cached --name-status --no-renames -z``, sorted by path."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    fields = text.split("\0")
    kinds: dict[str, ChangeKind] = {"A": "added", "D": "deleted"}
    changes = [
        Change(fields[i + 1], kinds.get(fields[i][:1], "modified")) for i in range(0, len(fields) - 1, 2) if fields[i]
    ]
    return tuple(sorted(changes, key=lambda c: c.path))


@dataclass(frozen=True)
class Change:
    """One file the refresh commit changes."""

    path: str
    kind: ChangeKind


@dataclass(frozen=True)
class FileFacts:
    """What the size rule needs to know of one file that will be committed (deleted files need no check).

    Attributes:
        path: relative to the repository's top folder.
        size: bytes in the working tree.
        lfs: ``HEAD``'s ``.gitattributes`` route it to Git LFS (the commit is built on ``HEAD``).
        lfs_in_worktree: the working tree's ``.gitattributes`` do (git reads these while storing it).
    """

    path: str
    size: int
    lfs: bool
    lfs_in_worktree: bool


@dataclass(frozen=True)
class FilePlan:
    """The verdict of :func:`plan_files`: files stored through LFS, warnings, and refusals (any refuses all)."""

    lfs_paths: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()


def plan_files(
    facts: Iterable[FileFacts],
    *,
    lfs_available: bool,
    max_bytes: int = GITHUB_MAX_FILE_BYTES,
    warn_bytes: int = GITHUB_WARN_FILE_BYTES,
) -> FilePlan:
    """The size and LFS rule, decided before anything is written.

    - a file ``.gitattributes`` routes to LFS goes through LFS, whatever its size, when git-lfs is
      installed; without git-lfs it is refused (git would commit the whole file where a pointer belongs);
    - a file the committed and the working-tree ``.gitattributes`` disagree about is refused (commit
      ``.gitattributes`` first);
    - any other file over ``max_bytes`` (GitHub's 100 MiB) is refused with the command that fixes it;
      over ``warn_bytes`` it is a warning, and so (once, for all of them) is an ``.ait`` outside LFS:
      every refresh would add the whole artifact to the repository's history.
    """
    lfs_paths: list[str] = []
    warnings: list[str] = []
    refusals: list[str] = []
    plain_artifacts: list[str] = []
    for f in sorted(facts, key=lambda f: f.path):
        if f.lfs != f.lfs_in_worktree:
            said = "routes" if f.lfs_in_worktree else "no longer routes"
            refusals.append(
                f"{f.path}: the working tree's .gitattributes {said} it to Git LFS but the committed one "
                f"does not agree; commit .gitattributes first (the refresh commit is built on HEAD)"
            )
        elif f.lfs and not lfs_available:
            refusals.append(
                f"{f.path}: .gitattributes routes it to Git LFS but git-lfs is not installed here; install "
                f"git-lfs on the runner (the `git-lfs` package) and re-run"
            )
        elif f.lfs:
            lfs_paths.append(f.path)
        elif f.size > max_bytes:
            pattern = _lfs_pattern(f.path)
            refusals.append(
                f"{f.path} is {_size(f.size)}, over the {_size(max_bytes)} per-file limit of a push to GitHub, and not "
                f"tracked by Git LFS. Run `git lfs install && git lfs track '{pattern}'` (or `aitune-ci init`, which writes "
                f".gitattributes), commit .gitattributes, and re-run"
            )
        else:
            if f.size > warn_bytes:
                warnings.append(
                    f"{f.path} is {_size(f.size)}: GitHub warns above {_size(warn_bytes)} and refuses files over "
                    f"{_size(max_bytes)}; track it with Git LFS (`git lfs track '{_lfs_pattern(f.path)}'`)"
                )
            if f.path.endswith(".ait"):
                plain_artifacts.append(f.path)
    if plain_artifacts:
        warnings.append(
            f"{len(plain_artifacts)} .ait artifact(s) are not tracked by Git LFS (first: {plain_artifacts[0]}); every "
            "refresh adds them whole to the history. Run `aitune-ci init` or `git lfs track '*.ait'` and commit "
            ".gitattributes"
        )
    return FilePlan(tuple(lfs_paths), tuple(warnings), tuple(refusals))


def lfs_pointer_oid(text: str) -> str | None:
    """The sha256 object id of a Git LFS pointer file's text, or None when it is not a pointer."""
    if not text.startswith(_LFS_POINTER_HEADER):
        return None
    match = _LFS_OID.search(text)
    return match.group(1) if match else None


def default_body(changes: Sequence[Change], *, head: str, aitune_dir: str, run_url: str | None = None) -> str:
    """The PR description: where the refresh comes from, what it changes, and what to check before merging."""
    counts = {kind: sum(c.kind == kind for c in changes) for kind in ("added", "modified", "deleted")}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    source = f"[this nightly run]({run_url})" if run_url else "the nightly aitune-ci run"
    lines = [
        f"Baselines, artifacts and history under `{aitune_dir}` refreshed by {source}, on top of {head[:12]}.",
        "Review the run's report (latency and accuracy against the old baselines) before merging.",
        "",
        f"**{len(changes)} file(s)**: {summary}.",
        "",
    ]
    lines += [f"- {c.kind} `{c.path}`" for c in changes[:_MAX_LISTED_FILES]]
    if len(changes) > _MAX_LISTED_FILES:
        lines.append(f"- … and {len(changes) - _MAX_LISTED_FILES} more")
    lines += [
        "",
        "<sub>Opened by `aitune-ci baseline-pr`; the next night updates this PR while it is open. A PR opened "
        "with the workflow's `GITHUB_TOKEN` starts no workflow runs: give the step a GitHub App token or a "
        "fine-grained PAT when checks must run here.</sub>",
    ]
    return "\n".join(lines) + "\n"


def _lfs_pattern(path: str) -> str:
    suffix = PurePosixPath(path).suffix
    return f"*{suffix}" if suffix else path


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} B"


# --- the pull-request REST calls -----------------------------------------------------------------


def default_branch(client: GitHubClient) -> str:
    """The repository's default branch (``GET /repos/{owner}/{repo}``)."""
    data = json_body(client.request("GET", client.repo_path()))
    branch = data.get("default_branch") if isinstance(data, dict) else None
    if not isinstance(branch, str) or not branch:
        raise GitHubError(f"GET {client.repo_path()}: the answer has no default_branch; pass --base BRANCH")
    return branch


def find_open_pull(client: GitHubClient, branch: str, base: str) -> dict[str, Any] | None:
    """The open PR from ``branch`` (in the repository itself) into ``base``, or None.

    Only an open one counts: a merged or closed PR for the same branch never stops a new one.
    The answer is checked as well as filtered, in case a server ignores a filter.
    """
    owner = client.repository.split("/")[0]
    query = {"state": "open", "head": f"{owner}:{branch}", "base": base}
    for pr in client.paginate(client.repo_path("pulls"), query):
        if _is_open_pull(pr, branch, base):
            return pr
    return None


def create_pull(client: GitHubClient, branch: str, base: str, title: str, body: str) -> dict[str, Any]:
    """Open a PR from ``branch`` into ``base`` (``POST /repos/{owner}/{repo}/pulls``)."""
    payload = {"title": title, "head": branch, "base": base, "body": body, "maintainer_can_modify": True}
    return _pull(json_body(client.request("POST", client.repo_path("pulls"), json=payload)))


def update_pull(client: GitHubClient, number: int, title: str, body: str) -> dict[str, Any]:
    """Replace an existing PR's title and body (``PATCH /repos/{owner}/{repo}/pulls/{number}``)."""
    payload = {"title": title, "body": body}
    return _pull(json_body(client.request("PATCH", client.repo_path("pulls", number), json=payload)))


def _is_open_pull(pr: Any, branch: str, base: str) -> bool:
    return (
        isinstance(pr, dict)
        and pr.get("state") == "open"
        and not pr.get("merged_at")
        and (pr.get("head") or {}).get("ref") == branch
        and (pr.get("base") or {}).get("ref") == base
    )


def _pull(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        raise GitHubError(f"GitHub's answer is not a pull request: {str(data)[:200]!r}")
    return data


# --- the whole refresh ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselinePROptions:
    """What ``aitune-ci baseline-pr`` was asked (see its ``--help``)."""

    aitune_dir: str = ".aitune"
    branch: str = DEFAULT_BRANCH
    base: str | None = None
    title: str | None = None
    body: str | None = None
    remote: str = "origin"
    dry_run: bool = False
    max_file_bytes: int = GITHUB_MAX_FILE_BYTES
    warn_file_bytes: int = GITHUB_WARN_FILE_BYTES


@dataclass(frozen=True)
class BaselinePRResult:
    """What the refresh did: ``action`` is opened, updated, unchanged or dry-run."""

    action: Action
    changes: tuple[Change, ...] = ()
    number: int | None = None
    url: str | None = None
    commit: str | None = None

    def outputs(self) -> dict[str, str]:
        """The step outputs ``pr-number``, ``pr-url`` and ``action`` (empty strings when there is no PR)."""
        return {
            "pr-number": "" if self.number is None else str(self.number),
            "pr-url": self.url or "",
            "action": self.action,
        }


def refresh_baseline_pr(
    options: BaselinePROptions,
    client: GitHubClient | None,
    *,
    token: str | None = None,
    cwd: str | os.PathLike[str] = ".",
    server_url: str | None = None,
    run_url: str | None = None,
    today: datetime.date | None = None,
) -> BaselinePRResult:
    """Commit the changed baselines on a branch from ``HEAD``, push it, and open or update its PR.

    Nothing is written anywhere (commit, push, API) until every file has passed :func:`plan_files`;
    with ``options.dry_run`` nothing leaves the machine at all.

    Args:
        options: what to commit and where.
        client: the REST client; may be None only for a dry run.
        token: pushed with to an HTTP(S) remote on ``server_url``'s host; also redacted from every message.
        cwd: a folder inside the repository; a relative ``aitune_dir`` is relative to it.
        server_url: ``$GITHUB_SERVER_URL`` (default ``https://github.com``).
        run_url: the workflow run, linked from the PR body.
        today: the date in the commit message and default title (default: today, UTC).

    Raises:
        BaselinePRError: a file cannot be committed as it is (the message says how to fix it).
        GitError: a git command failed (the push's message says which permission it needs).
        GitHubError: the API refused a request.
    """
    git = Git(cwd, secrets=[token] if token else [])
    top = git.toplevel()
    git = Git(top, secrets=git.secrets)
    pathspec = _pathspec(top, Path(cwd), options.aitune_dir)
    if not (top / pathspec).is_dir() and not git.tracks_any(pathspec):
        raise BaselinePRError(
            f"--aitune-dir {options.aitune_dir}: {top / pathspec} does not exist and git tracks nothing there, so "
            "there is nothing to commit. Point it at the folder the nightly's `pytest --aitune --aitune-update` "
            "writes (its --aitune-dir, or the aitune_dir ini option; default .aitune)"
        )
    git.check_branch_name(options.branch)
    try:
        head = git.rev_parse("HEAD")
    except GitError:
        raise GitError(
            f"{top} has no commit yet: the refresh branch starts from HEAD, so commit something first"
        ) from None

    candidates = select_paths(parse_status(git.status(pathspec)))
    if not candidates:
        return BaselinePRResult("unchanged")
    with git.temporary_index(head) as index:
        plan = _plan(git, top, index, candidates, options)
        git.stage(index, candidates, lfs=bool(plan.lfs_paths))
        tree = git.write_tree(index)
        changes = parse_name_status(git.diff_name_status(index, head))
    if not changes:
        return BaselinePRResult("unchanged")
    through_lfs = set(plan.lfs_paths)
    lfs_oids = _lfs_oids(git, tree, [c.path for c in changes if c.kind != "deleted" and c.path in through_lfs])
    log.info("%d file(s) to commit under %s (%d through Git LFS)", len(changes), pathspec, len(lfs_oids))
    if options.dry_run:
        return BaselinePRResult("dry-run", changes)
    if client is None:
        raise ValueError("a GitHubClient is required unless dry_run is set")

    # Every read that can fail on configuration (token, repository, remote) happens before any write.
    base = options.base or default_branch(client)
    existing = find_open_pull(client, options.branch, base)
    target = push_target(options.remote, git.remote_push_url(options.remote), token=token, server_url=server_url)
    date = (today or datetime.datetime.now(datetime.timezone.utc).date()).isoformat()
    title = options.title or f"{COMMIT_SUBJECT} ({date})"
    body = (
        options.body
        if options.body is not None
        else default_body(changes, head=head, aitune_dir=pathspec, run_url=run_url)
    )

    commit = git.commit_tree(tree, head, f"{COMMIT_SUBJECT} ({date})\n", name=BOT_NAME, email=BOT_EMAIL)
    try:
        git.lfs_push(target, lfs_oids)
        git.push(target, commit, options.branch, git.remote_branch(target, options.branch))
    except GitError as exc:
        raise GitError(f"{exc}\n{_PUSH_HINT.format(remote=target.display)}") from None
    log.info("pushed %s to %s of %s", commit[:12], options.branch, target.display)

    try:
        pr = update_pull(client, existing["number"], title, body) if existing else None
        if pr is None or pr.get("state") != "open":  # merged in the meantime: a new PR, never a closed one
            pr, action = create_pull(client, options.branch, base, title, body), "opened"
        else:
            action = "updated"
    except GitHubError as exc:
        if exc.status != 403:
            raise
        raise GitHubError(f"{exc}\n{_PULL_403_HINT}", exc.status) from None
    return BaselinePRResult(action, changes, pr["number"], pr.get("html_url"), commit)


_PUSH_HINT = (
    "The push to {remote} failed. With the workflow's GITHUB_TOKEN the job needs `permissions: contents: write`; "
    "with a GitHub App token or PAT, write access to the repository's contents."
)
_PULL_403_HINT = (
    "GitHub refused to open or edit the PR. With the workflow's GITHUB_TOKEN the job needs `permissions: "
    "pull-requests: write`, and the repository (or organisation) setting Actions > General > 'Allow GitHub "
    "Actions to create and approve pull requests' must be on; or pass a GitHub App token or fine-grained PAT."
)


def _pathspec(top: Path, cwd: Path, aitune_dir: str) -> str:
    """``aitune_dir`` relative to the repository's top folder (POSIX separators), or an error outside it."""
    folder = Path(os.path.realpath(cwd / aitune_dir))
    try:
        return folder.relative_to(Path(os.path.realpath(top))).as_posix()
    except ValueError:
        raise BaselinePRError(f"--aitune-dir {aitune_dir} is outside the repository {top}") from None


def _plan(git: Git, top: Path, index: str, candidates: Sequence[str], options: BaselinePROptions) -> FilePlan:
    present = [p for p in candidates if os.path.lexists(top / p)]
    committed = git.check_attr("filter", present, index=index)
    worktree = git.check_attr("filter", present)
    facts = [
        FileFacts(p, os.lstat(top / p).st_size, committed.get(p) == "lfs", worktree.get(p) == "lfs") for p in present
    ]
    needs_lfs = any(f.lfs or f.lfs_in_worktree for f in facts)
    plan = plan_files(
        facts,
        lfs_available=needs_lfs and git.lfs_version() is not None,
        max_bytes=options.max_file_bytes,
        warn_bytes=options.warn_file_bytes,
    )
    for warning in plan.warnings:
        log.warning("aitune-ci baseline-pr: %s", warning)
    if plan.refusals:
        raise BaselinePRError(
            "refusing to commit the baselines; nothing was committed or pushed and your files are untouched:\n- "
            + "\n- ".join(plan.refusals)
        )
    return plan


def _lfs_oids(git: Git, tree: str, paths: Iterable[str]) -> list[str]:
    """The LFS object of each path in ``tree``; a path stored whole instead of as a pointer is an error."""
    oids = []
    for path in paths:
        oid = lfs_pointer_oid(git.blob_text(tree, path))
        if oid is None:
            raise BaselinePRError(f"{path}: git-lfs did not store it as a pointer; check `git lfs env` on the runner")
        oids.append(oid)
    return oids


def run_url_from_env(env: Mapping[str, str]) -> str | None:
    """This workflow run's page, from the runner's ``GITHUB_SERVER_URL``, ``GITHUB_REPOSITORY`` and ``GITHUB_RUN_ID``."""
    server, repo, run = (env.get(k, "").strip() for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo and run else None
