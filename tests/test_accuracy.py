"""Accuracy metrics, gates and output flattening: hand-computed cases, milliseconds each."""

from __future__ import annotations

import copy
import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from aitune_ci.accuracy import (
    compare_outputs,
    default_tolerance,
    flatten_outputs,
    gate_description,
    gate_leaf,
    leaf_metrics,
)
from aitune_ci.result import AccuracyReport, LeafMetrics
from aitune_ci.tolerance import Tolerance


def _with_sqnr(ref: np.ndarray, sqnr_db: float, seed: int = 0) -> np.ndarray:
    """``ref`` plus gaussian noise scaled so that the SQNR is exactly ``sqnr_db``."""
    noise = np.random.default_rng(seed).standard_normal(ref.shape)
    noise *= math.sqrt(np.sum(ref**2) / 10 ** (sqnr_db / 10) / np.sum(noise**2))
    return ref + noise


def _gated(path, ref, cand, precision, tolerance=None, fp64=None):
    tol = (tolerance or Tolerance()).merged_over(default_tolerance(precision))
    m = leaf_metrics(path, ref, cand, fp64_reference=fp64, tolerance=tol)
    return m, *gate_leaf(m, tolerance, precision)


# ---- pure metrics ------------------------------------------------------------------------


def test_identical_outputs_have_infinite_sqnr_unit_cosine_and_pass():
    ref = np.linspace(-3, 3, 50)
    m, passed, reason = _gated("out", ref, ref.copy(), "fp32")
    assert m.sqnr_db == math.inf
    assert m.cosine == 1.0
    assert m.max_abs == m.mean_abs == m.max_rel == 0.0
    assert (passed, reason) == (True, "")


def test_known_additive_error_gives_hand_computed_sqnr():
    # signal sum(1^2)*100 = 100, noise sum(0.1^2)*100 = 1 -> 10*log10(100) = 20 dB
    m = leaf_metrics("out", np.ones(100), np.full(100, 1.1))
    assert m.sqnr_db == pytest.approx(20.0, abs=1e-9)
    assert m.max_abs == pytest.approx(0.1)
    assert m.mean_abs == pytest.approx(0.1)
    assert m.max_rel == pytest.approx(0.1)
    assert m.cosine == pytest.approx(1.0)  # a uniform offset of a constant vector keeps its direction


def test_cosine_is_one_for_two_all_zero_leaves_and_zero_for_orthogonal_ones():
    assert leaf_metrics("z", np.zeros(4), np.zeros(4)).cosine == 1.0
    assert leaf_metrics("o", np.array([1.0, 0.0]), np.array([0.0, 1.0])).cosine == pytest.approx(0.0)


def test_max_rel_clamps_reference_values_near_zero_to_the_leaf_scale():
    ref, cand = np.array([1.0, 1e-12]), np.array([1.0, 1e-6])
    m = leaf_metrics("out", ref, cand)
    floor = 1e-3 * math.sqrt((1.0 + 1e-24) / 2)  # 1e-3 x RMS(ref)
    assert m.max_rel == pytest.approx((1e-6 - 1e-12) / floor)


def test_rmse_ratio_is_candidate_error_over_eager_error_against_fp64():
    fp64 = np.array([1.0, 2.0, 3.0, 4.0])
    eager = fp64 + 1e-3 * np.array([1, -1, 1, -1])  # RMSE 1e-3
    cand = fp64 + 2e-3 * np.array([-1, 1, 1, -1])  # RMSE 2e-3
    assert leaf_metrics("out", eager, cand, fp64_reference=fp64).rmse_ratio == pytest.approx(2.0)
    assert leaf_metrics("out", eager, cand).rmse_ratio is None


def test_rmse_ratio_when_eager_is_exact_is_one_for_exact_candidate_else_infinite():
    x = np.array([1.0, 2.0])
    assert leaf_metrics("out", x, x.copy(), fp64_reference=x).rmse_ratio == 1.0
    assert leaf_metrics("out", x, x + 1e-9, fp64_reference=x).rmse_ratio == math.inf


def test_nan_where_reference_finite_fails_whatever_the_tolerance():
    ref, cand = np.ones(5), np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    m, passed, reason = _gated("out", ref, cand, "int8", Tolerance(min_sqnr_db=-100, min_cosine=-1))
    assert not passed
    assert m.nan_count == 1 and m.max_abs == math.inf and m.sqnr_db == -math.inf
    assert "1 NaN" in reason and "reference is finite" in reason


def test_inf_where_reference_finite_fails():
    m, passed, reason = _gated("out", np.ones(3), np.array([1.0, np.inf, -np.inf]), "fp32")
    assert not passed
    assert m.inf_count == 2
    assert "2 Inf" in reason


def test_nan_and_inf_at_the_same_place_in_both_count_as_agreement():
    ref = np.array([1.0, np.nan, np.inf, 2.0])
    cand = np.array([1.0, np.nan, np.inf, 2.0 + 1e-6])
    m, passed, _ = _gated("out", ref, cand, "fp32")
    assert passed
    assert (m.nan_count, m.inf_count) == (1, 1)  # still reported
    assert m.max_abs == pytest.approx(1e-6)  # metrics from the finite elements only


def test_finite_candidate_where_reference_is_nan_fails():
    _, passed, reason = _gated("out", np.array([np.nan, 1.0]), np.array([0.0, 1.0]), "fp32")
    assert not passed
    assert "reference is NaN/Inf" in reason


def test_shape_mismatch_fails_naming_both_shapes():
    m, passed, reason = _gated("logits", np.zeros((2, 3)), np.zeros((3, 2)), "fp32")
    assert not passed
    assert m.shape == (2, 3)
    assert "(3, 2)" in reason and "(2, 3)" in reason


def test_integer_leaf_must_match_exactly_even_under_a_loose_gate():
    ref = np.array([1, 2, 3], dtype=np.int64)
    _, passed, reason = _gated("ids", ref, np.array([1, 2, 4]), "int8", Tolerance(min_sqnr_db=0))
    assert not passed and "1 of 3 elements" in reason
    _, passed, _ = _gated("ids", ref, ref.copy(), "int8")
    assert passed


def test_bool_leaf_that_matches_passes():
    mask = np.array([True, False, True])
    assert _gated("mask", mask, mask.copy(), "fp32")[1]


# ---- gates -------------------------------------------------------------------------------


def test_fp32_default_gate_is_allclose_1e4():
    ref = np.linspace(-1, 1, 11)
    assert _gated("out", ref, ref + 5e-5, "fp32")[1]  # 5e-5 <= 1e-4 + 1e-4*|r|
    m, passed, reason = _gated("out", ref, ref + 1e-3, "fp32")
    assert not passed
    assert "atol 0.0001" in reason and "rtol 0.0001" in reason
    assert m.allclose_ratio == pytest.approx(1e-3 / 1e-4)  # worst at ref == 0


def test_rtol_is_relative_to_each_reference_element():
    # |d| = 1e-3 at |ref| = 100: allowance 1e-4 + 1e-4 * 100 = 1.01e-2, so it passes
    ref = np.array([100.0, -100.0])
    m, passed, _ = _gated("out", ref, ref + 1e-3, "fp32")
    assert passed
    assert m.allclose_ratio == pytest.approx(1e-3 / 1.01e-2)


def test_rmse_ratio_lets_an_fp32_result_through_that_fails_a_too_tight_atol():
    rng = np.random.default_rng(0)
    fp64 = rng.standard_normal(1000)
    eager = fp64 + 1e-7 * rng.standard_normal(1000)
    reordered = fp64 + 1e-7 * rng.standard_normal(1000)  # same error size, different rounding
    broken = fp64 + 1e-5 * rng.standard_normal(1000)
    tight = Tolerance(atol=1e-9, rtol=0.0)
    m, passed, reason = _gated("out", eager, reordered, "fp32", tight, fp64)
    assert passed
    assert m.allclose_ratio > 1  # allclose alone would have failed it
    assert "but RMSE" in reason
    m, passed, reason = _gated("out", eager, broken, "fp32", tight, fp64)
    assert not passed
    assert m.rmse_ratio > 2
    assert "atol 1e-09" in reason and "limit 2×" in reason


def test_gaussian_noise_at_30db_passes_int8_but_fails_fp32_and_20db_fails_int8():
    ref = np.random.default_rng(1).standard_normal(10_000)
    at_30 = _with_sqnr(ref, 30.0)
    m, passed, _ = _gated("out", ref, at_30, "int8")
    assert m.sqnr_db == pytest.approx(30.0)
    assert passed
    assert not _gated("out", ref, at_30, "fp32")[1]
    m, passed, reason = _gated("out", ref, _with_sqnr(ref, 20.0), "int8")
    assert not passed
    assert "SQNR 20.0 dB < 25 dB" in reason


def test_user_sqnr_floor_applies_on_a_float_precision_too():
    ref = np.ones(100)
    cand = np.full(100, 1.0 + 5e-5)  # allclose passes; SQNR = 20*log10(1/5e-5) = 86 dB
    assert _gated("out", ref, cand, "fp32")[1]
    _, passed, reason = _gated("out", ref, cand, "fp32", Tolerance(min_sqnr_db=90))
    assert not passed and "< 90 dB" in reason


def test_user_tolerance_fields_override_only_what_they_set():
    ref = np.zeros(10)
    cand = np.full(10, 0.05)
    assert not _gated("out", ref, cand, "fp32")[1]
    assert _gated("out", ref, cand, "fp32", Tolerance(atol=0.1))[1]  # rtol stays the default


def test_gate_without_allclose_ratio_falls_back_to_max_abs_within_atol():
    m = leaf_metrics("out", np.ones(3), np.ones(3) + 5e-5)  # no tolerance: ratio not computed
    assert m.allclose_ratio is None
    assert gate_leaf(m, None, "fp32") == (True, "")
    m = leaf_metrics("out", np.ones(3), np.ones(3) + 1e-3)
    assert not gate_leaf(m, None, "fp32")[0]


def test_half_precision_defaults_are_looser_than_fp32():
    for precision in ("tf32", "fp16", "bf16"):
        tol = default_tolerance(precision)
        assert tol.atol > 1e-4 and tol.rtol > 1e-4 and tol.max_rmse_ratio == 3
    assert default_tolerance("bf16").rtol > default_tolerance("fp16").rtol
    for precision in ("int8", "fp8"):
        tol = default_tolerance(precision)
        assert (tol.atol, tol.min_sqnr_db, tol.min_cosine) == (None, 25, 0.99)


def test_bf16_rounding_that_breaks_allclose_near_zero_passes_on_whole_tensor_sqnr():
    # Like resnet50 in bf16 on the H100: logits of size ~10, a few near zero, error ~0.5% of the
    # tensor's scale (SQNR ~45 dB): elementwise 5e-2 + 5e-2·|ref| fails on the small ones.
    rng = np.random.default_rng(3)
    ref = 10 * rng.standard_normal(4000)
    cand = _with_sqnr(ref, 45.0)
    m, passed, reason = _gated("logits", ref, cand, "bf16")
    assert m.allclose_ratio > 1  # elementwise alone would fail it
    assert passed
    assert "but SQNR 45.0 dB (close at 35 dB) passes" in reason


def test_half_precision_sqnr_route_still_fails_a_broken_kernel_and_names_every_test():
    rng = np.random.default_rng(4)
    ref = 10 * rng.standard_normal(4000)
    m, passed, reason = _gated("logits", ref, _with_sqnr(ref, 20.0), "bf16")
    assert not passed
    assert "SQNR 20.0 dB (close at 35 dB)" in reason and "atol 0.05" in reason
    # fp16 holds a tighter floor: 40 dB passes bf16 but not fp16
    assert _gated("logits", ref, _with_sqnr(ref, 40.0), "bf16")[1]
    assert not _gated("logits", ref, _with_sqnr(ref, 40.0), "fp16")[1]


def test_user_can_turn_the_sqnr_route_off_or_tighten_it():
    rng = np.random.default_rng(5)
    ref = 10 * rng.standard_normal(4000)
    cand = _with_sqnr(ref, 45.0)
    assert not _gated("out", ref, cand, "bf16", Tolerance(close_sqnr_db=60.0))[1]
    assert not _gated("out", ref, cand, "bf16", Tolerance(close_sqnr_db=math.inf))[1]


def test_fp32_and_quantized_defaults_have_no_sqnr_closeness_route():
    for precision in ("fp32", "int8", "fp8"):
        assert default_tolerance(precision).close_sqnr_db is None
    assert "SQNR ≥ 35 dB" in gate_description("bf16") and "SQNR ≥ 45 dB" in gate_description("fp16")


def test_unknown_precision_is_an_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="fp64x.*fp32, tf32, fp16, bf16, int8, fp8"):
        default_tolerance("fp64x")


def test_gate_description_names_the_limits_and_per_leaf_overrides():
    text = gate_description("fp32")
    assert "atol=0.0001" in text and "2×" in text
    assert "SQNR ≥ 25 dB" in gate_description("int8") and "cosine ≥ 0.99" in gate_description("int8")
    text = gate_description("fp16", {"*": Tolerance(atol=0.5), "past_key_values.*": Tolerance(atol=1.0)})
    assert "atol=0.5" in text and "past_key_values.*" in text


def test_leaf_metrics_with_allclose_ratio_round_trip_through_json():
    m = leaf_metrics("out", np.ones(4), np.full(4, 1.0002), tolerance=Tolerance(atol=1e-4, rtol=0.0))
    back = LeafMetrics.from_json(m.to_json())
    assert back.allclose_ratio == pytest.approx(2.0, rel=1e-5)
    assert back.shape == (4,) and back.sqnr_db == pytest.approx(m.sqnr_db, rel=1e-5)
    older = {k: v for k, v in m.to_json().items() if k != "allclose_ratio"}  # written before the field
    assert LeafMetrics.from_json(older).allclose_ratio is None


# ---- flattening --------------------------------------------------------------------------


@dataclass
class _Heads:
    logits: torch.Tensor
    aux: tuple | None = None


_Pair = namedtuple("_Pair", ["values", "indices"])


def test_lone_tensor_and_scalar_are_named_output():
    t = torch.ones(2)
    assert flatten_outputs(t) == [("output", t)]
    assert flatten_outputs(3.5) == [("output", 3.5)]


def test_nested_tuple_dict_dataclass_and_namedtuple_paths():
    a, b, c, d = (torch.full((1,), float(i)) for i in range(4))
    out = {"heads": _Heads(logits=a, aux=(b, None)), "pair": _Pair(c, d), "list": [7, None]}
    assert [p for p, _ in flatten_outputs(out)] == [
        "heads.logits",
        "heads.aux.0",
        "pair.values",
        "pair.indices",
        "list.0",
    ]
    assert [p for p, _ in flatten_outputs((a, (b, {"x": c})))] == ["0", "1.0", "1.1.x"]


class _Layer:
    def __init__(self, k, v):
        self.keys, self.values = k, v


class _LayeredCache:
    """Shaped like transformers >= 4.56 DynamicCache: ``.layers[i].keys / .values``."""

    def __init__(self, n):
        self.layers = [_Layer(torch.full((1,), 2.0 * i), torch.full((1,), 2.0 * i + 1)) for i in range(n)]


class _ListCache:
    """Shaped like older DynamicCache: ``key_cache`` / ``value_cache`` lists."""

    def __init__(self, n):
        self.key_cache = [torch.zeros(1) for _ in range(n)]
        self.value_cache = [torch.ones(1) for _ in range(n)]


class _LegacyOnlyCache:
    def to_legacy_cache(self):
        return ((torch.zeros(1), torch.ones(1)),)


def test_kv_cache_objects_flatten_to_layer_key_value_leaves():
    paths = [p for p, _ in flatten_outputs({"logits": torch.ones(1), "past_key_values": _LayeredCache(2)})]
    assert paths == [
        "logits",
        "past_key_values.0.key",
        "past_key_values.0.value",
        "past_key_values.1.key",
        "past_key_values.1.value",
    ]
    leaves = dict(flatten_outputs(_LayeredCache(2)))
    assert leaves["1.value"].item() == 3.0
    assert [p for p, _ in flatten_outputs(_ListCache(1))] == ["0.key", "0.value"]
    assert [p for p, _ in flatten_outputs(_LegacyOnlyCache())] == ["0.key", "0.value"]


def test_encoder_decoder_cache_flattens_both_sub_caches():
    class EncDec:
        self_attention_cache = _LayeredCache(1)
        cross_attention_cache = _ListCache(1)

    assert [p for p, _ in flatten_outputs(EncDec())] == [
        "self_attention_cache.0.key",
        "self_attention_cache.0.value",
        "cross_attention_cache.0.key",
        "cross_attention_cache.0.value",
    ]


def test_a_list_of_dicts_named_layers_is_not_mistaken_for_a_kv_cache():
    @dataclass
    class Out:
        layers: list

    assert [p for p, _ in flatten_outputs(Out(layers=[{"keys": torch.ones(1)}]))] == ["layers.0.keys"]


def test_real_transformers_dynamic_cache_flattens_to_key_value_leaves():
    transformers = pytest.importorskip("transformers")
    cache = transformers.DynamicCache()
    k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    cache.update(k, v, 0)
    leaves = dict(flatten_outputs({"past_key_values": cache}))
    assert list(leaves) == ["past_key_values.0.key", "past_key_values.0.value"]
    assert torch.equal(leaves["past_key_values.0.key"], k)


# ---- compare_outputs ---------------------------------------------------------------------


def test_dict_outputs_fail_only_on_the_leaf_that_drifted():
    ref = {"logits": torch.ones(8), "hidden": torch.zeros(8)}
    cand = {"logits": torch.ones(8), "hidden": torch.full((8,), 0.5)}
    report = compare_outputs([ref], [cand], "fp32")
    assert isinstance(report, AccuracyReport)
    assert not report.passed
    by_path = {m.path: m for m in report.leaves}
    assert by_path["logits"].passed and not by_path["hidden"].passed
    assert "hidden" in report.reason and "1 of 2 leaves failed" in report.reason
    assert report.samples_checked == 1


def test_structure_mismatch_lists_missing_and_extra_leaves():
    ref = {"logits": torch.ones(2), "attn": torch.ones(2)}
    cand = {"logits": torch.ones(2), "scores": torch.ones(2)}
    report = compare_outputs([ref], [cand], "fp32")
    assert not report.passed
    assert "missing leaves ['attn']" in report.reason and "extra leaves ['scores']" in report.reason
    assert [m.path for m in report.leaves] == ["logits"]


def test_every_sample_is_checked_and_the_lowest_sqnr_sample_is_kept():
    ref = [torch.ones(100)] * 3
    cand = [torch.ones(100), torch.full((100,), 1.00005), torch.full((100,), 1.00001)]
    report = compare_outputs(ref, cand, "fp32")
    assert report.passed and report.samples_checked == 3
    (leaf,) = report.leaves
    assert leaf.worst_sample == 1
    assert leaf.sqnr_db == pytest.approx(20 * math.log10(1 / 5e-5), abs=0.01)


def test_a_failing_sample_is_kept_over_a_passing_one_with_lower_sqnr():
    tol = Tolerance(atol=0.0, rtol=0.1)
    ref = [torch.ones(2, dtype=torch.float64), torch.tensor([1.0, 1e-3], dtype=torch.float64)]
    cand = [
        torch.full((2,), 1.09, dtype=torch.float64),  # passes, SQNR 20.9 dB
        torch.tensor([1.0, 1.2e-3], dtype=torch.float64),  # 20% off on the small element: fails
    ]
    report = compare_outputs(ref, cand, "fp32", tol)
    (leaf,) = report.leaves
    assert not report.passed
    assert leaf.worst_sample == 1 and not leaf.passed
    assert leaf.sqnr_db > 20 * math.log10(1 / 0.09)


def test_per_leaf_glob_tolerance_overrides_the_default():
    ref = {"logits": torch.ones(4), "past_key_values": ((torch.ones(4), torch.ones(4)),)}
    noisy = torch.full((4,), 1.005)
    cand = {"logits": noisy, "past_key_values": ((noisy, noisy),)}
    spec = {"past_key_values.*": Tolerance(atol=1e-2)}
    report = compare_outputs([ref], [cand], "fp32", spec)
    failed = sorted(m.path for m in report.leaves if not m.passed)
    assert failed == ["logits"]
    assert "past_key_values.*" in report.gate


def test_real_bf16_model_passes_the_bf16_gate_but_not_the_fp32_one(tiny_mlp, tiny_input):
    samples = [tiny_input, tiny_input * 2]
    half = copy.deepcopy(tiny_mlp).to(torch.bfloat16)
    fp64 = copy.deepcopy(tiny_mlp).double()
    with torch.no_grad():
        ref = [tiny_mlp(x) for x in samples]
        cand = [half(x.to(torch.bfloat16)) for x in samples]
        f64 = [fp64(x.double()) for x in samples]
    report = compare_outputs(ref, cand, "bf16", fp64_reference=f64)
    assert report.passed, report.reason
    (leaf,) = report.leaves
    assert leaf.rmse_ratio > 3  # bf16 error dwarfs fp32's: allclose carries the gate
    assert not compare_outputs(ref, cand, "fp32", fp64_reference=f64).passed


def test_one_output_per_sample_is_required():
    with pytest.raises(ValueError, match="one output per sample"):
        compare_outputs([torch.ones(1)], [], "fp32")
    with pytest.raises(ValueError, match="one output per sample"):
        compare_outputs(torch.ones(1), torch.ones(1), "fp32")
