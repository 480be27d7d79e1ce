"""The classifier head every ACME model ends with."""

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """LayerNorm then a linear layer: pooled features to logits."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(features))
