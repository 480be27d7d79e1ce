"""GPT-2 prefill and decode with a KV cache: tensors in, tensors out, compared leaf by leaf."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from aitune_ci.engine import tune  # noqa: E402
from aitune_ci.examples.llm import gpt2_decode_spec, gpt2_prefill_spec  # noqa: E402
from aitune_ci.measure import MeasureConfig  # noqa: E402

CONFIG = MeasureConfig(max_total_s=0.3, min_rounds=3)


def test_decode_step_output_matches_the_hf_cache_semantics():
    spec = gpt2_decode_spec(backends=["eager"], past_lengths=(8,))
    (ids, past), _ = spec.normalized_samples[0]
    logits, new_past = spec.model(ids, past)
    assert logits.shape == (1, 1, 512)
    assert len(new_past) == 4 and new_past[0].shape[2] == past[0].shape[2] + 1
    # Calling twice with the same inputs gives the same result: the cache is rebuilt each call.
    logits2, _ = spec.model(ids, past)
    assert torch.equal(logits, logits2)


@pytest.mark.slow
def test_prefill_and_decode_tune_with_dynamic_sequence_length_and_every_leaf_compared():
    prefill = tune(gpt2_prefill_spec(backends=["eager", "onnxruntime"]), measure_config=CONFIG, progress=None)
    assert prefill.dynamic_axes == {"args.0": {"1": "d0"}}
    ort = prefill.backend("onnxruntime")
    assert ort.status == "ok", ort.error
    assert {leaf.path for leaf in ort.accuracy.leaves} == {"0", *(f"1.{i}" for i in range(4))}

    decode = tune(gpt2_decode_spec(backends=["eager", "onnxruntime"]), measure_config=CONFIG, progress=None)
    assert set(decode.dynamic_axes) == {f"args.1.{i}" for i in range(4)}
    row = decode.backend("onnxruntime")
    assert row.status == "ok", row.error
    assert len(row.accuracy.leaves) == 5 and row.accuracy.samples_checked == 2
