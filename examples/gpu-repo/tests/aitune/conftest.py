"""ACME's tuned models, checked by aitune-ci: `pytest --aitune` (see the README).

One tune fixture per deployed model. aitune-ci seeds torch, numpy and random before calling each,
so the random weights and samples below are the same in every run (and in a PR's base).
Set GPU_REPO_SMALL=1 to shrink every model to CPU size (the same code paths, narrower layers).
"""

import os

import aitune_ci as ait
import torch

from acme_models import fusion_model, image_classifier, text_classifier

SMALL = os.environ.get("GPU_REPO_SMALL", "") not in ("", "0")

# `aitune-ci backends` lists what a machine can run; an unavailable backend (no GPU, no torchao,
# onnxruntime without its CUDA provider, no TensorRT) is reported SKIPPED with the reason.
IMAGE_BACKENDS = ["eager", "eager-fp16", "cudagraphs", "inductor", "aoti", "onnxruntime", "tensorrt"]
TEXT_BACKENDS = ["eager", "eager-bf16", "inductor", "torchao-int8wo", "onnxruntime"]
FUSION_BACKENDS = ["eager", "cudagraphs", "inductor", "torchao-int8wo"]


@ait.tune_fixture
def tune_resnet50():
    """The image classifier (ResNet-50) at batch 32, 224x224."""
    model = image_classifier(small=SMALL).eval()
    size, batch = (64, 4) if SMALL else (224, 32)
    return ait.TuneSpec(
        model=model,
        samples=[torch.randn(batch, 3, size, size)],
        backends=IMAGE_BACKENDS,
        device="auto",  # CUDA when present
    )


@ait.tune_fixture
def tune_text_encoder():
    """The text classifier (BERT, 10 layers, hidden 512) at batch 8, 128 tokens, the last 32 padded."""
    model = text_classifier(small=SMALL).eval()
    batch, seq = (2, 32) if SMALL else (8, 128)
    input_ids = torch.randint(1000, 30000, (batch, seq))
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    attention_mask[:, seq - seq // 4 :] = 0
    return ait.TuneSpec(
        model=model,
        samples=[{"input_ids": input_ids, "attention_mask": attention_mask}],
        backends=TEXT_BACKENDS,
        device="auto",
        dynamic_axes=None,  # served at one padded shape
    )


@ait.tune_fixture
def tune_fusion():
    """The image-text fusion model, each part tuned on its own and the best mixture chosen."""
    model = fusion_model(small=SMALL).eval()
    size, batch = (64, 2) if SMALL else (128, 16)
    return ait.TuneSpec(
        model=model,
        samples=[(torch.randn(batch, 3, size, size), torch.randint(1000, 30000, (batch, 12)))],
        backends=FUSION_BACKENDS,
        modules=["backbone", "neck", "head"],
        device="auto",
    )
