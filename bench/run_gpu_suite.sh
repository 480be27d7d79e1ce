#!/usr/bin/env bash
# One call on the lent GPU machine: the GPU tests (`pytest -m gpu`) and bench/gpu_backends.py.
# Carries torchao as a wheel in .whl/ (the GPU image has none). Results go to $OUT.
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-reports/h100-run}
mkdir -p "$OUT/h100"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 - <<'PY' 2>&1 | tee "$OUT/gpu-tests.log"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for m in ("torchao", "transformers", "torchvision", "onnxruntime", "onnxscript", "pynvml", "safetensors", "filelock", "jinja2", "requests"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "ok"))
    except Exception as exc:
        print(m, "MISSING", type(exc).__name__, exc)
PY
B=eager,eager-fp16,eager-bf16,cudagraphs,inductor,inductor-reduce-overhead,torchao-int8wo,torchao-int8dq,torchao-fp8,onnxruntime,torch-tensorrt,tensorrt
run_bench() { timeout "$1" python3 bench/gpu_backends.py --models "$2" --backends "$3" --out "$OUT/h100" --measure-seconds 2 \
  2>&1 | grep -v "^\[aitune\] \(round\|warm-up\|iterations\)" | tail -40; }
# Results of an earlier phase (committed under reports/h100) are summarized together with this one's.
cp -n reports/h100/model_*.json "$OUT/h100/" 2>/dev/null || true
case "${1:-1}" in
  1)
    timeout 230 python3 -m pytest -m gpu tests/gpu tests/test_backend_*.py tests/test_measure.py \
      -p no:cacheprovider -q -rs 2>&1 | tail -60 | tee -a "$OUT/gpu-tests.log"
    run_bench 110 gpt2 "$B,inductor-max-autotune"
    run_bench 150 resnet50 "$B,aoti"
    ;;
  2)
    run_bench 120 bert "$B"
    run_bench 200 composite "$B"
    ;;
esac
python3 bench/gpu_backends.py --summarize --out "$OUT/h100" > /dev/null
ls -la "$OUT" "$OUT/h100"
