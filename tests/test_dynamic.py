"""Dynamic-axis and batch-axis detection from sample signatures."""

from __future__ import annotations

import pytest

from aitune_ci.dynamic import detect_batch_axis, detect_dynamic_axes, explicit_dynamic_axes
from aitune_ci.errors import SpecError


def sig(**shapes):
    return [{"path": p.replace("_", "."), "shape": list(s), "dtype": "float32"} for p, s in shapes.items()]


def test_one_sample_has_no_dynamic_axes():
    assert detect_dynamic_axes([sig(args_0=(8, 3))]) == {}


def test_varying_dims_are_dynamic_and_covarying_dims_share_a_name():
    sigs = [sig(args_0=(2, 16), args_1=(2, 16)), sig(args_0=(4, 32), args_1=(4, 32))]
    assert detect_dynamic_axes(sigs) == {"args.0": {0: "batch", 1: "d1"}, "args.1": {0: "batch", 1: "d1"}}


def test_independent_dims_get_different_names():
    sigs = [sig(args_0=(2, 16)), sig(args_0=(4, 16)), sig(args_0=(4, 32))]
    assert detect_dynamic_axes(sigs) == {"args.0": {0: "batch", 1: "d1"}}


def test_rank_change_between_samples_is_an_error():
    with pytest.raises(SpecError, match="only sizes may vary"):
        detect_dynamic_axes([sig(args_0=(2, 16)), sig(args_0=(2, 16, 1))])


def test_batch_axis_is_dim0_when_inputs_agree():
    axis = detect_batch_axis([sig(args_0=(8, 3), args_1=(8,)), sig(args_0=(2, 3), args_1=(2,))])
    assert axis is not None and axis.dim == 0 and axis.sizes == (8, 2) and axis.paths == ("args.0", "args.1")


def test_no_batch_axis_when_dim0_disagrees():
    assert detect_batch_axis([sig(args_0=(8, 3), args_1=(4,))]) is None


def test_explicit_axes_are_validated_against_the_samples():
    sigs = [sig(args_0=(8, 3))]
    assert explicit_dynamic_axes({"args.0": {0: "batch"}}, sigs) == {"args.0": {0: "batch"}}
    assert explicit_dynamic_axes({"args.0": [0]}, sigs) == {"args.0": {0: "args_0_0"}}
    with pytest.raises(SpecError, match="names input 'args.9'"):
        explicit_dynamic_axes({"args.9": [0]}, sigs)
    with pytest.raises(SpecError, match="dim 5 is not a dim of a rank-2 tensor"):
        explicit_dynamic_axes({"args.0": [5]}, sigs)
