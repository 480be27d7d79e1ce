"""Every backend's build leaves process-global torch settings as it found them.

A leak changes the compile-cache key of every later compile in the process (see torch_state.py):
before aoti restored ``aot_inductor.metadata``, an inductor artifact built after an aoti build
compiled cold in a fresh process (test_backend_inductor.py's fresh-process test, in a full run).
"""

from __future__ import annotations

import pytest
import torch
from torch_state import changed, global_torch_state

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import backend_names, get_backend


@pytest.mark.slow
@pytest.mark.parametrize("name", backend_names())
def test_build_leaves_process_global_torch_state_unchanged(name, tiny_mlp, tiny_input, tmp_path):
    backend = get_backend(name)
    ok, reason = backend.available("cpu")
    if not ok:
        pytest.skip(reason)
    samples = [((tiny_input,), {}), ((torch.randn(7, 16),), {})]
    ctx = BuildContext(
        device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path, dynamic_axes={"args.0": {0: "batch"}}
    )
    before = global_torch_state()
    backend.build(tiny_mlp, samples, ctx)
    assert changed(before, global_torch_state()) == {}


def test_state_sees_a_config_dict_mutated_in_place():
    # The shape of the aoti leak: torch writes into the dict the config hands out, no setattr.
    from torch._inductor import config

    with config.patch({"aot_inductor.metadata": {}}):
        before = global_torch_state()
        config.aot_inductor.metadata["AOTI_DEVICE_KEY"] = "cpu"
        diff = changed(before, global_torch_state())
    assert diff == {"inductor.aot_inductor.metadata": ("{}", "{'AOTI_DEVICE_KEY': 'cpu'}")}


def test_state_sees_a_thread_count_change():
    threads = torch.get_num_threads()
    before = global_torch_state()
    torch.set_num_threads(threads + 1)
    try:
        diff = changed(before, global_torch_state())
    finally:
        torch.set_num_threads(threads)
    assert diff == {"torch.get_num_threads": (repr(threads), repr(threads + 1))}
