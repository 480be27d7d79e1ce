"""TuneSpec validation: every mistake names the field and what was expected."""

from __future__ import annotations

import pytest
import torch

from aitune_ci.errors import SpecError
from aitune_ci.samples import normalize_sample, sample_signature
from aitune_ci.spec import TuneSpec
from aitune_ci.tolerance import Tolerance


def _spec(**kw):
    base = dict(model=torch.nn.Linear(4, 2), samples=[torch.randn(3, 4)], backends=["eager"])
    base.update(kw)
    return TuneSpec(**base)


def test_every_sample_form_normalizes_to_args_and_kwargs():
    x, y = torch.randn(2), torch.randn(3)
    assert normalize_sample(x) == ((x,), {})
    assert normalize_sample((x, y)) == ((x, y), {})
    assert normalize_sample({"a": x}) == ((), {"a": x})
    assert normalize_sample(((x,), {"b": y})) == ((x,), {"b": y})


def test_model_that_is_not_a_module_is_rejected_with_its_type():
    with pytest.raises(SpecError, match=r"TuneSpec.model must be a torch.nn.Module, got function"):
        _spec(model=lambda x: x)


def test_a_list_sample_is_rejected_and_tuple_is_suggested():
    with pytest.raises(SpecError, match=r"samples\[0\] is a list.*Use a tuple"):
        _spec(samples=[[torch.randn(1)]])


def test_a_bare_tensor_as_samples_asks_for_a_list():
    with pytest.raises(SpecError, match=r"wrap a single input as samples=\[x\]"):
        _spec(samples=torch.randn(3, 4))


def test_empty_samples_rejected():
    with pytest.raises(SpecError, match="samples is empty"):
        _spec(samples=[])


def test_wrong_sample_type_names_index_and_forms():
    with pytest.raises(SpecError, match=r"samples\[1\] is a str; expected a Tensor"):
        _spec(samples=[torch.randn(3, 4), "oops"])


def test_unknown_backend_suggests_the_closest_name():
    with pytest.raises(SpecError, match=r"unknown backend 'inducter' \(did you mean 'inductor'\?\)"):
        _spec(backends=["eager", "inducter"])


def test_backend_listed_twice_is_rejected():
    with pytest.raises(SpecError, match="twice"):
        _spec(backends=["eager", "eager"])


def test_unknown_strategy_suggests_the_closest():
    with pytest.raises(SpecError, match=r"'min-latncy' is unknown \(did you mean 'min-latency'\?\)"):
        _spec(strategy="min-latncy")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_on_a_machine_without_it_says_what_to_do():
    with pytest.raises(SpecError, match=r"CUDA is not available on this machine.*device='auto'"):
        _spec(device="cuda")


def test_auto_device_resolves_to_what_exists():
    spec = _spec(device="auto")
    assert spec.resolved_device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_submodule_suggests_a_close_one():
    model = torch.nn.Sequential()
    model.add_module("backbone", torch.nn.Linear(4, 4))
    with pytest.raises(SpecError, match=r"no submodule 'backbon' \(did you mean 'backbone'\?\)"):
        _spec(model=model, modules=["backbon"])


def test_tolerance_of_the_wrong_type_is_rejected():
    with pytest.raises(SpecError, match="tolerance must be None, an ait.Tolerance"):
        _spec(tolerance=1e-3)
    assert _spec(tolerance={"logits": Tolerance(atol=1e-3)}).tolerance


def test_dtype_must_be_a_torch_dtype():
    with pytest.raises(SpecError, match="dtype must be a torch.dtype"):
        _spec(dtype="float16")


def test_signature_describes_nested_inputs():
    sig = sample_signature(normalize_sample(((torch.zeros(2, 3),), {"mask": torch.ones(2, dtype=torch.bool), "n": 3})))
    assert sig == [
        {"path": "args.0", "shape": [2, 3], "dtype": "float32"},
        {"path": "kwargs.mask", "shape": [2], "dtype": "bool"},
        {"path": "kwargs.n", "type": "int", "value": "3"},
    ]


def test_summary_is_json_serializable():
    import json

    json.dumps(_spec().summary())


def test_a_far_miss_in_modules_lists_the_models_submodules():
    """A near miss gets "did you mean"; a far one used to get no candidates at all."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Linear(4, 4)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.backbone(x))

    with pytest.raises(SpecError, match=r"has no submodule 'classifier'; its submodules are: backbone, head"):
        TuneSpec(model=Net(), samples=[torch.randn(1, 4)], modules=["classifier"], device="cpu")
    with pytest.raises(SpecError, match=r"no submodule 'backbon' \(did you mean 'backbone'\?\)"):
        TuneSpec(model=Net(), samples=[torch.randn(1, 4)], modules=["backbon"], device="cpu")
