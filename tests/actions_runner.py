"""A small GitHub Actions runner for tests: runs a workflow's jobs, and this repo's composite action, with bash.

What runs for real: every ``run:`` step (the workflow's and the composite action's), with bash as the
runner calls it, the ``GITHUB_*`` / ``RUNNER_*`` environment, per-step ``GITHUB_OUTPUT``,
``GITHUB_STEP_SUMMARY``, ``GITHUB_ENV`` and ``GITHUB_PATH`` files, and ``GITHUB_EVENT_PATH`` holding
the event payload; the ``${{ }}`` expressions and ``if:`` conditions, with GitHub's implicit
``success()``; jobs in ``needs`` order, matrices, job outputs, ``continue-on-error``.

What is emulated, because it cannot run here (no network, no GitHub): ``actions/checkout`` is a
``git fetch`` of the bare remote plus ``git lfs pull``; ``upload-artifact`` / ``download-artifact``
copy folders into and out of a per-run artifact store (with upload-artifact's name rule, its
hidden-file rule and its one-artifact-per-name rule); ``actions/cache`` always misses. Any other
``uses:`` fails loudly. The expression evaluator knows only what the templates use and raises
:class:`ExpressionError` on anything else.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from test_workflows import ARTIFACT_NAME_FORBIDDEN
from test_workflows import _outputs as parse_file_command

__all__ = [
    "ActionsRunner",
    "ExpressionError",
    "JobRun",
    "WorkflowRun",
    "condition",
    "evaluate",
    "interpolate",
]


# --- expressions -----------------------------------------------------------------------------------


class ExpressionError(AssertionError):
    """An expression this evaluator does not understand: extend it deliberately, never guess."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))"
)
_STATUS_FUNCTIONS = {"always", "success", "failure", "cancelled"}
_FUNCTIONS = _STATUS_FUNCTIONS | {"contains", "fromJSON"}
_CONTEXTS = {"github", "inputs", "steps", "needs", "matrix", "secrets", "runner", "env", "job"}
_LITERALS = {"true": True, "false": False, "null": None}


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, expression.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in expression {expression!r}")
        pos = m.end()
        kind = next(k for k in ("str", "num", "op", "name") if m.group(k) is not None)
        out.append((kind, m.group(kind)))
    return out


class _Parser:
    """Recursive descent: or < and < ==/!= < ! < primary. The tree is evaluated lazily (short circuit)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.pos = 0

    def parse(self) -> tuple:
        tree = self._binary(0)
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.expression!r}")
        return tree

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"{self.expression!r} ends too soon")
        token = self.tokens[self.pos]
        if expected is not None and token != ("op", expected):
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r} in {self.expression!r}")
        self.pos += 1
        return token

    _LEVELS = (("||",), ("&&",), ("==", "!="))

    def _binary(self, level: int) -> tuple:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while self.pos < len(self.tokens) and self.tokens[self.pos] in {("op", o) for o in self._LEVELS[level]}:
            op = self._take()[1]
            left = (op, left, self._binary(level + 1))
        return left

    def _unary(self) -> tuple:
        if self._peek() == "!":
            self._take()
            return ("!", self._unary())
        return self._primary()

    def _primary(self) -> tuple:
        kind, value = self._take()
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "op":
            if value != "(":
                raise ExpressionError(f"unexpected {value!r} in {self.expression!r}")
            inner = self._binary(0)
            self._take(")")
            return inner
        if value in _LITERALS:
            return ("lit", _LITERALS[value])
        if self._peek() == "(":
            if value not in _FUNCTIONS:
                raise ExpressionError(f"function {value}() is not known to this evaluator ({self.expression!r})")
            self._take("(")
            args = []
            while self._peek() != ")":
                args.append(self._binary(0))
                if self._peek() == ",":
                    self._take(",")
            self._take(")")
            return ("call", value, args)
        root = value.split(".")[0]
        if root not in _CONTEXTS:
            raise ExpressionError(f"unknown context {root!r} in {self.expression!r}")
        return ("get", value.split("."))


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "object"


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, (bool, int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip() or 0)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    """GitHub's ``==``: strings case-insensitively; different types compared as numbers; objects by identity."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb:
        if ka == "string":
            return a.casefold() == b.casefold()
        return a is b if ka == "object" else a == b
    if "object" in (ka, kb):
        return False
    return _number(a) == _number(b)


def _truthy(v: Any) -> bool:
    """Falsy: null, false, 0, NaN and ''; everything else (objects and arrays included) is truthy."""
    if isinstance(v, (dict, list)):
        return True
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, "")


def to_text(v: Any) -> str:
    """A value as ``${{ }}`` writes it into text."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _eval(node: tuple, contexts: Mapping[str, Any], status: str) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "get":
        path = node[1]
        if path[0] not in contexts:
            raise ExpressionError(f"context {path[0]!r} is not available here")
        value: Any = contexts[path[0]]
        for key in path[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        return value
    if op == "!":
        return not _truthy(_eval(node[1], contexts, status))
    if op == "&&":
        left = _eval(node[1], contexts, status)
        return _eval(node[2], contexts, status) if _truthy(left) else left
    if op == "||":
        left = _eval(node[1], contexts, status)
        return left if _truthy(left) else _eval(node[2], contexts, status)
    if op in ("==", "!="):
        same = _equal(_eval(node[1], contexts, status), _eval(node[2], contexts, status))
        return same if op == "==" else not same
    if op == "call":
        name, args = node[1], [_eval(a, contexts, status) for a in node[2]]
        if name in _STATUS_FUNCTIONS:
            if args:
                raise ExpressionError(f"{name}() takes no argument")
            return {
                "always": True,
                "success": status == "success",
                "failure": status == "failure",
                "cancelled": status == "cancelled",
            }[name]
        if name == "fromJSON":
            (text,) = args
            return json.loads(text)
        if name == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_text(needle).casefold() in to_text(haystack).casefold()
    raise ExpressionError(f"cannot evaluate {node!r}")


def evaluate(expression: str, contexts: Mapping[str, Any], status: str = "success") -> Any:
    """The value of one expression (without ``${{ }}``); ``status`` is what success()/failure() see."""
    return _eval(_Parser(expression).parse(), contexts, status)


_INTERPOLATION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(value: Any, contexts: Mapping[str, Any]) -> str:
    """``value`` as text with every ``${{ expr }}`` replaced by its value."""
    text = to_text(value)
    return _INTERPOLATION.sub(lambda m: to_text(evaluate(m.group(1), contexts)), text)


def condition(expression: Any, contexts: Mapping[str, Any], status: str = "success") -> bool:
    """An ``if:``: absent means success(); without a status function GitHub prepends ``success() &&``."""
    if expression is None:
        return status == "success"
    if isinstance(expression, bool):
        return expression and status == "success"
    text = str(expression).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    tokens = _tokens(text)
    uses_status = any(
        kind == "name" and value in _STATUS_FUNCTIONS and i + 1 < len(tokens) and tokens[i + 1] == ("op", "(")
        for i, (kind, value) in enumerate(tokens)
    )
    if not uses_status:
        text = f"success() && ({text})"
    return _truthy(evaluate(text, contexts, status))


# --- runs ------------------------------------------------------------------------------------------


class StepFailed(Exception):
    """An emulated action failed, as the real one would (the message is its log line)."""


@dataclass
class JobRun:
    """One job (one matrix combination) of a workflow run."""

    job_id: str
    matrix: dict[str, Any]
    labels: list[str]
    result: str = "skipped"  # success, failure or skipped
    steps: list[tuple[str, str]] = field(default_factory=list)  # (name, outcome); composite steps as "uses/id"
    step_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    summaries: list[str] = field(default_factory=list)
    log: str = ""
    env: dict[str, str] = field(default_factory=dict)  # GITHUB_ENV additions
    path_prefix: list[str] = field(default_factory=list)  # GITHUB_PATH additions
    workspace: Path | None = None  # GITHUB_WORKSPACE, left as the job left it

    def ran(self) -> list[str]:
        return [name for name, outcome in self.steps if outcome != "skipped"]


@dataclass
class WorkflowRun:
    """What a workflow run did: its jobs (a list per job id: one per matrix combination) and artifacts."""

    id: int
    name: str
    triggered: bool
    jobs: dict[str, list[JobRun]] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)

    def result(self, job_id: str) -> str:
        runs = self.jobs.get(job_id, [])
        if not runs or all(r.result == "skipped" for r in runs):
            return "skipped"
        return "failure" if any(r.result == "failure" for r in runs) else "success"

    def job(self, job_id: str) -> JobRun:
        (run,) = self.jobs[job_id]
        return run

    def log(self) -> str:
        return "\n".join(f"===== {j.job_id} {j.matrix} ({j.result})\n{j.log}" for js in self.jobs.values() for j in js)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ActionsRunner:
    """Runs workflows against a bare git remote and a :class:`github_server.FakeGitHub`.

    Args:
        root: a folder for the runs (workspaces, runner temp folders, the artifact store, HOME).
        remote: the bare repository actions/checkout fetches from (and ``origin`` of every checkout).
        server: the REST stand-in: ``GITHUB_API_URL``, ``github.token`` and ``github.repository``.
        action_ref: the ``uses:`` that means this repo's composite action (at ``action_root``).
        action_root: where action.yml lives: ``github.action_path`` of its steps.
        action_overrides: inputs given to the composite action when the workflow's ``with:`` lacks them.
    """

    def __init__(
        self,
        root: Path,
        remote: Path,
        server: Any,
        *,
        action_ref: str,
        action_root: Path,
        action_overrides: Mapping[str, str] = {},
    ) -> None:
        self.root = root
        self.remote = remote
        self.server = server
        self.action_ref = action_ref
        self.action_root = action_root
        self.action = yaml.safe_load((action_root / "action.yml").read_text())
        self.action_overrides = dict(action_overrides)
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.store: dict[int, dict[str, Path]] = {}  # run id -> artifact name -> folder
        self._next_run = 4000
        self._steps_run = 0

    # -- workflows ------------------------------------------------------------------------------

    @staticmethod
    def triggered(workflow: Mapping[str, Any], event_name: str, event: Mapping[str, Any]) -> bool:
        """Does ``on:`` start this workflow for the event? (types only; paths filters are not evaluated)"""
        on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
        if isinstance(on, str):
            return on == event_name
        if isinstance(on, list):
            return event_name in on
        if event_name not in on:
            return False
        spec = on[event_name] or {}
        types = spec.get("types") if isinstance(spec, dict) else None
        return not types or event.get("action") in types

    def github_context(self, event_name: str, event: Mapping[str, Any], sha: str, ref: str, run_id: int) -> dict:
        pr = event.get("pull_request") or {}
        owner = self.server.repository.split("/")[0]
        return {
            "event_name": event_name,
            "event": event,
            "repository": self.server.repository,
            "repository_owner": owner,
            "sha": sha,
            "ref": ref,
            "head_ref": (pr.get("head") or {}).get("ref", ""),
            "base_ref": (pr.get("base") or {}).get("ref", ""),
            "run_id": str(run_id),
            "run_number": "1",
            "run_attempt": "1",
            "server_url": "https://github.com",
            "api_url": self.server.url,
            "token": self.server.token,
            "actor": (event.get("sender") or {}).get("login", "octocat"),
        }

    def job_if(self, workflow: Mapping[str, Any], job_id: str, github: Mapping[str, Any], needs: Mapping = {}) -> bool:
        """The job-level ``if:`` (github and needs contexts; implicit success() of the needed jobs)."""
        job = workflow["jobs"][job_id]
        status = "success" if all(n.get("result") == "success" for n in needs.values()) else "failure"
        return condition(job.get("if"), {"github": github, "needs": dict(needs), "inputs": {}}, status)

    def run_workflow(self, text: str, event_name: str, event: Mapping[str, Any], *, sha: str, ref: str) -> WorkflowRun:
        """Run a workflow's text for one event, as GitHub would: every job whose ``if`` holds, in needs order."""
        workflow = yaml.safe_load(text)
        self._next_run += 1
        run = WorkflowRun(self._next_run, workflow.get("name", ""), self.triggered(workflow, event_name, event))
        self.store[run.id] = run.artifacts
        if not run.triggered:
            return run
        run_dir = self.root / f"run-{run.id}"
        run_dir.mkdir(parents=True)
        event_path = run_dir / "event.json"
        event_path.write_text(json.dumps(event))
        github = self.github_context(event_name, event, sha, ref, run.id)
        github["event_path"] = str(event_path)
        github["workflow"] = run.name
        jobs = workflow["jobs"]
        for job_id in self._order(jobs):
            job = jobs[job_id]
            needs = {
                n: {"result": run.result(n), "outputs": self._job_outputs(run, n)} for n in _as_list(job.get("needs"))
            }
            labels = [str(x) for x in _as_list(job.get("runs-on"))]
            if not self.job_if(workflow, job_id, github, needs):
                run.jobs[job_id] = [JobRun(job_id, {}, labels, result="skipped")]
                continue
            run.jobs[job_id] = [
                self._run_job(run, run_dir, workflow, job_id, matrix, labels, {**github, "job": job_id}, needs)
                for matrix in self._matrix(job)
            ]
        return run

    @staticmethod
    def _order(jobs: Mapping[str, Any]) -> list[str]:
        order: list[str] = []
        while len(order) < len(jobs):
            ready = [j for j in jobs if j not in order and set(_as_list(jobs[j].get("needs"))) <= set(order)]
            if not ready:
                raise ExpressionError(f"jobs with circular or unknown needs: {sorted(set(jobs) - set(order))}")
            order += ready
        return order

    @staticmethod
    def _matrix(job: Mapping[str, Any]) -> list[dict[str, Any]]:
        matrix = (job.get("strategy") or {}).get("matrix")
        if not matrix:
            return [{}]
        if not isinstance(matrix, dict) or {"include", "exclude"} & set(matrix):
            raise ExpressionError(f"this runner expands only plain list matrices, not {matrix!r}")
        keys = list(matrix)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(matrix[k] for k in keys))]

    @staticmethod
    def _job_outputs(run: WorkflowRun, job_id: str) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for job in run.jobs.get(job_id, []):
            outputs.update({k: v for k, v in job.outputs.items() if v})
        return outputs

    # -- one job --------------------------------------------------------------------------------

    def _run_job(
        self,
        run: WorkflowRun,
        run_dir: Path,
        workflow: Mapping[str, Any],
        job_id: str,
        matrix: dict[str, Any],
        labels: list[str],
        github: dict[str, Any],
        needs: dict[str, Any],
    ) -> JobRun:
        job = workflow["jobs"][job_id]
        suffix = "-".join(str(v) for v in matrix.values())
        job_dir = run_dir / (f"{job_id}-{suffix}" if suffix else job_id)
        workspace = job_dir / "work" / self.server.repository.split("/")[1]
        temp = job_dir / "temp"
        workspace.mkdir(parents=True)
        temp.mkdir()
        github = {**github, "workspace": str(workspace)}
        jobrun = JobRun(job_id, matrix, labels, workspace=workspace)
        runner = {"os": "Linux", "arch": "X64", "temp": str(temp), "name": f"runner-{job_id}"}
        contexts: dict[str, Any] = {
            "github": github,
            "needs": needs,
            "matrix": matrix,
            "secrets": {"GITHUB_TOKEN": self.server.token},
            "runner": runner,
            "inputs": {},
            "job": {"status": "success"},
        }
        env = {
            k: interpolate(v, {**contexts, "env": {}})
            for k, v in {**workflow.get("env", {}), **job.get("env", {})}.items()
        }
        jobrun.env.update(env)
        steps: dict[str, Any] = {}
        failed = False
        for index, step in enumerate(job["steps"]):
            step_id = step.get("id", f"__step{index}")
            name = step.get("name") or step.get("uses") or step_id
            ctx = {
                **contexts,
                "steps": steps,
                "env": dict(jobrun.env),
                "job": {"status": "failure" if failed else "success"},
            }
            if not condition(step.get("if"), ctx, "failure" if failed else "success"):
                steps[step_id] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
                jobrun.steps.append((name, "skipped"))
                continue
            step_env = {k: interpolate(v, ctx) for k, v in (step.get("env") or {}).items()}
            if "uses" in step:
                outcome, outputs = self._uses(step, ctx, jobrun, step_env, name)
            else:
                cwd = workspace / interpolate(step.get("working-directory", "."), ctx)
                outcome, outputs = self._bash(jobrun, step["run"], step.get("shell", "bash"), step_env, cwd, ctx, name)
            conclusion = "success" if outcome == "failure" and step.get("continue-on-error") else outcome
            steps[step_id] = {"outcome": outcome, "conclusion": conclusion, "outputs": outputs}
            jobrun.step_outputs[step_id] = outputs
            jobrun.steps.append((name, outcome))
            failed = failed or conclusion == "failure"
        jobrun.result = "failure" if failed else "success"
        final = {**contexts, "steps": steps, "env": dict(jobrun.env)}
        jobrun.outputs = {k: interpolate(v, final) for k, v in (job.get("outputs") or {}).items()}
        return jobrun

    def _process_env(self, jobrun: JobRun, ctx: Mapping[str, Any], extra: Mapping[str, str], files: Path) -> dict:
        github, runner = ctx["github"], ctx["runner"]
        env = {
            "PATH": os.pathsep.join([*jobrun.path_prefix, os.environ["PATH"]]),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": github["repository"],
            "GITHUB_REPOSITORY_OWNER": github["repository_owner"],
            "GITHUB_EVENT_NAME": github["event_name"],
            "GITHUB_EVENT_PATH": github["event_path"],
            "GITHUB_SHA": github["sha"],
            "GITHUB_REF": github["ref"],
            "GITHUB_HEAD_REF": github["head_ref"],
            "GITHUB_BASE_REF": github["base_ref"],
            "GITHUB_RUN_ID": github["run_id"],
            "GITHUB_RUN_NUMBER": github["run_number"],
            "GITHUB_RUN_ATTEMPT": github["run_attempt"],
            "GITHUB_SERVER_URL": github["server_url"],
            "GITHUB_API_URL": github["api_url"],
            "GITHUB_WORKSPACE": github["workspace"],
            "GITHUB_WORKFLOW": github["workflow"],
            "GITHUB_JOB": github["job"],
            "GITHUB_ACTOR": github["actor"],
            "RUNNER_OS": runner["os"],
            "RUNNER_ARCH": runner["arch"],
            "RUNNER_TEMP": runner["temp"],
            "RUNNER_NAME": runner["name"],
            "GITHUB_OUTPUT": str(files / "output"),
            "GITHUB_STEP_SUMMARY": str(files / "summary"),
            "GITHUB_ENV": str(files / "env"),
            "GITHUB_PATH": str(files / "path"),
        }
        if "action_path" in github:
            env["GITHUB_ACTION_PATH"] = github["action_path"]
        return {**env, **jobrun.env, **extra}

    def _bash(
        self,
        jobrun: JobRun,
        script: str,
        shell: str,
        step_env: Mapping[str, str],
        cwd: Path,
        ctx: Mapping[str, Any],
        name: str,
    ) -> tuple[str, dict[str, str]]:
        if shell != "bash":
            raise ExpressionError(f"step {name!r}: only shell: bash is emulated, not {shell!r}")
        temp = Path(ctx["runner"]["temp"])
        self._steps_run += 1
        files = temp / "_runner_file_commands" / f"step{self._steps_run}"
        files.mkdir(parents=True)
        path = files / "script.sh"
        path.write_text(interpolate(script, ctx))
        env = self._process_env(jobrun, ctx, step_env, files)
        if not cwd.is_dir():
            jobrun.log += f"--- {name}: working directory {cwd} does not exist\n"
            return "failure", {}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        jobrun.log += f"--- {name} (exit {done.returncode})\n{done.stdout}"
        summary = files / "summary"
        if summary.exists() and summary.read_text().strip():
            jobrun.summaries.append(summary.read_text())
        if (files / "path").exists():
            jobrun.path_prefix[:0] = reversed((files / "path").read_text().split())
        jobrun.env.update(parse_file_command(files / "env"))
        return ("success" if done.returncode == 0 else "failure"), parse_file_command(files / "output")

    # -- uses: ------------------------------------------------------------------------------------

    def _uses(
        self, step: Mapping[str, Any], ctx: Mapping[str, Any], jobrun: JobRun, step_env: Mapping[str, str], name: str
    ) -> tuple[str, dict[str, str]]:
        ref = step["uses"]
        with_ = {k: interpolate(v, ctx) for k, v in (step.get("with") or {}).items()}
        if ref == self.action_ref:
            return self._composite(with_, ctx, jobrun, step_env, name)
        emulated = {
            "actions/checkout": self._checkout,
            "actions/upload-artifact": self._upload,
            "actions/download-artifact": self._download,
            "actions/cache": self._cache,
            "actions/cache/restore": self._cache,
            "actions/cache/save": self._cache,
        }
        action = emulated.get(ref.partition("@")[0])
        if action is None:
            raise ExpressionError(f"this runner neither runs nor emulates {ref!r}")
        try:
            outputs = action(with_, ctx)
        except StepFailed as exc:
            jobrun.log += f"--- {name} (emulated): FAILED {exc}\n"
            return "failure", {}
        jobrun.log += f"--- {name} (emulated)\n"
        return "success", outputs

    def _composite(
        self, with_: dict[str, str], ctx: Mapping[str, Any], jobrun: JobRun, step_env: Mapping[str, str], name: str
    ) -> tuple[str, dict[str, str]]:
        declared = self.action.get("inputs") or {}
        unknown = set(with_) - set(declared)
        if unknown:
            raise ExpressionError(f"{self.action_ref} has no input(s) {sorted(unknown)}")
        github = {**ctx["github"], "action_path": str(self.action_root)}
        base = {"github": github, "runner": ctx["runner"], "env": ctx["env"], "job": ctx["job"]}
        inputs = {}
        for key, spec in declared.items():
            if key in with_:
                inputs[key] = with_[key]
            elif key in self.action_overrides:
                inputs[key] = self.action_overrides[key]
            else:
                inputs[key] = interpolate((spec or {}).get("default", ""), base)
        steps: dict[str, Any] = {}
        failed = False
        for index, step in enumerate(self.action["runs"]["steps"]):
            step_id = step.get("id", f"__step{index}")
            label = f"{name}/{step.get('id') or step.get('name')}"
            cctx = {**base, "inputs": inputs, "steps": steps}
            if not condition(step.get("if"), cctx, "failure" if failed else "success"):
                steps[step_id] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
                jobrun.steps.append((label, "skipped"))
                continue
            env = {**step_env, **{k: interpolate(v, cctx) for k, v in (step.get("env") or {}).items()}}
            if "uses" in step:
                outcome, outputs = self._uses(step, cctx, jobrun, env, label)
            else:
                cwd = Path(github["workspace"]) / interpolate(step.get("working-directory", "."), cctx)
                outcome, outputs = self._bash(jobrun, step["run"], step.get("shell", ""), env, cwd, cctx, label)
            conclusion = "success" if outcome == "failure" and step.get("continue-on-error") else outcome
            steps[step_id] = {"outcome": outcome, "conclusion": conclusion, "outputs": outputs}
            jobrun.steps.append((label, outcome))
            failed = failed or conclusion == "failure"
        final = {**base, "inputs": inputs, "steps": steps}
        outputs = {k: interpolate(v["value"], final) for k, v in (self.action.get("outputs") or {}).items()}
        return ("failure" if failed else "success"), outputs

    def _git(self, cwd: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "HOME": str(self.home)}
        )
        if done.returncode:
            raise StepFailed(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def _checkout(self, with_: Mapping[str, str], ctx: Mapping[str, Any]) -> dict[str, str]:
        """actions/checkout, emulated: fetch from the bare remote, check out the ref, pull LFS files.

        A pull_request run checks out the PR's head commit (refs/pull/N/head): this stand-in makes no
        merge commit (GitHub's refs/pull/N/merge).
        """
        github = ctx["github"]
        workspace = Path(github["workspace"])
        ref = with_.get("ref") or github["ref"]
        pull = re.fullmatch(r"refs/pull/(\d+)/merge", ref)
        if pull:
            ref = f"refs/pull/{pull.group(1)}/head"
        elif not ref.startswith("refs/"):
            ref = f"refs/heads/{ref}"
        depth = int(with_.get("fetch-depth") or 1)
        self._git(workspace, "init", "-q")
        self._git(workspace, "remote", "add", "origin", str(self.remote))
        local = f"refs/remotes/origin/{ref.removeprefix('refs/heads/').removeprefix('refs/')}"
        specs = [f"+{ref}:{local}"]
        if depth == 0:
            specs.append("+refs/heads/*:refs/remotes/origin/*")
        self._git(workspace, "fetch", "-q", *([] if depth == 0 else [f"--depth={depth}"]), "origin", *specs)
        if ref.startswith("refs/heads/"):
            self._git(workspace, "checkout", "-q", "-B", ref.removeprefix("refs/heads/"), local)
        else:
            self._git(workspace, "checkout", "-q", "--detach", local)
        if not with_.get("ref") and self._git(workspace, "rev-parse", "HEAD") != github["sha"]:
            raise StepFailed(f"{ref} is not at {github['sha']}")
        if with_.get("lfs") == "true":
            self._git(workspace, "lfs", "install", "--local")
            self._git(workspace, "lfs", "pull")
        return {}

    def _upload(self, with_: Mapping[str, str], ctx: Mapping[str, Any]) -> dict[str, str]:
        """upload-artifact v4+, emulated: name rule, no second artifact of a name per run, hidden files left out."""
        run_id = int(ctx["github"]["run_id"])
        name = with_.get("name") or "artifact"
        if set(name) & ARTIFACT_NAME_FORBIDDEN:
            raise StepFailed(
                f"The artifact name is not valid: {name}. Contains the character {set(name) & ARTIFACT_NAME_FORBIDDEN}"
            )
        artifacts = self.store[run_id]
        if name in artifacts:
            raise StepFailed(
                f"Failed to CreateArtifact: (409) Conflict: an artifact with this name already exists on the workflow run: {name}"
            )
        source = Path(ctx["github"]["workspace"]) / with_["path"]
        hidden = with_.get("include-hidden-files") == "true"
        files = (
            [source]
            if source.is_file()
            else sorted(p for p in source.rglob("*") if p.is_file())
            if source.is_dir()
            else []
        )
        root = source.parent if source.is_file() else source
        files = [p for p in files if hidden or not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not files:
            if with_.get("if-no-files-found", "warn") == "error":
                raise StepFailed(
                    f"No files were found with the provided path: {with_['path']}. No artifacts will be uploaded."
                )
            return {}
        target = self.root / "artifacts" / str(run_id) / name
        for path in files:
            (target / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.relative_to(root))
        artifacts[name] = target
        return {"artifact-id": str(len(artifacts))}

    def _download(self, with_: Mapping[str, str], ctx: Mapping[str, Any]) -> dict[str, str]:
        """download-artifact v4+, emulated: by name into path, or by pattern into path/<name>/ each."""
        github = ctx["github"]
        run_id = int(with_.get("run-id") or github["run_id"])
        if run_id != int(github["run_id"]) and not with_.get("github-token"):
            raise StepFailed("run-id of another run needs github-token")
        artifacts = self.store.get(run_id, {})
        dest = Path(github["workspace"]) / (with_.get("path") or ".")
        if with_.get("name"):
            if with_["name"] not in artifacts:
                raise StepFailed(f"Artifact not found for name: {with_['name']}")
            shutil.copytree(artifacts[with_["name"]], dest, dirs_exist_ok=True)
        else:
            for name, folder in artifacts.items():
                if fnmatch.fnmatchcase(name, with_.get("pattern") or "*"):
                    shutil.copytree(folder, dest / name, dirs_exist_ok=True)
        return {"download-path": str(dest)}

    def _cache(self, with_: Mapping[str, str], ctx: Mapping[str, Any]) -> dict[str, str]:
        """actions/cache, emulated as always missing (and saving nothing)."""
        return {"cache-hit": "false"}
