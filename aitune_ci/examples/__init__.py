"""Small bundled example models for ``aitune-ci demo`` and the tests (random weights, no downloads)."""

from aitune_ci.examples.models import SmallCNN, SmallEncoder, cnn_spec, encoder_spec

__all__ = ["SmallCNN", "SmallEncoder", "cnn_spec", "encoder_spec"]
