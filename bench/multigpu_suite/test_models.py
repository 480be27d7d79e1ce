"""The example suite that bench/multigpu.py runs with one GPU and with one pytest-xdist worker per GPU.

Four tune fixtures of similar cost, so two workers can split them evenly. On a machine without CUDA
(a smoke run of the driver) they are the bundled small CNN and encoder on the CPU instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch

import aitune_ci as ait

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, for gpu_backends' model builders

CUDA = torch.cuda.is_available() and os.environ.get("AITUNE_SUITE_DEVICE", "cuda") == "cuda"
GPU_BACKENDS = ["eager", "eager-bf16", "cudagraphs", "inductor"]
CPU_BACKENDS = ["eager", "eager-bf16"]


def _spec(gpu_model: str, cpu_model: str) -> ait.TuneSpec:
    if CUDA:
        import gpu_backends

        spec = gpu_backends.MODELS[gpu_model](GPU_BACKENDS)
    else:
        from aitune_ci.examples import models

        spec = getattr(models, f"{cpu_model}_spec")(CPU_BACKENDS, device="cpu")
    # min-latency: no batch sweep, so each fixture costs about the same in every run
    return dataclasses.replace(spec, strategy="min-latency", name=None)


@ait.tune_fixture
def tune_resnet50():
    return _spec("resnet50", "cnn")


@ait.tune_fixture
def tune_bert():
    return _spec("bert", "encoder")


@ait.tune_fixture
def tune_gpt2_decode():
    return _spec("gpt2", "cnn")


@ait.tune_fixture
def tune_composite():
    return _spec("composite", "encoder")
