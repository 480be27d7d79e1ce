"""The ``aitune-ci backends`` and ``demo`` commands: what this machine can run, and how fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

from aitune_ci.atomic import atomic_write_text
from aitune_ci.report.terminal import format_table, format_tune_table

__all__ = ["add_subcommands", "cmd_backends", "cmd_demo", "describe_machine"]


def add_subcommands(sub: Any) -> None:
    """Add ``backends`` and ``demo`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("backends", help="list every backend, whether it can run here, and why not")
    p.add_argument("--device", default=None, metavar="DEVICE", help="cpu or cuda. Default: cuda if present, else cpu.")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("demo", help="tune the bundled example models on this machine and write a report")
    p.add_argument(
        "--out",
        default="aitune-demo",
        metavar="DIR",
        help="where result JSON and demo.md go (git-ignored, so a fresh clone stays clean). Default: aitune-demo",
    )
    p.add_argument("--device", default="auto", metavar="DEVICE", help="cpu, cuda or auto. Default: auto")
    p.add_argument(
        "--backends",
        type=_names,
        default=None,
        metavar="A,B",
        help="comma-separated backend names. Default: every registered backend (unavailable ones shown with why)",
    )
    p.add_argument(
        "--measure-seconds",
        type=float,
        default=4.0,
        metavar="S",
        help="measurement budget per model (interleaved rounds). Default: 4.0",
    )
    p.set_defaults(func=cmd_demo)


def cmd_backends(args: argparse.Namespace) -> int:
    """Print the machine, then one row per registered backend: available here or not, and why."""
    import torch

    # lazy: these and torch load only when a command needs them, so `aitune-ci --help` stays instant
    from aitune_ci.backends.registry import backends, fingerprint

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        print(f"{device} on {describe_machine(fingerprint(device))}")
    except Exception as exc:  # no such device here: the table below says why each backend cannot run
        print(f"{device}: not on this machine ({type(exc).__name__}: {exc})")
    rows = backends(device)
    table = [
        [r.name, "yes" if r.available else "no", r.precision, "AOT" if r.ahead_of_time else "JIT", r.reason]
        for r in rows
    ]
    print(format_table(["backend", "available", "precision", "kind", "reason"], table))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Tune the bundled example models; write each result's JSON and a markdown page of the tables."""
    import torch

    # lazy: these and torch load only when a command needs them, so `aitune-ci --help` stays instant
    from aitune_ci.backends.registry import backend_names
    from aitune_ci.engine import tune
    from aitune_ci.examples import cnn_spec, encoder_spec
    from aitune_ci.measure import MeasureConfig

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Every registered backend, so the ones that cannot run here show up with their reason.
    names = args.backends or backend_names()
    specs = [cnn_spec(backends=names, device=args.device), encoder_spec(backends=names, device=args.device)]
    config = MeasureConfig(max_total_s=args.measure_seconds)
    tables = []
    result = None
    for spec in specs:
        result = tune(spec, measure_config=config)
        table = format_tune_table(result)
        tables.append(table)
        print("\n" + table + "\n", flush=True)
        path = out / f"{result.name}.json"
        atomic_write_text(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    when = result.created_at if result else ""
    header = (
        f"# aitune-ci demo\n\nMeasured {when or 'at an unknown time'} on {describe_machine(result.environment)}.\n\n"
        if result
        else ""
    )
    atomic_write_text(out / "demo.md", header + "\n\n".join(f"```\n{t}\n```" for t in tables) + "\n")
    print(f"wrote {out / 'demo.md'}")
    return 0


def describe_machine(env: Mapping[str, Any]) -> str:
    """``AMD EPYC (AVX2; avx2 fma), 2 of 2 cores, torch 2.13.0, Python 3.11.7`` from an environment fingerprint.

    CPU-bound numbers mean little without the CPU, and clouds give different CPUs one name, so a
    CPU is shown with its instruction set.
    """
    where = env.get("gpu") or env.get("cpu") or "unknown"
    isa = "; ".join(str(x) for x in (env.get("cpu_capability"), env.get("cpu_features")) if x)
    if isa and not env.get("gpu"):
        where += f" ({isa})"
    return (
        f"{where}, {env.get('cpus_usable')} of {env.get('cpu_count')} cores, torch {env.get('torch')}, "
        f"Python {env.get('python')}"
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]
