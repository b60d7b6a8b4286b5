#!/usr/bin/env bash
# One command for a lent GPU machine (Python 3.12, torch preinstalled, no internet, no diffusers): install the
# wheels carried in .whl/ (diffusers, transformers and the rest; never torch), then run bench/gpu.py on the real
# SD 2.1-base shapes with random weights at 512x512, 20 steps, fp16: the plain pipeline (batch 1; 10 and 15 steps
# too), our own loop with CUDA graphs (graphs), graphs + torch.compile (max), batch 1 and 4, and the service figures at
# --optimize channels_last (the old default), graphs (now auto) and max (first picture after ready, one picture,
# 4 and 8 players at once, a picture already painted); then, in what is left of the budget (so they never push out the rows above), bf16 next to fp16
# (graphs batch 1 and 4, plain) and each SDPA backend forced (FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION,
# MATH; graphs and plain, batch 1).  Every variant that fails or does not fit the time budget is a row, never an
# abort.
#
#   bench/gpu_check.sh OUT_DIR            # on the GPU machine: writes OUT_DIR/gpu_check.md (and prints it)
#   bench/gpu_check.sh OUT_DIR --cpu      # the same code path on this CPU with the tiny model (a rehearsal)
#
# The rehearsal leaves out the precision group's batch 4 and its plain bf16 row (~6 s on this CPU, whose bf16
# convolutions are slow; the graphs bf16 row already proves the bf16 path).
#
# Time: BUDGET seconds for bench/gpu.py to start variants in (default 390: the H100 run of 2026-11-26 took 307 s
# before the precision and attention groups, estimated at about 60 s more, not yet measured), and a hard stop at
# LIMIT (default 425; with ~30 s of installing and starting, under 8 minutes in all); the table is rewritten after
# every row, so a run cut short keeps what it measured.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR [--cpu]}
mode=${2:-gpu}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
started=$(date +%s)

if [ "$mode" != "--cpu" ] && compgen -G ".whl/*.whl" >/dev/null; then  # the rehearsal uses this machine's packages
  site=${SITE:-/tmp/lanternslide-site}
  echo "--- installing $(ls .whl/*.whl | wc -l) carried wheels into $site"
  if ! $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl; then
    echo "installing the carried wheels failed (see above)" | tee "$out/gpu_check.md"
    exit 1
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "--- no .whl/ folder here: using the Python packages already installed"
fi

echo "--- versions"
if ! $PY -c "import sys, torch, diffusers, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"; then
  echo "importing torch/diffusers/transformers failed (see above)" | tee "$out/gpu_check.md"
  exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv

if [ "$mode" = "--cpu" ]; then
  args=(--device cpu --models tiny --steps 2 --repeats 1 --skip-compile
        --only plain,graphs,service,precision,attention --precision-batches 1 --precision-levels graphs
        --service-levels auto,graphs --budget "${BUDGET:-300}")
  limit=${LIMIT:-400}
else
  args=(--models sd21-base --steps 20 --repeats 3 --only plain,graphs,max,service,precision,attention
        --service-levels channels_last,graphs,max --budget "${BUDGET:-390}")
  limit=${LIMIT:-425}
fi
echo "--- bench/gpu.py ${args[*]} (hard stop after ${limit} s)"
timeout --signal=TERM --kill-after=10 "$limit" $PY -m bench.gpu "${args[@]}" --markdown "$out/gpu_check.md" 2>&1 \
  | tee "$out/gpu_check.log" | grep --line-buffered -v -E "Warning|warnings.warn|^\s*$"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "- bench/gpu.py ended with status $status$([ "$status" -eq 124 ] && echo " (the ${limit} s hard stop)")" \
    >> "$out/gpu_check.md"
fi
echo "--- table ($(($(date +%s) - started)) s in all)"
cat "$out/gpu_check.md" 2>/dev/null || echo "no table was written"
exit "$status"
