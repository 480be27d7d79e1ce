"""The ``aitune-ci`` command: demo, backends, and (as they land) run/report/comment/merge/inspect."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _cmd_backends(args: argparse.Namespace) -> int:
    import torch

    from aitune_ci.backends.registry import backends
    from aitune_ci.environment import environment_fingerprint
    from aitune_ci.report.terminal import format_table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        print(f"{device} on {_machine(environment_fingerprint(device))}")
    except Exception as exc:  # no such device here: the table below says why each backend cannot run
        print(f"{device}: not on this machine ({type(exc).__name__}: {exc})")
    rows = backends(device)
    table = [[r.name, "yes" if r.available else "no", r.precision, "AOT" if r.ahead_of_time else "JIT", r.reason] for r in rows]
    print(format_table(["backend", "available", "precision", "kind", "reason"], table))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from aitune_ci.atomic import atomic_write_text
    from aitune_ci.engine import tune
    from aitune_ci.examples import cnn_spec, encoder_spec
    from aitune_ci.measure import MeasureConfig
    from aitune_ci.report.terminal import format_tune_table

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from aitune_ci.backends.registry import backend_names

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
    header = f"# aitune-ci demo\n\nMeasured {when or 'at an unknown time'} on {_machine(result.environment)}.\n\n" if result else ""
    atomic_write_text(out / "demo.md", header + "\n\n".join(f"```\n{t}\n```" for t in tables) + "\n")
    print(f"wrote {out / 'demo.md'}")
    return 0


def _machine(env: dict) -> str:
    """``AMD EPYC (AVX2; avx2 fma), 2 of 2 cores, torch 2.13.0, Python 3.11.7``: CPU-bound numbers
    mean little without the CPU, and clouds give different CPUs one name."""
    where = env.get("gpu") or env.get("cpu") or "unknown"
    isa = "; ".join(str(x) for x in (env.get("cpu_capability"), env.get("cpu_features")) if x)
    if isa and not env.get("gpu"):
        where += f" ({isa})"
    return (
        f"{where}, {env.get('cpus_usable')} of {env.get('cpu_count')} cores, torch {env.get('torch')}, "
        f"Python {env.get('python')}"
    )


def _cmd_inspect(args: argparse.Namespace) -> int:
    from aitune_ci.store.artifact import artifact_sha256, format_manifest, inspect_artifact

    manifest = inspect_artifact(args.file, verify=not args.no_verify)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        print(format_manifest(manifest, sha256=artifact_sha256(args.file), path=args.file))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aitune-ci", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("backends", help="list every backend, whether it can run here, and why not")
    p.add_argument("--device", default=None, metavar="DEVICE", help="cpu or cuda. Default: cuda if present, else cpu.")
    p.set_defaults(func=_cmd_backends)

    p = sub.add_parser("demo", help="tune the bundled example models on this machine and write a report")
    p.add_argument("--out", default="reports/demo", metavar="DIR", help="where result JSON goes. Default: reports/demo")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="cpu, cuda or auto. Default: auto")
    p.add_argument(
        "--backends", type=lambda s: [b.strip() for b in s.split(",") if b.strip()], default=None, metavar="A,B",
        help="comma-separated backend names. Default: every registered backend (unavailable ones shown with why)",
    )
    p.add_argument(
        "--measure-seconds", type=float, default=4.0, metavar="S",
        help="measurement budget per model (interleaved rounds). Default: 4.0",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("inspect", help="print a .ait artifact's manifest: backend per module, inputs, environment, members")
    p.add_argument("file", metavar="FILE.ait", type=Path, help="the artifact to read (nothing is loaded or extracted)")
    p.add_argument("--json", action="store_true", help="print the validated manifest as JSON. Default: readable text")
    p.add_argument("--no-verify", action="store_true", help="skip streaming every member through sha256. Default: verify")
    p.set_defaults(func=_cmd_inspect)

    from aitune_ci.cli.report_commands import add_subcommands as add_report_subcommands

    add_report_subcommands(sub)  # report, comment, merge
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aitune_ci.errors import AituneCIError

    try:
        return int(args.func(args) or 0)
    except AituneCIError as exc:
        print(f"aitune-ci: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
