"""A small CNN and a small transformer encoder, sized so a 2-core CPU tunes them in minutes."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from aitune_ci.spec import TuneSpec


class SmallCNN(nn.Module):
    """A ResNet-flavoured image classifier: conv stem, two residual blocks, pooled linear head."""

    def __init__(self, channels: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
            )
            for _ in range(2)
        )
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean(dim=(2, 3)))


class SmallEncoder(nn.Module):
    """Token embedding + a 2-layer transformer encoder + a classifier over the first token."""

    def __init__(
        self, vocab: int = 1000, d_model: int = 128, heads: int = 4, layers: int = 2, classes: int = 4
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(1, 512, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(input_ids) + self.pos[:, : input_ids.shape[1]]
        h = self.encoder(h)
        return {"logits": self.head(h[:, 0]), "hidden": h}


def cnn_spec(backends: Sequence[str] | None = None, device: str = "auto", **overrides: object) -> TuneSpec:
    """The demo's CNN: batch 8 of 3x64x64 images."""
    torch.manual_seed(0)
    model = SmallCNN().eval()
    samples = [torch.randn(8, 3, 64, 64)]
    return TuneSpec(model=model, samples=samples, backends=backends, device=device, name="small_cnn", **overrides)  # type: ignore[arg-type]


def encoder_spec(backends: Sequence[str] | None = None, device: str = "auto", **overrides: object) -> TuneSpec:
    """The demo's encoder: batch 4 of 64 token ids; returns a dict (logits, hidden)."""
    torch.manual_seed(0)
    model = SmallEncoder().eval()
    samples = [torch.randint(0, 1000, (4, 64))]
    return TuneSpec(model=model, samples=samples, backends=backends, device=device, name="small_encoder", **overrides)  # type: ignore[arg-type]
