"""ACME's inference models: an image classifier, a text classifier and an image-text fusion model.

This package stands for a team's own model code. ``tests/aitune/conftest.py`` tunes each model with
aitune-ci; a pull request that changes anything here is checked for speed and accuracy on the GPU.
"""

from acme_models.fusion import FusionModel, fusion_model
from acme_models.heads import ClassifierHead
from acme_models.text import TextClassifier, text_classifier
from acme_models.vision import ImageClassifier, image_classifier

__all__ = [
    "ClassifierHead",
    "FusionModel",
    "ImageClassifier",
    "TextClassifier",
    "fusion_model",
    "image_classifier",
    "text_classifier",
]
