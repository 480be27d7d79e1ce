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

PROBE = """
import json, sys
from pathlib import Path
from aitune_ci.isa_probe import answer_isa_probe
from torch._inductor import cpu_vec_isa

probe = answer_isa_probe(Path(sys.argv[1])) if sys.argv[1] != "-" else None
picked = cpu_vec_isa.pick_vec_isa()
print(json.dumps({
    "probe": probe and {"answered": probe.answered, "probed": probe.probed, "picked": probe.picked},
    "valid": [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()],
    "picked": str(picked),
    "flags": picked.build_arch_flags() if picked else "",
    "again": answer_isa_probe(Path(sys.argv[1])) if sys.argv[1] != "-" else None,
}))
"""


def _probe(folder: Path | str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_takes_the_answers_from_the_cache_and_picks_what_torch_picks(tmp_path):
    first = _probe(tmp_path)
    second = _probe(tmp_path)
    torch_own = _probe("-")  # no aitune: torch probes as it always does

    assert first["probe"]["probed"] > 0 and first["probe"]["answered"] == 0
    assert second["probe"] == {"answered": first["probe"]["probed"], "probed": 0, "picked": first["picked"]}
    for run in (first, second):
        assert {k: run[k] for k in ("valid", "picked", "flags")} == {
            k: torch_own[k] for k in ("valid", "picked", "flags")
        }
        assert run["again"] is None  # once per process
    stored = json.loads((tmp_path / CACHE_FILE).read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and len(stored["works"]) == first["probe"]["probed"]


def test_a_corrupt_answer_file_is_probed_again_and_rewritten(tmp_path):
    (tmp_path / CACHE_FILE).write_text("{not json")

    run = _probe(tmp_path)

    assert run["probe"]["answered"] == 0 and run["probe"]["probed"] > 0
    assert json.loads((tmp_path / CACHE_FILE).read_text())["schema_version"] == SCHEMA_VERSION


def test_a_check_that_fails_is_not_kept(tmp_path):
    # A compiler that answers for its version but builds nothing: every check fails, inductor
    # vectorises nothing, and no failure is kept (the next process probes again, in case it was a
    # passing one). A fresh inductor cache: the shared one holds libraries a working g++ built.
    broken = tmp_path / "no-cxx"
    broken.write_text('#!/bin/sh\ncase "$*" in *.cpp*) exit 1;; esac\nexec g++ "$@"\n')
    broken.chmod(0o755)

    run = _probe(tmp_path, CXX=str(broken), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))

    assert run["probe"]["probed"] > 0 and run["valid"] == [] and run["picked"] == "INVALID_VEC_ISA"
    assert not (tmp_path / CACHE_FILE).exists()


def test_answers_kept_under_other_keys_are_not_taken(tmp_path):
    _probe(tmp_path)
    stored = json.loads((tmp_path / CACHE_FILE).read_text())
    (tmp_path / CACHE_FILE).write_text(json.dumps({**stored, "works": {"0" * 64: True}}))

    run = _probe(tmp_path)

    assert run["probe"]["answered"] == 0 and run["probe"]["probed"] > 0
