"""Paired A/A centring: what relative mode and the baseline-artifact A/B rest on.

Two claims per CPU backend, each on what it can be held to:

* **The pairing adds no bias.** One built object timed as both A and B must read ~1.00 (within 1%,
  or a CI containing 1). ABBA rounds alone read B faster (torchao-int8dq: 17 of 20,
  reports/paired_slot_bias.md); ABBA / BAAB pairs cancel that.
* **Two builds give no verdict** at the default 5% threshold, the one users get. Before
  onnxruntime sessions ran on one thread, two identical sessions came out 0.56-0.84x here
  (reports/ort_aa_bias.md): a bias of the build, which this catches. Two copies are not held to
  1%: copies of one model differ by where their code and weights landed in memory, and keep that
  difference for the life of the process (both orders agree). Separate loads of one AOTInductor
  package, identical bytes, read up to 1.2% apart here, and inductor builds up to 1.3%
  (reports/aa_placement.md); CI once read two AOTInductor builds 1.2% apart in both orders.
"""

from __future__ import annotations

import pytest
import torch

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import backend_names, get_backend
from aitune_ci.config import Policy
from aitune_ci.measure import MeasureConfig, measure_paired
from aitune_ci.verdict.latency import paired_test, pool_paired

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker

#: ~0.3 ms per call on this 2-core machine: ms-scale, and cheap to compile twice.
_MLP = (256, 1024, 256)
_BATCH = 64


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    a, b, c = _MLP
    return torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.GELU(), torch.nn.Linear(b, c)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in backend_names() if "cpu" in get_backend(n).device_types])
def test_the_pairing_is_centred_and_two_builds_give_no_verdict(name, tmp_path):
    backend = get_backend(name)
    ok, reason = backend.available("cpu")
    if not ok:
        pytest.skip(reason)
    model = _model()
    x = torch.randn(_BATCH, _MLP[0])
    built = []
    for side in ("base", "head"):  # what relative mode does: two independent builds, two workdirs
        ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path / side)
        (tmp_path / side).mkdir()
        built.append(backend.build(model, [((x,), {})], ctx))
    base, head = built
    config = MeasureConfig(max_total_s=3.0)
    # One reading can miss: about 5% of 95% CIs miss 1 by chance, over ~10 backends per run, and a
    # reading right after the builds sometimes sits ~2% off with a narrow CI (eager once read 0.981,
    # then 0.996). A bias of the pairing shows in every reading, so, as the plugin confirms a
    # suspected regression, up to two more readings are pooled with it before the 1% bound is applied.
    readings = [measure_paired(lambda: base(x), lambda: base(x), "cpu", config)]
    while not _centred(pool_paired(readings)) and len(readings) < 1 + Policy().max_confirmations:
        readings.append(measure_paired(lambda: base(x), lambda: base(x), "cpu", config))
    for one in readings:
        print(f"{name}, one object: {one.ratio:.4f} [{one.ci_low:.4f}, {one.ci_high:.4f}] over {one.n} rounds")
    assert _centred(pool_paired(readings)), (name, readings)
    two = measure_paired(lambda: base(x), lambda: head(x), "cpu", config)
    print(f"{name}, two builds: {two.ratio:.4f} [{two.ci_low:.4f}, {two.ci_high:.4f}] over {two.n} rounds")
    test = paired_test(two, Policy())
    assert not test.regressed and not test.improved, (name, two)


def _centred(estimate) -> bool:
    """No bias beyond 1%: the CI contains 1, or the ratio is within 1% of it."""
    return estimate.ci_low <= 1.0 <= estimate.ci_high or abs(estimate.ratio - 1.0) <= 0.01
