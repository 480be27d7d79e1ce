"""GPT-2 (random weights, from a small config) as two tunable steps: prefill and decode with a KV cache.

Hugging Face caches are mutable objects that grow on every call; timing a model on one would
time a longer sequence each iteration. So each step takes the cache as plain tensors, builds a
fresh ``DynamicCache`` inside forward, and returns the new cache as tensors: every call is the
same work, and the outputs (logits and every key/value) compare leaf by leaf.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import nn

from aitune_ci.spec import TuneSpec

__all__ = ["GPT2Decode", "GPT2Prefill", "gpt2_decode_spec", "gpt2_prefill_spec", "small_gpt2"]


def small_gpt2(
    n_layer: int = 2, n_embd: int = 64, n_head: int = 4, vocab: int = 512, positions: int = 256
) -> nn.Module:
    """A GPT-2 LM from a config (no download); eager attention so every backend can trace it."""
    from transformers import GPT2Config, GPT2LMHeadModel  # lazy: transformers is an optional extra

    config = GPT2Config(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        vocab_size=vocab,
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def _cache_kwarg(model: nn.Module) -> str:
    # transformers 5 renamed `past_key_values` to `cache`; accept both.
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_to_tensors(cache: Any) -> tuple[torch.Tensor, ...]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return tuple(t for layer in cache.layers for t in (layer.keys, layer.values))
    return tuple(t for pair in zip(cache.key_cache, cache.value_cache, strict=True) for t in pair)


def _tensors_to_cache(past: Sequence[torch.Tensor]) -> Any:
    from transformers import DynamicCache  # lazy: transformers is an optional extra

    cache = DynamicCache()
    for layer in range(len(past) // 2):
        cache.update(past[2 * layer], past[2 * layer + 1], layer)
    return cache


class GPT2Prefill(nn.Module):
    """Prompt in, logits and the KV cache (as a flat tuple: k0, v0, k1, v1, ...) out."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self._kw = _cache_kwarg(lm)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out = self.lm(input_ids=input_ids, use_cache=True)
        return out.logits, _cache_to_tensors(out[self._kw] if self._kw in out else out.past_key_values)


class GPT2Decode(nn.Module):
    """One decode step: the next token and the cache so far in, logits and the grown cache out."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self._kw = _cache_kwarg(lm)

    def forward(
        self, input_ids: torch.Tensor, past: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        cache = _tensors_to_cache(past)
        out = self.lm(input_ids=input_ids, use_cache=True, **{self._kw: cache})
        return out.logits, _cache_to_tensors(cache)


def _prompt(batch: int, length: int, vocab: int = 512) -> torch.Tensor:
    g = torch.Generator().manual_seed(length)
    return torch.randint(0, vocab, (batch, length), generator=g)


def gpt2_prefill_spec(
    backends: Sequence[str] | None = None,
    lengths: Sequence[int] = (16, 32),
    batch: int = 1,
    device: str = "auto",
    **kw: Any,
) -> TuneSpec:
    """Prefill at several prompt lengths: the sequence axis is detected as dynamic."""
    model = GPT2Prefill(small_gpt2(**kw.pop("model_kwargs", {})))
    return TuneSpec(
        model=model,
        samples=[_prompt(batch, n) for n in lengths],
        backends=backends,
        device=device,
        name="gpt2_prefill",
        **kw,
    )


def gpt2_decode_spec(
    backends: Sequence[str] | None = None,
    past_lengths: Sequence[int] = (16, 32),
    batch: int = 1,
    device: str = "auto",
    **kw: Any,
) -> TuneSpec:
    """One decode step after prompts of several lengths: the cache's sequence axis is dynamic."""
    lm = small_gpt2(**kw.pop("model_kwargs", {}))
    prefill = GPT2Prefill(lm)
    samples = []
    with torch.no_grad():  # not inference_mode: its tensors could not be used outside it later
        for n in past_lengths:
            _, past = prefill(_prompt(batch, n))
            samples.append((_prompt(batch, 1), tuple(t.clone() for t in past)))
    return TuneSpec(model=GPT2Decode(lm), samples=samples, backends=backends, device=device, name="gpt2_decode", **kw)
