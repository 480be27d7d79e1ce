"""The runner's build cache through ``pytest --aitune``: a second run loads, a relevant change rebuilds.

The user repo keeps its model in a package (``mymodels``) whose ``forward`` calls a helper in
another module, as real repos do. The backend is onnxruntime (a real export, about 2 s here, and
a real InferenceSession on load): the build key is the same for every backend, so what rebuilds
onnxruntime rebuilds aoti and TensorRT too. The cache lives in the repo (``aitune_cache_dir``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_plugin_relative import _git, aitune_in

NET = """
import torch

from mymodels.helpers import act


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        return act(self.lin(x))
"""

HELPERS = """
import torch


def act(x):
    return torch.relu(x)
"""

CONFTEST = """
import torch
import aitune_ci as ait
from mymodels.net import Net
{extra}

@ait.tune_fixture
def tune_net():
    return ait.TuneSpec(model=Net().eval(), samples=[torch.randn(4, 16)], backends=["eager", "onnxruntime"], device="cpu")
"""


PYPROJECT = (
    '[tool.pytest.ini_options]\naitune_measure_seconds = "0.2"\naitune_cache_dir = "buildcache"\n'
    '\n[tool.aitune]\nthreshold = "300%"\nmax_confirmations = 0\n'
)


def _write_repo(root: Path) -> None:
    """The user repo's files, written as is: a template and a test's repo must hash the same content."""
    (root / "mymodels").mkdir()
    for name, text in {"__init__.py": "", "net.py": NET, "helpers.py": HELPERS}.items():
        (root / "mymodels" / name).write_text(text)
    (root / "conftest.py").write_text(CONFTEST.format(extra=""))
    (root / "pyproject.toml").write_text(PYPROJECT)


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _write_repo(pytester.path)
    return pytester


@pytest.fixture(scope="module")
def first_run_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build cache one plain ``pytest --aitune`` of the repo fills (onnxruntime), made once for the module."""
    root = tmp_path_factory.mktemp("first-run")
    _write_repo(root)
    done = aitune_in(root)
    assert done.returncode == 0 and "stored onnxruntime in the build cache" in done.stdout, done.stdout[-3000:]
    return root / "buildcache"


@pytest.fixture
def after_a_run(repo: pytest.Pytester, first_run_cache: Path) -> pytest.Pytester:
    """``repo`` whose build cache holds what its first run stored (a copy: a test may corrupt it)."""
    shutil.copytree(first_run_cache, repo.path / "buildcache")
    return repo


def _run(repo: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    """One ``pytest --aitune`` in a subprocess; the onnxruntime row of its result JSON."""
    report = repo.path / "run.json"
    report.unlink(missing_ok=True)
    result = repo.runpytest_subprocess("--aitune", "--aitune-report", str(report), *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    run = json.loads(report.read_text())
    rows = {row["backend"]: row for row in run["results"][0]["backends"]}
    return result, rows["onnxruntime"]


def _entries(repo: pytest.Pytester) -> list[Path]:
    return sorted((repo.path / "buildcache").glob("v1/*/*"))


def test_a_second_run_loads_from_the_cache_and_builds_nothing(repo: pytest.Pytester) -> None:
    first, built = _run(repo)
    assert built.get("reused") is None
    first.stdout.fnmatch_lines(["*tune_net: stored onnxruntime in the build cache*buildcache*"])
    assert len(_entries(repo)) == 1  # eager has nothing to build, so nothing to store

    second, loaded = _run(repo)

    assert loaded["reused"] == "cache" and loaded["status"] == "ok"
    second.stdout.fnmatch_lines(
        [
            "*tune_net · onnxruntime: loaded from the build cache in *s, accuracy ok*",
            "*tune_net: tuned in *s; onnxruntime loaded from the build cache*",
        ]
    )
    assert "onnxruntime: building" not in second.stdout.str()
    assert "stored onnxruntime" not in second.stdout.str()
    assert loaded["build_s"] < built["build_s"] / 2, (built["build_s"], loaded["build_s"])  # export vs a file read

    third, rebuilt = _run(repo, "--aitune-rebuild")

    assert rebuilt.get("reused") is None
    third.stdout.fnmatch_lines(["*onnxruntime: building*", "*stored onnxruntime in the build cache*"])


def test_editing_a_helper_in_another_user_module_forces_a_rebuild(after_a_run: pytest.Pytester) -> None:
    repo = after_a_run
    repo.makepyfile(**{"mymodels/helpers.py": HELPERS.replace("torch.relu(x)", "torch.relu(x) * 1.0")})

    result, row = _run(repo)

    assert row.get("reused") is None
    result.stdout.fnmatch_lines(["*onnxruntime: building*", "*stored onnxruntime in the build cache*"])
    assert len(_entries(repo)) == 2


def test_changing_an_inductor_config_value_forces_a_rebuild(after_a_run: pytest.Pytester) -> None:
    repo = after_a_run
    repo.makeconftest(CONFTEST.format(extra="torch._inductor.config.epilogue_fusion = False"))

    result, row = _run(repo)

    assert row.get("reused") is None
    result.stdout.fnmatch_lines(["*onnxruntime: building*"])


def test_a_corrupt_cache_entry_is_discarded_with_a_line_and_rebuilt(after_a_run: pytest.Pytester) -> None:
    repo = after_a_run
    (entry,) = _entries(repo)
    payload = next(p for p in (entry / "payload").iterdir() if p.is_file())
    payload.write_bytes(b"not an onnx graph" + payload.read_bytes()[17:])

    result, row = _run(repo)

    assert row.get("reused") is None and row["status"] == "ok"
    result.stdout.fnmatch_lines(
        [
            f"*tune_net · onnxruntime: build cache entry {entry.name[:12]} is unusable "
            f"(payload file '{payload.name}' does not match its sha256); discarded, building instead*",
            "*stored onnxruntime in the build cache*",
        ]
    )


def _nightly_on_a_git_repo(repo: pytest.Pytester) -> None:
    _git(repo.path, "init", "-q")
    (repo.path / ".gitignore").write_text("buildcache/\nrun.json\n.aitune/\n")
    _git(repo.path, "add", "-A")
    _git(repo.path, "commit", "-qm", "base")
    nightly, _ = _run(repo, "--aitune-update")
    nightly.stdout.fnmatch_lines(["*stored onnxruntime in the build cache*"])


def test_the_base_in_relative_mode_loads_what_the_nightly_built_when_the_head_does(repo: pytest.Pytester) -> None:
    _nightly_on_a_git_repo(repo)
    # A PR that changes no model code but the fixture's tolerance: head and base differ in work (a
    # PR that changed nothing would not tune the base at all), and both load the nightly's build. The
    # base is imported from a worktree under other module names, so this shows its keys equal the nightly's.
    tolerance = 'device="cpu", tolerance=ait.Tolerance(atol=1e-3, rtol=1e-3))'
    repo.makeconftest(CONFTEST.format(extra="").replace('device="cpu")', tolerance))
    _git(repo.path, "commit", "-qam", "looser tolerance")

    result, head = _run(repo, "--aitune-against", "HEAD~1")

    assert head.get("reused") == "cache"
    result.stdout.fnmatch_lines(
        [
            "*base · [[]2/2[]] tune_net · onnxruntime: loaded from the build cache in*",
            "*base · tune_net: tuned in *s; onnxruntime loaded from the build cache*",
        ]
    )


def test_when_the_head_must_rebuild_the_base_builds_too_so_a_pair_never_mixes_routes(repo: pytest.Pytester) -> None:
    _nightly_on_a_git_repo(repo)
    # The PR edits the helper: the head rebuilds. The base could load the nightly's build, but a
    # loaded build and a fresh one are not a fair pair (on the H200 a cache-loaded inductor build
    # timed ~7% slower than a fresh one), so the base builds as well.
    repo.makepyfile(**{"mymodels/helpers.py": HELPERS.replace("torch.relu(x)", "torch.relu(x) * 1.0")})
    _git(repo.path, "commit", "-qam", "head")

    result, head = _run(repo, "--aitune-against", "HEAD~1")

    assert head.get("reused") is None
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*base · [[]2/2[]] tune_net · onnxruntime: building*"])
    assert "base · [2/2] tune_net · onnxruntime: loaded from the build cache" not in out
