"""One xdist worker per GPU: assignment, refusal, and real workers pinned to different GPUs."""

from __future__ import annotations

import json
import os
import sys

import pytest

from aitune_ci.gpus import (
    PinningError,
    assign_gpu,
    partition_cpus,
    physical_gpu,
    pin_worker,
    pin_worker_cpus,
    visible_gpus,
    worker_index,
)


def test_worker_ids_map_to_indexes():
    assert worker_index("gw0") == 0 and worker_index("gw11") == 11
    assert worker_index(None) is None and worker_index("master") is None


def test_each_worker_gets_its_own_gpu_in_order():
    gpus = ["0", "1", "2", "3"]
    assert [assign_gpu(i, 4, gpus) for i in range(4)] == gpus


def test_fewer_workers_than_gpus_use_the_first_ones():
    assert [assign_gpu(i, 2, ["4", "5", "6"]) for i in range(2)] == ["4", "5"]


def test_more_workers_than_gpus_is_refused_with_the_fix():
    with pytest.raises(
        PinningError, match=r"3 pytest-xdist workers but 2 GPU\(s\).*Use `-n 2`.*--aitune-oversubscribe"
    ):
        assign_gpu(0, 3, ["0", "1"])


def test_oversubscribing_on_purpose_wraps_around():
    assert [assign_gpu(i, 3, ["0", "1"], oversubscribe=True) for i in range(3)] == ["0", "1", "0"]


def test_no_gpus_means_no_pinning():
    assert assign_gpu(0, 8, []) is None


def test_visible_gpus_respect_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({}, detected_count=2) == ["0", "1"]


def test_pinning_sets_the_physical_gpu_for_the_worker():
    env = {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert pin_worker("gw1", 2, environ=env) == "5"
    assert env == {"CUDA_VISIBLE_DEVICES": "5", "AITUNE_PHYSICAL_GPU": "5"}
    assert pin_worker(None, 2, environ=dict(env)) is None


def test_physical_gpu_names_the_hosts_gpu_not_the_renumbered_one():
    assert physical_gpu(0, {"AITUNE_PHYSICAL_GPU": "3", "CUDA_VISIBLE_DEVICES": "3"}) == "3"  # a pinned worker
    assert physical_gpu(1, {"CUDA_VISIBLE_DEVICES": "2,5"}) == "5"  # cuda:1 is the host's GPU 5
    assert physical_gpu(0, {"CUDA_VISIBLE_DEVICES": "GPU-8f3a"}) == "GPU-8f3a"  # a UUID stays a UUID
    assert physical_gpu(1, {}) == "1"  # nothing renumbers: the visible index is the host's


# A 2-socket-style numbering: CPU i and i+16 are the two hardware threads of core i.
HYPERTHREADED = {cpu: frozenset({cpu % 16, cpu % 16 + 16}) for cpu in range(32)}


def test_workers_get_disjoint_whole_cores():
    shares = [partition_cpus(range(32), HYPERTHREADED, 2, i) for i in range(2)]
    assert shares[0] == [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23]
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(range(32))
    for share in shares:  # no core split between workers
        assert all(HYPERTHREADED[cpu] <= set(share) for cpu in share)


def test_uneven_and_scarce_cores():
    assert [partition_cpus(range(5), {}, 2, i) for i in range(2)] == [[0, 1, 2], [3, 4]]
    assert [partition_cpus([0, 1], {}, 2, i) for i in range(2)] == [[0], [1]]
    assert [partition_cpus([3], {}, 2, i) for i in range(2)] == [[3], [3]]  # one core: shared, not empty
    assert partition_cpus([0, 1, 2, 3], {0: frozenset({0, 8})}, 2, 0) == [0, 1]  # siblings outside the mask ignored


def test_a_worker_replacing_a_crashed_one_is_pinned_too(monkeypatch):
    # xdist starts gw2 when gw0 or gw1 of 2 dies; its share must not be empty (sched_setaffinity([]) raises)
    import aitune_ci.gpus as gpus

    pinned = []
    monkeypatch.setattr(gpus.os, "sched_setaffinity", lambda pid, cpus: pinned.append(list(cpus)), raising=False)
    monkeypatch.setattr(gpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(gpus, "_thread_siblings", lambda cpus: {})
    assert pin_worker_cpus("gw2", 2, environ={}) == [0, 1]
    assert pinned == [[0, 1]]


def test_no_cpu_pinning_outside_xdist_or_when_turned_off():
    assert pin_worker_cpus(None, 2) is None
    assert pin_worker_cpus("gw0", 1) is None
    assert pin_worker_cpus("gw0", 2, environ={"AITUNE_CPU_PINNING": "0"}) is None


CONFTEST = """
import json, os
import pytest

def pytest_collection_finish(session):
    wid = os.environ.get("PYTEST_XDIST_WORKER")
    if wid:
        with open(f"pinned-{wid}.json", "w") as f:
            json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "physical": os.environ.get("AITUNE_PHYSICAL_GPU"),
                       "cpus": sorted(os.sched_getaffinity(0))}, f)
"""


def _run(pytester, *args):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a="def test_a():\n    pass\n", test_b="def test_b():\n    pass\n")
    return pytester.runpytest_subprocess("--aitune", "-p", "xdist", *args)


def test_real_xdist_workers_are_pinned_to_different_gpus(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = _run(pytester, "-n", "2")
    assert result.ret == 0, result.stdout.str()
    pinned = sorted(json.loads(p.read_text())["physical"] for p in pytester.path.glob("pinned-gw*.json"))
    assert pinned == ["0", "1"]
    # and each worker runs on its own share of this machine's CPUs
    cpus = [set(json.loads(p.read_text())["cpus"]) for p in sorted(pytester.path.glob("pinned-gw*.json"))]
    everything = os.sched_getaffinity(0)
    from aitune_ci.gpus import _thread_siblings

    siblings = _thread_siblings(sorted(everything))
    physical_cores = {frozenset(siblings.get(cpu, {cpu}) & everything) for cpu in everything}
    if len(physical_cores) >= 2:  # one hyper-threaded core is shared, not split
        assert cpus[0] and cpus[1] and not cpus[0] & cpus[1] and cpus[0] | cpus[1] == everything


def test_cpu_pinning_can_be_turned_off(pytester, monkeypatch):
    monkeypatch.setenv("AITUNE_CPU_PINNING", "0")
    result = _run(pytester, "-n", "2")
    assert result.ret == 0, result.stdout.str()
    cpus = [set(json.loads(p.read_text())["cpus"]) for p in pytester.path.glob("pinned-gw*.json")]
    assert cpus == [os.sched_getaffinity(0)] * 2


def test_more_workers_than_gpus_is_a_usage_error_naming_the_fix(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = _run(pytester, "-n", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*3 pytest-xdist workers but 2 GPU(s)*--aitune-oversubscribe*"])


def test_oversubscribe_lets_the_run_go_on(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = _run(pytester, "-n", "3", "--aitune-oversubscribe")
    assert result.ret == 0, result.stdout.str()
    assert len(list(pytester.path.glob("pinned-gw*.json"))) == 3


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX only")
