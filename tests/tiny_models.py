"""Tiny real models shared by tests and by the scripts they run in fresh processes."""

from __future__ import annotations

import torch


class TinyMLP(torch.nn.Module):
    """Two linear layers: the smallest model every backend can compile (fast on 2 CPU cores)."""

    def __init__(self, d_in: int = 16, d_hidden: int = 32, d_out: int = 8) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(d_in, d_hidden)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
