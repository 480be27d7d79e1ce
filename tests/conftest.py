"""Shared test fixtures: tiny real models and a persistent inductor cache shared by all tests."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import _pytest.pytester as pytester_internals
import pytest

# Compiled artifacts are shared between tests and between runs (inductor's on-disk cache), so
# the suite compiles each tiny model once, not once per test. Set before torch is imported.
_CACHE = Path(__file__).resolve().parent.parent / ".aitune-cache"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_CACHE / "inductor"))
os.environ.setdefault("TRITON_CACHE_DIR", str(_CACHE / "triton"))
# aitune's own build cache is on by default (~/.cache/aitune-ci/builds): the suite gets a fresh one
# per session, so no test loads a build another run left behind, and the user's cache stays untouched.
# Made only where no parent process made it: xdist workers and subprocess runs inherit the variable, and
# a folder made for each of them (setdefault's argument is evaluated anyway) was left behind empty.
if "AITUNE_CACHE_DIR" not in os.environ:
    os.environ["AITUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="aitune-test-builds-")
    atexit.register(shutil.rmtree, os.environ["AITUNE_CACHE_DIR"], ignore_errors=True)

import torch  # noqa: E402

pytest_plugins = ["pytester"]

# pytester's inline runs drop from sys.modules every module first imported during the run (it keeps
# only zope and readline). torch's compile stack registers process-wide state when its modules are
# first imported (dynamo's backend names, the mega-cache's artifact types): dropped and imported
# again by a later test, it dies on "duplicate name: eager" or "Artifact of type=autotune already
# registered". torch and triton are not what these tests test, so their modules are kept. (Patches
# a pytest internal, in the tests only: pytester offers no option for it.)
_PYTESTER_SNAPSHOT_INIT = pytester_internals.SysModulesSnapshot.__init__


def _snapshot_keeping_torch(self: Any, preserve: Any = None) -> None:
    def keep(name: str) -> bool:
        return name.startswith(("torch", "triton")) or bool(preserve and preserve(name))

    _PYTESTER_SNAPSHOT_INIT(self, preserve=keep)


pytester_internals.SysModulesSnapshot.__init__ = _snapshot_keeping_torch  # type: ignore[method-assign]


from tiny_models import TinyMLP  # noqa: E402  (a module of its own: subprocess scripts import it by name)

from aitune_ci.plugin.quiet import trace_kept_from_pytest  # noqa: E402


# The plugin keeps pytest's log capture off torch's structured-trace logger for aitune's items; the
# suite's own tests compile too (backend.build called directly), and a failure of one printed
# hundreds of empty "DEBUG torch.__trace" lines under "Captured log call" in CI. Same guard here.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    with trace_kept_from_pytest():
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with trace_kept_from_pytest():
        return (yield)


@pytest.fixture(scope="session")
def tiny_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyMLP().eval()


@pytest.fixture(scope="session")
def tiny_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 16)
