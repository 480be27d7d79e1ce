"""Shared test fixtures: tiny real models and a persistent inductor cache shared by all tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Compiled artifacts are shared between tests and between runs (inductor's on-disk cache), so
# the suite compiles each tiny model once, not once per test. Set before torch is imported.
_CACHE = Path(__file__).resolve().parent.parent / ".aitune-cache"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_CACHE / "inductor"))
os.environ.setdefault("TRITON_CACHE_DIR", str(_CACHE / "triton"))

import torch  # noqa: E402

pytest_plugins = ["pytester"]


from tiny_models import TinyMLP  # noqa: E402  (a module of its own: subprocess scripts import it by name)


@pytest.fixture(scope="session")
def tiny_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyMLP().eval()


@pytest.fixture(scope="session")
def tiny_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 16)
