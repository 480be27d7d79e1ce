"""Regenerate the real-run fixture data of the report tests (minutes; not run by the test suite).

    python tests/data/generate_report_data.py [--device cuda] [--out DIR] [--phase run|history|all]

Everything runs through the real plugin and engine on the bundled demo model classes:

1. In a scratch project, ``pytest --aitune --aitune-update`` writes baselines: the CNN with
   ``--base-channels`` channels, the encoder with 2 layers and without onnxruntime.
2. After a "code change" (the CNN widened to ``--new-channels``, the encoder cut to 1 layer),
   ``pytest --aitune --aitune-shard i/2 --aitune-report report_shard<i>.json`` checks them in two
   shards. The run then holds real regressions and improvements (as far as the machine's noise
   lets them through), a NEW backend (onnxruntime on the encoder) and SKIPPED backends; the shards
   are merged into ``report_run.json``.
3. ``--history-runs`` short tunes of the CNN, one channel step wider each time, are appended with
   ``append_history`` to ``report_history.jsonl``: a real slow drift for the change-point detector.

The committed files came from an NVIDIA H100 (see ``environment`` inside them).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

CONFTEST = """
import os

import torch

import aitune_ci as ait
from aitune_ci.examples import SmallCNN, SmallEncoder

BACKENDS = os.environ["BACKENDS"].split(",")
DEVICE = os.environ["DEVICE"]


@ait.tune_fixture
def tune_small_cnn():
    torch.manual_seed(0)
    model = SmallCNN(channels=int(os.environ["CNN_CHANNELS"])).eval()
    return ait.TuneSpec(
        model=model, samples=[torch.randn(8, 3, 64, 64)], backends=BACKENDS, device=DEVICE,
        strategy="max-throughput", name="tune_small_cnn",
    )


@ait.tune_fixture
def tune_small_encoder():
    torch.manual_seed(0)
    model = SmallEncoder(layers=int(os.environ["ENC_LAYERS"])).eval()
    drop = os.environ.get("ENC_DROP", "")
    return ait.TuneSpec(
        model=model, samples=[torch.randint(0, 1000, (4, 64))], backends=[b for b in BACKENDS if b != drop],
        device=DEVICE, name="tune_small_encoder",
    )
"""


def _plugin_args() -> list[str]:
    """``-p aitune_ci.plugin`` when aitune-ci is not installed (its pytest11 entry point is missing)."""
    installed = any(ep.name == "aitune" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "aitune_ci.plugin"]


def _pytest(project: Path, env: dict[str, str], seconds: float, *args: str) -> None:
    cmd = [sys.executable, "-m", "pytest", *_plugin_args(), "-p", "no:cacheprovider", "-q", "--aitune"]
    cmd += ["--aitune-measure-seconds", str(seconds), *args]
    print("$", " ".join(cmd), flush=True)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    subprocess.run(cmd, cwd=project, env={**os.environ, "PYTHONPATH": pythonpath, **env}, check=False)


def run_phase(args: argparse.Namespace) -> None:
    common = {"DEVICE": args.device, "BACKENDS": args.backends}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = ''\n")
        (project / "test_placeholder.py").write_text("def test_placeholder():\n    pass\n")
        base = {**common, "CNN_CHANNELS": str(args.base_channels), "ENC_LAYERS": "2", "ENC_DROP": "onnxruntime"}
        _pytest(project, base, args.measure_seconds, "--aitune-update")
        for i in (1, 2):
            _pytest(
                project,
                {**common, "CNN_CHANNELS": str(args.new_channels), "ENC_LAYERS": "1"},
                args.measure_seconds,
                f"--aitune-shard={i}/2",
                f"--aitune-report={args.out / f'report_shard{i}.json'}",
            )
    sys.path.insert(0, str(ROOT))
    from aitune_ci.store.runs import load_run, merge_runs

    shards = [args.out / "report_shard1.json", args.out / "report_shard2.json"]
    merged = merge_runs([load_run(p) for p in shards], sources=[p.name for p in shards])
    (args.out / "report_run.json").write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")


def history_phase(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from aitune_ci.engine import tune
    from aitune_ci.examples import SmallCNN
    from aitune_ci.measure import MeasureConfig
    from aitune_ci.spec import TuneSpec
    from aitune_ci.store.history import append_history, current_commit

    commit = current_commit(ROOT) or args.commit
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        for night in range(args.history_runs):
            channels = args.base_channels + args.history_step * night
            torch.manual_seed(0)
            spec = TuneSpec(
                model=SmallCNN(channels=channels).eval(),
                samples=[torch.randn(8, 3, 64, 64)],
                backends=args.history_backends.split(","),
                device=args.device,
                name="tune_small_cnn",
            )
            result = tune(spec, measure_config=MeasureConfig(max_total_s=args.measure_seconds), progress=None)
            path = append_history(tmp, result, commit)
            medians = {b.backend: b.latency.median_ms for b in result.backends if b.latency}
            print(
                f"history run {night}: {channels} channels, " + ", ".join(f"{k} {v:.4g} ms" for k, v in medians.items())
            )
        assert path is not None
        (args.out / "report_history.jsonl").write_text(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--phase", choices=("run", "history", "all"), default="all")
    parser.add_argument("--backends", default="eager,inductor,torchao-int8wo,onnxruntime,tensorrt,eager-bf16")
    parser.add_argument("--history-backends", default="eager,inductor,onnxruntime")
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--new-channels", type=int, default=48)
    parser.add_argument("--history-runs", type=int, default=12)
    parser.add_argument("--history-step", type=int, default=1)
    parser.add_argument("--measure-seconds", type=float, default=2.0)
    parser.add_argument("--commit", default=None, help="commit to record when git is not available")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".aitune-cache" / "inductor"))
    if args.phase in ("run", "all"):
        run_phase(args)
    if args.phase in ("history", "all"):
        history_phase(args)
    print("wrote", *sorted(p.name for p in args.out.glob("report_*")))


if __name__ == "__main__":
    main()
