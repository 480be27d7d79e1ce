"""Inductor's CPU ISA probe is answered from the runner's cache after its first run, and the answers
are the ones torch's own probe gives (``aitune_ci.isa_probe``).

Each case runs in a fresh Python: inductor keeps its answers for the life of a process. The test
libraries inductor builds stay in the suite's shared inductor cache; only the answer file is the test's.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from aitune_ci.isa_probe import CACHE_FILE, SCHEMA_VERSION

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="the probe this saves checks x86 vector ISAs"
)

#: argv: the answer folder ("-": no aitune, torch probes as always), a compiler or "-", and how:
#: "setup" is the engine's own call, the one-time set-up for a CPU build that compiles C++, which
#: also compiles a tiny function on the CPU (that compile must not run the probe first); "probe"
#: calls the probe alone (no compile: cheaper).
PROBE = """
import json, sys
from pathlib import Path
import torch
from aitune_ci import compile_warmup, isa_probe
from torch._inductor import cpu_vec_isa

folder, compiler, how = sys.argv[1], (None if sys.argv[2] == "-" else sys.argv[2]), sys.argv[3]
isa_probe._inductor_cache_dir = lambda: folder

def ask():
    if folder == "-":
        return None
    if how == "probe":
        return isa_probe.answer_isa_probe(compiler=compiler)
    setup = compile_warmup.warm_compiler(torch.device("cpu"), cxx=True, compiler=compiler)
    return setup and setup.isa

probe = ask()
picked = cpu_vec_isa.pick_vec_isa()
print(json.dumps({
    "probe": probe and {"answered": probe.answered, "probed": probe.probed, "picked": probe.picked},
    "valid": [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()],
    "picked": str(picked),
    "flags": picked.build_arch_flags() if picked else "",
    "again": folder != "-" and ask() is not None,
}))
"""


def _probe(folder: Path | str, compiler: str = "-", how: str = "probe", **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder), compiler, how],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_takes_the_answers_from_the_cache_and_picks_what_torch_picks(tmp_path):
    # An answer kept under another key (another machine, compiler or torch) answers nothing, and stays.
    foreign = "0" * 64
    (tmp_path / CACHE_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "works": {foreign: True}}))

    first = _probe(tmp_path, how="setup")
    second = _probe(tmp_path, how="setup")
    torch_own = _probe("-")  # no aitune: torch probes as it always does

    assert first["probe"]["probed"] > 0 and first["probe"]["answered"] == 0
    assert second["probe"] == {"answered": first["probe"]["probed"], "probed": 0, "picked": first["picked"]}
    chosen = ("valid", "picked", "flags")
    for run in (first, second):
        assert {k: run[k] for k in chosen} == {k: torch_own[k] for k in chosen}
        assert run["again"] is False  # once per process
    stored = json.loads((tmp_path / CACHE_FILE).read_text())
    assert stored["schema_version"] == SCHEMA_VERSION
    assert len(stored["works"]) == first["probe"]["probed"] + 1 and stored["works"][foreign] is True


def test_a_corrupt_answer_file_is_probed_again_and_rewritten(tmp_path):
    (tmp_path / CACHE_FILE).write_text("{not json")

    run = _probe(tmp_path)

    assert run["probe"]["answered"] == 0 and run["probe"]["probed"] > 0
    assert json.loads((tmp_path / CACHE_FILE).read_text())["schema_version"] == SCHEMA_VERSION


def test_the_probe_checks_with_the_builds_compiler_and_keeps_no_failure(tmp_path):
    # The build's compiler (AOTInductor's may not be torch's default) answers for its version but
    # builds nothing: every check fails, inductor vectorises nothing, and no failure is kept (the next
    # process probes again, in case it was a passing one). A fresh inductor cache: the shared one
    # holds libraries a working g++ built.
    broken = tmp_path / "no-cxx"
    broken.write_text('#!/bin/sh\ncase "$*" in *.cpp*) exit 1;; esac\nexec g++ "$@"\n')
    broken.chmod(0o755)

    run = _probe(tmp_path, str(broken), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))

    assert run["probe"]["probed"] > 0 and run["valid"] == [] and run["picked"] == "INVALID_VEC_ISA"
    assert not (tmp_path / CACHE_FILE).exists()
