#!/usr/bin/env bash
# The PR check of examples/gpu-repo on a lent GPU: `bash bench/gpu_pr_check.sh PHASE...`, one device call each
# (at most 10 minutes; state is kept in .pr_check_work/ between calls on a machine that stays warm):
#   nightly          a fresh git repo of the example, `pytest --aitune --aitune-update` with empty caches, commit
#   checks           the five PR checks (unchanged, comment, refactor, slowdown, accuracy) in relative mode, cold then warm
#   unchanged | comment | refactor | slowdown | accuracy [-cold|-warm|-warm2]   one check (bare: cold then warm)
# e.g. call 1: `bash bench/gpu_pr_check.sh nightly unchanged`, call 2: `... slowdown accuracy`.
# Every call ends with summary.json + summary.md of all phases done so far, under $OUT/<gpu>/pr_check/
# (copy it to reports/<gpu>/pr_check/). Runs are cut off before the call's budget (PR_CHECK_BUDGET_S,
# default 560 s counted from the script's start) so the results always come back.
# Knobs: PR_CHECK_SMALL=1 (CPU-sized models; on a CPU add PR_CHECK_BACKENDS=eager,onnxruntime),
#        PR_CHECK_BACKENDS=a,b (--aitune-backends), PR_CHECK_MEASURE_S (default 2), PR_CHECK_WORK (state folder),
#        PR_CHECK_TAR=1 (results as one $OUT/<gpu>-pr_check.tgz instead of a folder of files: the device
#        tool brings back only a few files per call).
# Where the garbage collector ran: PYTEST_ADDOPTS="-p bench.gc_timeline" puts a [gc] line in the pytest logs per slow collection.
# Like bench/run_gpu_suite.sh: torchao comes as a wheel in .whl/ (`make gpu-wheels`), nothing is downloaded.
set -u
START=$(date +%s)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=$(command -v "${PYTHON:-python3}")  # absolute: registered() runs from /
GPU=$("$PY" "$(dirname "$0")/_gpu_folder.py" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)")
GPU=${GPU:-cpu}
[ "${PR_CHECK_SMALL:-0}" = 1 ] && GPU="$GPU-small"
FINAL=${OUT:-reports}/$GPU/pr_check
WORK=${PR_CHECK_WORK:-$PWD/.pr_check_work}
mkdir -p "$FINAL" "$WORK"
echo "results for $GPU -> $FINAL"
if ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# The plugin registers through its pytest11 entry point, so aitune-ci must be installed (editable, no
# downloads); where that fails, pytest loads it by name instead.
# (The check runs from / so that an aitune_ci.egg-info in this folder does not count.)
registered() { (cd / && "$PY" -c "import importlib.metadata as m, sys; sys.exit(not any(e.name == 'aitune' for e in m.entry_points(group='pytest11')))"); }
if ! registered; then
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$WORK/pip.log" 2>&1 \
    || echo "pip install -e . failed (see $WORK/pip.log); loading the plugin with PYTEST_PLUGINS"
  registered || export PYTEST_PLUGINS=aitune_ci.plugin
fi
"$PY" - <<'PY' 2>&1 | grep -v "^W[0-9]" | tee "$FINAL/versions.log"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
for m in ("torchao", "transformers", "torchvision", "onnxruntime", "xdist"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "ok"))
    except Exception as exc:
        print(m, "MISSING", type(exc).__name__, exc)
PY
ELAPSED=$(( $(date +%s) - START ))
args=(--work "$WORK" --results "$WORK/pr_check" --budget-s "$(( ${PR_CHECK_BUDGET_S:-560} - ELAPSED ))" \
  --measure-seconds "${PR_CHECK_MEASURE_S:-2}")
[ "${PR_CHECK_SMALL:-0}" = 1 ] && args+=(--small)
[ -n "${PR_CHECK_BACKENDS:-}" ] && args+=(--backends "$PR_CHECK_BACKENDS")
"$PY" bench/gpu_pr_check.py "${args[@]}" "${@:-summary}"
code=$?
# Everything but the bulky logs of passing runs' compile output: pytest logs stay (they are text).
if [ "${PR_CHECK_TAR:-0}" = 1 ]; then
  mv "$FINAL/versions.log" "$WORK/pr_check/" 2> /dev/null
  rmdir "$FINAL" "$(dirname "$FINAL")" 2> /dev/null  # only if empty
  FINAL=${OUT:-reports}/$GPU-pr_check.tgz
  tar czf "$FINAL" -C "$WORK/pr_check" .
else
  cp -r "$WORK/pr_check/." "$FINAL/"
fi
echo "wall $(( $(date +%s) - START )) s; results in $FINAL"
exit $code
