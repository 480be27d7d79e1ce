"""Tune real models on a GPU across every backend; write reports/h100/backends.{json,md}.

Models (random weights, built from configs: nothing is downloaded):
  resnet50   torchvision resnet50, batch 32, 3x224x224
  bert       transformers BertModel (base config), batch 8, sequence 128
  gpt2       transformers GPT-2 small, one decode step after a 128-token prompt (KV cache)
  composite  resnet18 trunk (backbone) + 2-layer transformer encoder (head), modules=[backbone, head]

Run one or several models per invocation (each result is kept in --out), then --summarize.
  python bench/gpu_backends.py --models resnet50,bert --out reports/h100
  python bench/gpu_backends.py --summarize --out reports/h100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.engine import MIXED, tune  # noqa: E402
from aitune_ci.measure import MeasureConfig  # noqa: E402
from aitune_ci.report.terminal import format_tune_table  # noqa: E402
from aitune_ci.result import TuneResult  # noqa: E402
from aitune_ci.spec import TuneSpec  # noqa: E402

SCHEMA_VERSION = 1
DEVICE = "cuda"  # --device cpu gives a quick smoke run of this script on a machine without a GPU
GPU_BACKENDS = [
    "eager", "eager-fp16", "eager-bf16", "cudagraphs", "inductor", "inductor-max-autotune",
    "inductor-reduce-overhead", "aoti", "torchao-int8wo", "torchao-int8dq", "torchao-fp8",
    "onnxruntime", "torch-tensorrt", "tensorrt",
]


def resnet50_spec(backends: list[str]) -> TuneSpec:
    import torchvision

    torch.manual_seed(0)
    return TuneSpec(model=torchvision.models.resnet50(weights=None).eval(), samples=[torch.randn(32, 3, 224, 224)],
                    backends=backends, device=DEVICE, name="resnet50_bs32")


def bert_spec(backends: list[str]) -> TuneSpec:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(attn_implementation="eager")
    model = BertModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (8, 128))
    return TuneSpec(model=model, samples=[{"input_ids": ids, "attention_mask": torch.ones_like(ids)}],
                    backends=backends, device=DEVICE, name="bert_base_bs8_seq128")


def gpt2_spec(backends: list[str]) -> TuneSpec:
    from aitune_ci.examples.llm import gpt2_decode_spec

    return gpt2_decode_spec(backends=backends, past_lengths=(128,), device=DEVICE,
                            model_kwargs=dict(n_layer=12, n_embd=768, n_head=12, vocab=50257, positions=1024))


class Composite(nn.Module):
    """A CNN backbone feeding a transformer head: the case for a different backend per part."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        trunk = torchvision.models.resnet18(weights=None)
        self.backbone = nn.Sequential(*list(trunk.children())[:-2])  # -> (B, 512, 7, 7)
        layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True, dropout=0.0)
        self.head = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.classifier = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(x).flatten(2).transpose(1, 2)
        return self.classifier(self.head(tokens).mean(1))


def composite_spec(backends: list[str]) -> TuneSpec:
    torch.manual_seed(0)
    return TuneSpec(model=Composite().eval(), samples=[torch.randn(16, 3, 224, 224)], backends=backends,
                    modules=["backbone", "head"], device=DEVICE, name="composite_cnn_transformer")


MODELS = {"resnet50": resnet50_spec, "bert": bert_spec, "gpt2": gpt2_spec, "composite": composite_spec}


def run(models: list[str], backends: list[str], out: Path, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in models:
        t0 = time.perf_counter()
        spec = MODELS[name](backends)
        result = tune(spec, measure_config=MeasureConfig(max_total_s=seconds, target_round_s=0.05))
        print("\n" + format_tune_table(result) + "\n", flush=True)
        data = result.to_json()
        data["bench_wall_s"] = round(time.perf_counter() - t0, 1)
        atomic_write_text(out / f"model_{name}.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
        del result
        torch.cuda.empty_cache()


def _fmt(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:.3f}{unit}" if x < 10 else f"{x:.1f}{unit}"


def summarize(out: Path) -> None:
    results = []
    path_of: dict[str, Path] = {}
    for path in sorted(out.glob("model_*.json")):
        data = json.loads(path.read_text())
        wall = data.pop("bench_wall_s", None)
        result = TuneResult.from_json(data, path)
        path_of[result.name] = path
        results.append((result, wall))
    lines = ["# GPU backends (bench/gpu_backends.py)", ""]
    env = dict(results[0][0].environment) if results else {}
    lines.append(f"Machine: {env.get('gpu')} · driver {env.get('driver')} · torch {env.get('torch')} · CUDA {env.get('cuda')} · "
                 f"torchao {env.get('torchao')} · onnxruntime {env.get('onnxruntime')}")
    lines.append("")
    summary = []
    for result, wall in results:
        eager = result.backend("eager")
        eager_ms = eager.latency.median_ms if eager and eager.latency else None
        created = json.loads(path_of[result.name].read_text()).get("created_at", "?")
        lines += [f"## {result.name}", "", f"measured {created} · winner: **{result.winner}** — {result.winner_reason} "
                  f"(tune wall time {wall} s)", ""]
        if result.module_choice:
            lines += [f"per-module choice: {dict(result.module_choice)}", ""]
        lines += ["| backend | module | status | median ms | 95% CI | vs eager | build s | accuracy / reason |", "|---|---|---|---|---|---|---|---|"]
        for r in result.backends:
            lat = r.latency
            speed = f"{eager_ms / lat.median_ms:.2f}x" if lat and eager_ms and not r.module else "-"
            acc = r.accuracy.summary() if r.accuracy and r.status in ("ok", "inaccurate") else (r.error or "-").splitlines()[0][:90]
            lines.append(
                f"| {'**' + r.backend + '**' if r.selected else r.backend} | {r.module or '-'} | {r.status} | "
                f"{_fmt(lat.median_ms if lat else None)} | "
                f"{'[' + _fmt(lat.ci_low_ms) + ', ' + _fmt(lat.ci_high_ms) + ']' if lat else '-'} | {speed} | "
                f"{_fmt(r.build_s)} | {acc.replace('|', '/')} |"
            )
        throttled = [k for k, v in result.gpu_health.items() if v.get("throttled")]
        lines += ["", f"GPU health: {len(result.gpu_health)} blocks monitored, throttled: {throttled or 'none'}", ""]
        mixed = result.backend(MIXED)
        if mixed is not None and mixed.latency:
            singles = [r for r in result.backends if not r.module and r.backend != MIXED and r.usable]
            best = min(singles, key=lambda r: r.latency.median_ms) if singles else None
            if best:
                gain = best.latency.median_ms / mixed.latency.median_ms
                lines += [f"mixed vs best single whole-model backend ({best.backend}): {gain:.2f}x "
                          f"({'meets' if gain >= 1.1 else 'misses'} the 1.1x goal)", ""]
                parts = [r for r in result.backends if r.module and r.selected and r.latency]
                if parts:
                    total = sum(r.latency.median_ms for r in parts)
                    each = " + ".join(f"{r.module}/{r.backend} {r.latency.median_ms:.3f}" for r in parts)
                    lines += [f"the chosen parts on their own: {each} = {total:.3f} ms, against "
                              f"{best.latency.median_ms:.3f} ms for {best.backend} on the whole model "
                              f"({best.latency.median_ms / total:.2f}x at best, before the glue between them)", ""]
                summary.append({"model": result.name, "mixed_gain_vs_best_single": round(gain, 3), "best_single": best.backend})
    payload = {
        "schema_version": SCHEMA_VERSION,
        "environment": env,
        "results": [r.to_json() for r, _ in results],
        "composite": summary,
    }
    atomic_write_text(out / "backends.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "backends.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,bert,gpt2,composite", help="comma-separated: " + ",".join(MODELS))
    p.add_argument("--backends", default=",".join(GPU_BACKENDS), help="comma-separated backend names")
    p.add_argument("--out", default="reports/h100", help="output folder. Default: reports/h100")
    p.add_argument("--measure-seconds", type=float, default=3.0, help="measurement budget per model. Default: 3")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run. Default: cuda")
    p.add_argument("--summarize", action="store_true", help="only combine model_*.json into backends.{json,md}")
    args = p.parse_args()
    out = Path(args.out)
    global DEVICE
    DEVICE = args.device
    if not args.summarize:
        if DEVICE == "cuda" and not torch.cuda.is_available():
            print("bench/gpu_backends.py needs a CUDA GPU", file=sys.stderr)
            return 2
        run([m for m in args.models.split(",") if m], [b for b in args.backends.split(",") if b], out, args.measure_seconds)
    summarize(out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
