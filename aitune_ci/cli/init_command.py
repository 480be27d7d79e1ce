"""The ``aitune-ci init`` command: writes into a repository everything it needs to adopt aitune-ci.

The workflows (PR check, fork-PR comment, nightly baseline refresh; the PR check optionally as a
sharded matrix with its merge job), ``.gitattributes`` with Git LFS for ``*.ait``, ``.gitignore``
entries, and a starter ``conftest.py``. Files are rendered from ``aitune_ci/templates/``; an
existing file is never overwritten without ``--force``, and the two line files are merged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from aitune_ci.atomic import atomic_write_text
from aitune_ci.version import __version__

__all__ = [
    "DEFAULT_ACTION_REF",
    "PINS",
    "InitOptions",
    "add_subcommands",
    "cmd_init",
    "merge_lines",
    "render_files",
]

#: The action a user's workflows run, unless ``--action-ref`` says otherwise: this release's tag.
#: Pin it to a commit SHA of that tag (``--action-ref aitune-ci/aitune-ci@<sha>``), as init says.
DEFAULT_ACTION_REF = f"aitune-ci/aitune-ci@v{__version__}"

#: Third-party actions the templates use, pinned to the commit of a release (its tag in the comment).
#: action.yml pins the same commits; tests/test_workflows.py checks that every ``uses:`` is pinned.
PINS = {"checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"}

#: Lines ``init`` merges into ``.gitattributes``: the .ait artifacts go through Git LFS (one can be ~200 MB).
GITATTRIBUTES = ("*.ait filter=lfs diff=lfs merge=lfs -text",)

_HEADER = "# aitune-ci (written by aitune-ci init)"
_ACTION_REF = re.compile(r"\./[\w./-]*|\.|[\w.-]+/[\w.-]+(/[\w./-]+)?@[\w./-]+")
_LABEL = re.compile(r"[\w.:/-]+")


@dataclass(frozen=True)
class InitOptions:
    """What ``aitune-ci init`` writes, parameterised (the defaults are the command's)."""

    path: str = "tests/aitune"
    runner_labels: tuple[str, ...] = ("self-hosted", "linux", "gpu")
    light_runner: str = "ubuntu-latest"
    action_ref: str = DEFAULT_ACTION_REF
    shards: int = 1
    aitune_dir: str = ".aitune"
    constraints: str = ""
    extras: str = "all"
    pip_args: str = ""
    conftest: bool = True
    report_dir: str = "aitune-report"

    def __post_init__(self) -> None:
        if not _ACTION_REF.fullmatch(self.action_ref):
            raise ValueError(
                f"--action-ref {self.action_ref!r}: expected OWNER/REPO@REF (a commit SHA is safest) or ./PATH "
                "for an action inside this repository"
            )
        if not self.runner_labels or not all(_LABEL.fullmatch(label) for label in self.runner_labels):
            raise ValueError(
                f"--runner-labels {','.join(self.runner_labels)!r}: expected comma-separated labels such as "
                "self-hosted,linux,gpu"
            )
        if self.shards < 1:
            raise ValueError(f"--shards must be 1 or more, got {self.shards}")
        for name in ("path", "aitune_dir"):
            value = PurePosixPath(getattr(self, name))
            if value.is_absolute() or ".." in value.parts or (name == "aitune_dir" and str(value) == "."):
                raise ValueError(f"--{name.replace('_', '-')} {value}: give a folder inside the repository")

    @property
    def local_action(self) -> bool:
        return self.action_ref.startswith(".")

    def command(self) -> str:
        """The ``aitune-ci init`` command line that writes these files (non-default options only)."""
        default = InitOptions()
        flags = []
        for flag, attr in (
            ("--path", "path"),
            ("--action-ref", "action_ref"),
            ("--light-runner", "light_runner"),
            ("--shards", "shards"),
            ("--aitune-dir", "aitune_dir"),
            ("--constraints", "constraints"),
            ("--extras", "extras"),
            ("--pip-args", "pip_args"),
        ):
            if getattr(self, attr) != getattr(default, attr):
                flags += [flag, str(getattr(self, attr))]
        if self.runner_labels != default.runner_labels:
            flags += ["--runner-labels", ",".join(self.runner_labels)]
        return shlex.join(["aitune-ci", "init", *flags])


def _environment() -> jinja2.Environment:
    # ``{{ }}`` belongs to GitHub's expressions in the workflows: the templates use ``{@ @}``.
    return jinja2.Environment(
        variable_start_string="{@",
        variable_end_string="@}",
        comment_start_string="{##",
        comment_end_string="##}",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def _template(name: str) -> str:
    return resources.files("aitune_ci").joinpath("templates", name).read_text(encoding="utf-8")


def render_files(options: InitOptions) -> dict[str, str]:
    """``{path relative to the repository root: text}`` of every file ``init`` writes whole."""
    env = _environment()
    context: dict[str, Any] = {
        "action_ref": options.action_ref,
        "local_action": options.local_action,
        "runs_on": json.dumps(list(options.runner_labels)),
        "light_runner": json.dumps(options.light_runner),
        "shards": options.shards,
        "shard_list": json.dumps(list(range(1, options.shards + 1))),
        "pytest_args": json.dumps(shlex.quote(options.path)),
        "test_path": options.path,
        "aitune_dir": json.dumps(options.aitune_dir),
        "aitune_dir_text": options.aitune_dir,
        "constraints": json.dumps(options.constraints) if options.constraints else "",
        "extras": json.dumps(options.extras) if options.extras != "all" else "all",
        "pip_args": json.dumps(options.pip_args),
        "pins": PINS,
    }
    files = {}
    for name in ("aitune-pr.yml", "aitune-comment.yml", "aitune-nightly.yml"):
        text = env.from_string(_template(f"{name}.j2")).render(context)
        files[f".github/workflows/{name}"] = f"# Written by `{options.command()}` (add --force to rewrite it).\n{text}"
    if options.conftest:
        path = PurePosixPath(options.path) / "conftest.py"
        files[str(path)] = env.from_string(_template("conftest.py.j2")).render(context)
    return files


def _gitignore_lines(options: InitOptions) -> tuple[str, ...]:
    directory = str(PurePosixPath(options.aitune_dir))
    return (f"/{directory}/**/*.lock", "*.jsonl.lock", f"/{options.report_dir}/")


def merge_lines(existing: str | None, lines: tuple[str, ...]) -> str | None:
    """``existing`` with every line of ``lines`` it lacks appended under a header; None when nothing is missing."""
    have = {line.strip() for line in (existing or "").splitlines()}
    missing = [line for line in lines if line not in have]
    if not missing:
        return None
    text = existing or ""
    if text and not text.endswith("\n"):
        text += "\n"
    if text:
        text += "\n"
    if _HEADER not in have:
        text += _HEADER + "\n"
    return text + "\n".join(missing) + "\n"


def add_subcommands(sub: Any) -> None:
    """Add ``init`` to an ``add_subparsers()`` object."""
    d = InitOptions()
    p = sub.add_parser(
        "init",
        help="write the workflows, .gitattributes, .gitignore and a starter conftest into this repository",
        description=(
            "Writes .github/workflows/aitune-pr.yml (the PR check, in relative mode), aitune-comment.yml "
            "(fork PRs' comment), aitune-nightly.yml (baseline refresh that opens a PR), TESTS_DIR/conftest.py "
            "(a starter tune fixture), and merges LFS for *.ait into .gitattributes and lock files and the "
            "report folder into .gitignore. An existing file is never overwritten without --force; running it "
            "again changes nothing."
        ),
    )
    p.add_argument(
        "--path", default=d.path, metavar="TESTS_DIR", help=f"folder of the tune fixtures. Default: {d.path}"
    )
    p.add_argument(
        "--runner-labels",
        default=",".join(d.runner_labels),
        metavar="LABELS",
        help=f"labels of the self-hosted GPU runner, comma-separated. Default: {','.join(d.runner_labels)}",
    )
    p.add_argument(
        "--light-runner",
        default=d.light_runner,
        metavar="LABEL",
        help=f"runner of the jobs that need no GPU (merge, comment, publish). Default: {d.light_runner}",
    )
    p.add_argument(
        "--action-ref",
        default=d.action_ref,
        metavar="REF",
        help=f"the action the workflows use: OWNER/REPO@SHA, or ./ for a copy in this repository. Default: {d.action_ref}",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=d.shards,
        metavar="N",
        help="split the PR check into a matrix of N GPU jobs plus one merge job. Default: 1 (no matrix)",
    )
    p.add_argument(
        "--aitune-dir", default=d.aitune_dir, metavar="DIR", help=f"where baselines live. Default: {d.aitune_dir}"
    )
    p.add_argument(
        "--constraints",
        default=d.constraints,
        metavar="FILE",
        help="a pip constraints file to install with. Default: none",
    )
    p.add_argument(
        "--extras", default=d.extras, metavar="EXTRAS", help=f"aitune-ci extras to install. Default: {d.extras}"
    )
    p.add_argument(
        "--pip-args",
        default=d.pip_args,
        metavar="ARGS",
        help="your project's own dependencies for the GPU jobs, e.g. '-e .'. Default: none",
    )
    p.add_argument("--no-conftest", action="store_true", help="do not write the starter conftest. Default: write it")
    p.add_argument("--root", default=".", metavar="DIR", help="the repository to write into. Default: this directory")
    p.add_argument(
        "--force", action="store_true", help="overwrite files that exist and differ. Default: refuse and write nothing"
    )
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    """Write the files; refuse (exit 1, nothing written) when one exists and differs, unless ``--force``."""
    try:
        options = InitOptions(
            path=args.path,
            runner_labels=tuple(label.strip() for label in args.runner_labels.split(",") if label.strip()),
            light_runner=args.light_runner,
            action_ref=args.action_ref,
            shards=args.shards,
            aitune_dir=args.aitune_dir,
            constraints=args.constraints,
            extras=args.extras,
            pip_args=args.pip_args,
            conftest=not args.no_conftest,
        )
    except ValueError as exc:
        print(f"aitune-ci init: {exc}")
        return 2
    root = Path(args.root)
    kept_out = _existing_tune_fixtures(root, options, include_starter_path=args.force) if options.conftest else []
    if kept_out:
        options = dataclasses.replace(options, conftest=False)
    files = render_files(options)
    conflicts = [
        name
        for name, text in files.items()
        if (root / name).exists() and (root / name).read_text(encoding="utf-8") != text
    ]
    if conflicts and not args.force:
        print("aitune-ci init: these files exist and differ from what init writes; nothing was written:")
        for name in conflicts:
            print(f"  {name}")
        print("Move them away, or re-run with --force to overwrite them (their changes are lost).")
        return 1
    written, unchanged = [], []
    for name, text in files.items():
        target = root / name
        if target.exists() and target.read_text(encoding="utf-8") == text:
            unchanged.append(name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        written.append(name + (" (overwritten)" if name in conflicts else ""))
    for name, lines in ((".gitattributes", GITATTRIBUTES), (".gitignore", _gitignore_lines(options))):
        target = root / name
        merged = merge_lines(target.read_text(encoding="utf-8") if target.exists() else None, lines)
        if merged is None:
            unchanged.append(name)
        else:
            atomic_write_text(target, merged)
            written.append(f"{name} (lines added)")
    lint_hint = _write_actionlint_config(root, options, written, unchanged)
    for name in written:
        print(f"wrote {name}")
    for name in unchanged:
        print(f"unchanged {name}")
    if kept_out:
        print(
            f"kept out the starter {options.path}/conftest.py: this repository declares tune_* fixtures already "
            f"({', '.join(str(p) for p in kept_out[:3])}{' …' if len(kept_out) > 3 else ''})"
        )
        if not any(PurePosixPath(p.as_posix()).is_relative_to(options.path) for p in kept_out):
            print(
                f"the workflows run the tests in {options.path}, which holds none of them: re-run with "
                f"`--path {kept_out[0].parent.as_posix()} --no-conftest --force` to point them at yours"
            )
    if lint_hint:
        print(lint_hint)
    committed = sorted((root / options.aitune_dir).rglob("*.ait")) if (root / options.aitune_dir).is_dir() else []
    print(_next_steps(options, existing_artifacts=len(committed)))
    return 0


#: Runner labels actionlint knows without being told (GitHub's own and a self-hosted runner's defaults).
_KNOWN_LABELS = {"self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"}
_ACTIONLINT = ".github/actionlint.yaml"


def _write_actionlint_config(root: Path, options: InitOptions, written: list[str], unchanged: list[str]) -> str:
    """Declare the self-hosted runner's own labels to actionlint, which fails the workflows otherwise
    (``label "gpu" is unknown``); an existing config is left alone, and a hint names what it lacks."""
    labels = [label for label in options.runner_labels if label.lower() not in _KNOWN_LABELS]
    if not labels:
        return ""
    target = root / _ACTIONLINT
    if target.exists():
        text = target.read_text(encoding="utf-8", errors="replace")
        missing = [
            label for label in labels if not re.search(rf"^\s*-\s*['\"]?{re.escape(label)}['\"]?\s*$", text, re.M)
        ]
        if not missing:
            unchanged.append(_ACTIONLINT)
            return ""
        return (
            f"{_ACTIONLINT} exists: add the runner label(s) {', '.join(missing)} under self-hosted-runner: labels:, "
            "or actionlint reports them as unknown"
        )
    body = "".join(f"    - {label}\n" for label in labels)
    atomic_write_text(
        target,
        "# actionlint (https://github.com/rhysd/actionlint) reads your self-hosted runners' own labels here.\n"
        f"self-hosted-runner:\n  labels:\n{body}",
    )
    written.append(_ACTIONLINT)
    return ""


def _existing_tune_fixtures(root: Path, options: InitOptions, *, include_starter_path: bool = False) -> list[Path]:
    """Files of this repository, other than the starter's own, that declare a ``tune_*`` fixture: the
    starter's toy model would be collected beside the user's own and tuned by every PR check.

    With ``include_starter_path`` (``--force``) a file at the starter's path counts too, unless it is
    the starter itself: ``--force`` replaced a user's own conftest of fixtures with the toy one.
    """
    starter = (root / options.path / "conftest.py").resolve()
    if (
        include_starter_path
        and starter.is_file()
        and starter.read_text(encoding="utf-8", errors="replace")
        == (
            render_files(dataclasses.replace(options, conftest=True)).get(
                str(PurePosixPath(options.path) / "conftest.py")
            )
        )
    ):
        include_starter_path = False  # init's own starter, unchanged: --force may rewrite it
    pattern = re.compile(rb"^\s*def tune_\w+\s*\(", re.M)
    found: list[Path] = []
    skip = {".git", ".venv", "venv", "node_modules", "site-packages", "__pycache__", ".tox", ".aitune"}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in skip or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.resolve() == starter and not include_starter_path:
            continue
        try:
            if pattern.search(path.read_bytes()):
                found.append(relative)
        except OSError:
            continue
    return found


def _next_steps(options: InitOptions, existing_artifacts: int = 0) -> str:
    labels = ",".join(options.runner_labels)
    steps = [
        "Next steps:",
        "  1. Git LFS keeps the .ait artifacts (one can pass GitHub's 100 MB limit): run `git lfs install` once",
        "     per clone; GitHub-side, LFS storage counts against your quota.",
    ]
    if existing_artifacts:
        steps += [
            f"     {existing_artifacts} .ait file(s) under {options.aitune_dir} were committed without LFS: git now",
            "     shows them modified. `git add --renormalize .` and a commit move them into LFS from now on",
            "     (`git lfs migrate import --include='*.ait' --everything` would also rewrite the history).",
        ]
    steps += [
        f"  2. Register a self-hosted runner with the labels {labels} on a GPU machine with Python 3.10+",
        "     (and python3-venv), and git-lfs (the checkout fetches the .ait artifacts through it).",
        f"  3. Write the first baselines on that machine and commit them: pytest --aitune --aitune-update {options.path}",
        f"     then `git add .gitattributes {options.aitune_dir}` (the nightly keeps them fresh afterwards).",
        "  4. Secrets: the nightly opens its PR with GITHUB_TOKEN, and such a PR triggers no checks. Store a",
        "     GitHub App installation token or a fine-grained PAT (contents: write, pull-requests: write) as",
        "     the secret AITUNE_PR_TOKEN to have them run. With GITHUB_TOKEN alone, allow it to open PRs:",
        '     Settings > Actions > General > Workflow permissions > "Allow GitHub Actions to create and',
        '     approve pull requests".',
        "  5. Create the label aitune:run-fork: applying it to a fork's PR runs that PR's code on your GPU",
        "     runner once (read the change first). Forks never run there otherwise.",
    ]
    if not options.local_action and not re.search(r"@[0-9a-f]{40}$", options.action_ref):
        steps += [
            f"  6. The workflows use {options.action_ref}, a tag: pin it to the tag's commit SHA, e.g.",
            "     aitune-ci init --force --action-ref OWNER/REPO@<sha>  (a tag can be moved; a SHA cannot).",
        ]
    return "\n".join(steps)
