"""The image-text fusion model: a residual CNN backbone, a transformer neck over its feature map, our head.

Deployed with a different backend per part, so it is tuned per submodule (``backbone``, ``neck``, ``head``).
"""

import torch
from torch import nn

from acme_models.blocks import ResidualTrunk
from acme_models.heads import ClassifierHead

#: Basic blocks per backbone stage: ResNet-18's configuration.
FUSION_STAGES = (2, 2, 2, 2)


class FusionModel(nn.Module):
    """Image -> CNN feature map -> tokens (+ a text embedding) -> transformer neck -> head."""

    def __init__(self, width: int = 64, dim: int = 256, layers: int = 2, num_classes: int = 16) -> None:
        super().__init__()
        self.backbone = ResidualTrunk(FUSION_STAGES, width=width)
        self.project = nn.Conv2d(self.backbone.out_channels, dim, 1)
        self.text = nn.Embedding(30522, dim)
        layer = nn.TransformerEncoderLayer(dim, 8, dim_feedforward=4 * dim, dropout=0.0, batch_first=True)
        self.neck = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = ClassifierHead(dim, num_classes)

    def forward(self, images: torch.Tensor, query_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.project(self.backbone(images)).flatten(2).transpose(1, 2)  # (batch, h*w, dim)
        tokens = torch.cat([self.text(query_ids).mean(dim=1, keepdim=True), tokens], dim=1)
        return self.head(self.neck(tokens)[:, 0])


def fusion_model(num_classes: int = 16, small: bool = False) -> FusionModel:
    """The fusion model with random weights; ``small`` narrows it (CPU-sized)."""
    if small:
        return FusionModel(width=8, dim=32, layers=2, num_classes=num_classes)
    return FusionModel(num_classes=num_classes)
