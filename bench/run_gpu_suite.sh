#!/usr/bin/env bash
# GPU work for one call on the lent machine: `bash bench/run_gpu_suite.sh STEP...` with steps
#   tests      pytest -m gpu (GPU tests plus the gpu-marked backend/measure tests), one call
#   aoti       bench/aoti_loader_diag.py (why AOTInductor packages crash on load there)
#   tests-aoti both at once on a 2-GPU machine: the tests on GPU 1, the AOTI diagnosis on GPU 0
#   multigpu   bench/multigpu.py: the example suite on one GPU and with one xdist worker per GPU
#   aoti-check the C++ compiler facts, the aoti CUDA test, and resnet50 with eager/inductor/aoti
#   aoti-facts the C++ compiler facts alone (what torch picks, what aoti builds with, and why)
#   diag       bench/mixed_overhead.py (the composite's mixed model against its parts)
#   gpt2 resnet50 bert composite   bench/gpu_backends.py for that model
#   artifact   bench/artifact_load.py --device cuda --model resnet50 (inductor cache bytes; ARTIFACT_BACKENDS=eager,inductor,aoti adds aoti)
# Carries torchao as a wheel in .whl/ (`make gpu-wheels`; the GPU image has none). Results are written to a work folder
# named after the GPU (h200, h100-80gb-hbm3: figures from one GPU must not be filed under another) and
# come back as one archive, $OUT/<gpu>.tgz (the device tool returns a handful of files per call).
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
FINAL=${OUT:-reports/gpu-run}
# "NVIDIA H200" -> h200, "NVIDIA H100 80GB HBM3" -> h100-80gb-hbm3: the whole name, so no two GPUs share one
GPU=$(python3 "$(dirname "$0")/_gpu_folder.py" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)")
GPU=${GPU:-gpu}
OUT=$(mktemp -d)
mkdir -p "$OUT/$GPU" "$FINAL"
echo "results for $GPU"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 - <<'PY' 2>&1 | tee -a "$OUT/$GPU/versions.log"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for m in ("torchao", "transformers", "torchvision", "onnxruntime", "onnxscript", "pynvml", "safetensors", "filelock", "jinja2", "requests"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "ok"))
    except Exception as exc:
        print(m, "MISSING", type(exc).__name__, exc)
PY
B=eager,eager-fp16,eager-bf16,cudagraphs,inductor,inductor-reduce-overhead,torchao-int8wo,torchao-int8dq,torchao-fp8,onnxruntime,torch-tensorrt,tensorrt
run_bench() { timeout "$1" python3 bench/gpu_backends.py --models "$2" --backends "$3" --out "$OUT/$GPU" --measure-seconds 2 \
  2>&1 | grep -v "^\[aitune\] \(round\|warm-up\|iterations\)" | tail -40; }
# Results of an earlier call on this GPU (committed under reports/<gpu>) are summarized with this one's.
cp -n "reports/$GPU"/model_*.json "$OUT/$GPU/" 2>/dev/null || true
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case "$step" in
    tests)
      # One pytest -m gpu call for every GPU test; it has needed 200-300 s, so give it a call of its own.
      timeout "${GPU_TESTS_TIMEOUT:-450}" python3 -m pytest -m gpu tests/gpu tests/test_backend_*.py tests/test_measure.py \
        -p no:cacheprovider -p no:logging -q -rfEsx --tb=short --durations=10 > "$OUT/$GPU/gpu-tests.log" 2>&1
      tail -40 "$OUT/$GPU/gpu-tests.log" ;;
    aoti)
      timeout 300 python3 bench/aoti_loader_diag.py --devices cuda,cpu --out "$OUT/$GPU" 2>&1 | grep "^{" | cut -c1-600 ;;
    tests-aoti)
      # The diagnosis measures nothing, so it may share the machine with the tests (each on its own GPU).
      CUDA_VISIBLE_DEVICES=0 timeout 440 python3 bench/aoti_loader_diag.py --devices cuda,cpu --out "$OUT/$GPU" \
        > "$OUT/$GPU/aoti_diag.log" 2>&1 &
      CUDA_VISIBLE_DEVICES=1 timeout 450 python3 -m pytest -m gpu tests/gpu tests/test_backend_*.py tests/test_measure.py \
        -p no:cacheprovider -p no:logging -q -rfEsx --tb=short --durations=10 > "$OUT/$GPU/gpu-tests.log" 2>&1
      tail -40 "$OUT/$GPU/gpu-tests.log"
      wait
      grep "^{" "$OUT/$GPU/aoti_diag.log" | cut -c1-400 ;;
    aoti-check|aoti-facts)
      python3 - <<'PY' 2>&1 | tee "$OUT/$GPU/aoti-compiler.log"
import os, torch
from torch._inductor.cpp_builder import get_cpp_compiler
from aitune_ci.backends.cxx_runtime import inspect_compiler, pick_compiler
from aitune_ci.backends.aoti import package_compiler
current = get_cpp_compiler()
print("CXX =", os.environ.get("CXX"), "| torch picks", current)
for c in (current, "g++", "/usr/bin/g++"):
    print(c, "->", inspect_compiler(c))
print("pick:", pick_compiler(current))
print("package_compiler():", package_compiler())
PY
      [ "$step" = aoti-facts ] && continue
      timeout 200 python3 -m pytest -m gpu tests/test_backend_aoti.py -p no:cacheprovider -q -rfEsx --tb=short \
        > "$OUT/$GPU/aoti-tests.log" 2>&1; tail -8 "$OUT/$GPU/aoti-tests.log"
      timeout 200 python3 bench/gpu_backends.py --models resnet50 --backends eager,inductor,aoti \
        --out "$OUT/$GPU/aoti-resnet50" --measure-seconds 2 2>&1 | grep -v "^\[aitune\] \(round\|warm-up\|iterations\)" | tail -30 ;;
    multigpu)
      timeout 540 python3 bench/multigpu.py --out "$OUT/$GPU/multigpu" --workers 2 --timeout 200 2>&1 | tail -40 ;;
    diag)
      timeout 170 python3 bench/mixed_overhead.py --out "$OUT/$GPU" 2> "$OUT/$GPU/mixed_overhead.log" | grep -v "^ \|^-\|^Name\|^Self" | tail -30
      grep -i "recompil\|guard\|skipping cudagraphs\|mismatch" "$OUT/$GPU/mixed_overhead.log" | cut -c1-400 | head -30 ;;
    gpt2) run_bench 110 gpt2 "$B,inductor-max-autotune" ;;
    resnet50) run_bench "${RESNET50_TIMEOUT:-150}" resnet50 "$B,aoti" ;;
    bert) run_bench 130 bert "$B" ;;
    composite) run_bench 200 composite "$B" ;;
    artifact)
      timeout "${ARTIFACT_TIMEOUT:-330}" python3 bench/artifact_load.py --device cuda --model resnet50 \
        --backends "${ARTIFACT_BACKENDS:-eager,inductor}" --repeats 2 \
        --out "$OUT/$GPU/artifact_load" 2>&1 | grep -v "^\[tune\] .*\(round\|warm-up\|iterations\)" | tail -30 ;;
    *) echo "unknown step $step" ;;
  esac
done
python3 bench/gpu_backends.py --summarize --out "$OUT/$GPU" > /dev/null 2>&1 || true
ls -la "$OUT/$GPU"
tar czf "$FINAL/$GPU.tgz" -C "$OUT" "$GPU"
