"""The image classifier: torchvision's ResNet-50 trunk (built from its config, no download) and our head."""

import torch
from torch import nn

from acme_models.blocks import ResidualTrunk
from acme_models.heads import ClassifierHead

#: Residual blocks per stage: ResNet-50's configuration.
RESNET_STAGES = (3, 4, 6, 3)


class ImageClassifier(nn.Module):
    """A CNN trunk, global average pooling, and the classifier head."""

    def __init__(self, trunk: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = ClassifierHead(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(images).mean(dim=(2, 3))
        return self.head(features)


def image_classifier(num_classes: int = 1000, small: bool = False) -> ImageClassifier:
    """ResNet-50 with random weights; ``small`` swaps in a narrow basic-block trunk of the same depth (CPU-sized)."""
    if small:
        trunk = ResidualTrunk(RESNET_STAGES, width=8)
        return ImageClassifier(trunk, trunk.out_channels, num_classes)
    try:
        from torchvision.models.resnet import Bottleneck, ResNet
    except ImportError as exc:
        raise ImportError(
            f"the image classifier needs torchvision ({exc}); install it with `pip install torchvision` "
            "(the build matching your torch), or set GPU_REPO_SMALL=1 for the CPU-sized models"
        ) from None
    resnet = ResNet(Bottleneck, list(RESNET_STAGES))
    trunk = nn.Sequential(*list(resnet.children())[:-2])  # everything up to the average pool
    return ImageClassifier(trunk, 2048, num_classes)
