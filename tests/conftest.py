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


class TinyMLP(torch.nn.Module):
    """Two linear layers: the smallest model every backend can compile (fast on 2 CPU cores)."""

    def __init__(self, d_in: int = 16, d_hidden: int = 32, d_out: int = 8) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(d_in, d_hidden)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.fixture(scope="session")
def tiny_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyMLP().eval()


@pytest.fixture(scope="session")
def tiny_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 16)
