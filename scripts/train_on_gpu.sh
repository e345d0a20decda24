#!/usr/bin/env bash
# A lent GPU machine (no network) turns the working tree into a trained world in one call:
#   1. install   the wheels that travel in .whl/ (ViZDoom, pygame-ce: scripts/prepare_gpu_wheels.py)
#   2. record    the doom-gpu recipe's data with every core            worldsim record --workers
#   3. train     every stage within a wall-clock budget (CUDA, bf16)    worldsim train --time-budget
#   4. pack      bf16 weights in shards of at most 15 MiB into OUT      scripts/pack_checkpoint.py
#   5. eval      the packed world against the engine, briefly           worldsim eval
#   6. last      the cuda-marked tests and the paper-scale bench        pytest -m cuda, worldsim bench
# OUT ($OUT, or --out DIR) gets world/ (the checkpoint) and report.tar.gz (this log, the training logs, samples,
# evaluation, tests, bench), refreshed after every phase. Every phase runs under `timeout`; a phase after the pack
# that fails or runs out of time is noted and skipped, so the checkpoint comes back whatever happens after it.
#
#   scripts/train_on_gpu.sh [--out DIR] [--seconds S]      on the GPU machine (S: the whole run, default 540)
#   scripts/train_on_gpu.sh --dry-run --out DIR            the same phases on a CPU with doom-gpu-dry (~2 min),
#                                                          the CUDA phases skipped (tests/test_gpu_script.py)
set -uo pipefail  # no -e: a failing late phase must not stop the ones that save what was made

cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
PY=${PYTHON:-python3}  # the interpreter with torch (the tests pass theirs)
DRY=0
OUT_DIR=${OUT:-}
SECONDS_TOTAL=""
WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT_DIR=$2; shift ;;
    --seconds) SECONDS_TOTAL=$2; shift ;;
    --work) WORK=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "train_on_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$OUT_DIR" ]; then
  echo "train_on_gpu.sh: no output folder: set \$OUT or pass --out DIR" >&2
  exit 2
fi

# ---- what differs between the GPU run and its CPU dry run ------------------------------------------------------
if [ "$DRY" = 1 ]; then
  RECIPE=doom-gpu-dry DEVICE=cpu DTYPE=float32 WORKERS=2 TOTAL=${SECONDS_TOTAL:-150}
  SHARD_MIB=1.6       # the small generator (2.5 MiB in bf16) makes two shards, the VAE (1.5 MiB) one file
  EVAL_FRAMES=120
  RESERVE=45          # seconds kept after training for pack and eval
  TRAIN_OVERHEAD=25   # of the train phase beyond its budget: start, data, latent cache, final saves and samples
  EXTRA_EVAL=(--threads 1)
else
  RECIPE=doom-gpu DEVICE=cuda DTYPE=bfloat16 WORKERS=$(nproc) TOTAL=${SECONDS_TOTAL:-540}
  SHARD_MIB=15
  EVAL_FRAMES=300
  RESERVE=180         # pack 15, eval 60, cuda tests 45, bench 60
  TRAIN_OVERHEAD=30
  EXTRA_EVAL=()
fi
START=$(date +%s)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/worldsim-gpu.XXXXXX")}
REPORT=$WORK/report
SITE=$WORK/site
mkdir -p "$REPORT" "$OUT_DIR" || exit 2
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy PYGAME_HIDE_SUPPORT_PROMPT=1 PYTHONUNBUFFERED=1
declare -A STATUS

now() { echo $(($(date +%s) - START)); }
left() { echo $((TOTAL - $(now))); }
atmost() { local a=$1 b=$2; echo $((a < b ? a : b)); }
log() { printf '[%s +%3ss] %s\n' "$(date +%H:%M:%S)" "$(now)" "$*" | tee -a "$REPORT/phases.log"; }

collect() {  # training logs and samples into the report
  local stage
  for stage in "$WORK"/run/*/; do
    stage=$(basename "$stage")
    [ -f "$WORK/run/$stage/log.jsonl" ] && cp "$WORK/run/$stage/log.jsonl" "$REPORT/train-$stage.jsonl"
    if [ -d "$WORK/run/$stage/samples" ]; then
      mkdir -p "$REPORT/samples/$stage" && cp "$WORK/run/$stage/samples/"* "$REPORT/samples/$stage/" 2>/dev/null
    fi
  done
}

pack_report() {  # OUT/report.tar.gz, replaced whole
  tar -czf "$WORK/report.tar.gz" -C "$WORK" report 2>/dev/null && mv -f "$WORK/report.tar.gz" "$OUT_DIR/report.tar.gz"
}
trap 'collect; pack_report' EXIT
trap 'exit 143' TERM INT  # (the EXIT trap then still writes the report)

# run_phase NAME SECONDS COMMAND...: COMMAND under `timeout`, output in REPORT/NAME.log; returns its status
run_phase() {
  local name=$1 limit=$2 rc took started
  shift 2
  if [ "$limit" -lt 5 ]; then
    log "$name: skipped, ${limit}s left for it"
    STATUS[$name]="skipped (no time left)"
    return 1
  fi
  log "$name: start, at most ${limit}s: $*"
  started=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$REPORT/$name.log" 2>&1 </dev/null
  rc=$?
  took=$(($(date +%s) - started))
  if [ $rc -eq 0 ]; then
    STATUS[$name]="ok (${took}s)"
    log "$name: done in ${took}s"
  else
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then STATUS[$name]="timed out (${took}s)"; else STATUS[$name]="failed (exit $rc)"; fi
    log "$name: ${STATUS[$name]}; the end of $name.log:"
    tr '\r' '\n' <"$REPORT/$name.log" | grep -v '^\s*$' | tail -n 12 | sed 's/^/    /' | tee -a "$REPORT/phases.log"
  fi
  pack_report
  return $rc
}

finish() {
  log "summary: $(for k in "${!STATUS[@]}"; do printf '%s=%s; ' "$k" "${STATUS[$k]}"; done)"
  local count total
  count=$(find "$OUT_DIR" -type f | wc -l)
  total=$(find "$OUT_DIR" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  log "$OUT_DIR: $count files, $((total / 1048576)) MiB"
  find "$OUT_DIR" -type f -printf '    %p %s bytes\n' | sort | tee -a "$REPORT/phases.log"
  [ "$count" -le 8 ] || log "warning: more than 8 files in $OUT_DIR (the transfer brings back 8)"
  [ "$total" -le $((60 * 1048576)) ] || log "warning: more than 60 MiB in $OUT_DIR"
  log "done in $(now)s of ${TOTAL}s"
  exit "$1"
}

# ---- 0. what this machine is -------------------------------------------------------------------------------------
log "train_on_gpu.sh: recipe $RECIPE on $DEVICE, ${TOTAL}s in all; work folder $WORK, out $OUT_DIR"
timeout 60 "$PY" - >"$REPORT/machine.txt" 2>&1 <<'EOF'
import os, platform, shutil, sys
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} cpus, "
      f"{shutil.disk_usage('/tmp').free / 2 ** 30:.0f} GiB free in /tmp")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"cuda {torch.version.cuda}: {torch.cuda.device_count()} x {p.name}, {p.total_memory / 2 ** 30:.0f} GiB")
for name in ("vizdoom", "pygame", "PIL", "imageio_ffmpeg", "flash_attn", "onnxruntime"):
    try:
        __import__(name)
        print(f"  {name}: yes")
    except Exception as err:
        print(f"  {name}: no ({type(err).__name__})")
EOF
tee -a "$REPORT/phases.log" <"$REPORT/machine.txt"
HAVE_CUDA=$(timeout 60 "$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$DRY" = 0 ] && [ "$HAVE_CUDA" != 1 ]; then
  log "no CUDA device here: run with --dry-run on a CPU"
  finish 1
fi

# ---- 1. install ---------------------------------------------------------------------------------------------------
if timeout 60 "$PY" -c "import vizdoom, pygame" >/dev/null 2>&1; then
  log "install: vizdoom and pygame import already"
  STATUS[install]="not needed"
else
  # pip from the local wheels; without pip, a wheel is a zip (the engine binary must stay executable)
  run_phase install 120 bash -c '"$1" -m pip install -q --no-index --no-deps --no-compile --target "$2" .whl/*.whl ||
    { for w in .whl/*.whl; do "$1" -m zipfile -e "$w" "$2" || exit 1; done; chmod +x "$2/vizdoom/vizdoom"; }' \
    install "$PY" "$SITE"
  export PYTHONPATH=$SITE:$PYTHONPATH
  if ! timeout 60 "$PY" -c "import vizdoom, pygame"; then
    log "install: vizdoom or pygame still missing (are the wheels in .whl/? scripts/prepare_gpu_wheels.py)"
    finish 1
  fi
fi

# ---- 2. record ----------------------------------------------------------------------------------------------------
run_phase record 180 "$PY" -m worldsim record --recipe "$RECIPE" --out "$WORK/data" --workers "$WORKERS" \
  --no-progress || finish 1

# ---- 3. train: until RESERVE seconds before the end ---------------------------------------------------------------
train_end=$((TOTAL - RESERVE))
budget=$((train_end - $(now) - TRAIN_OVERHEAD))
[ "$budget" -ge 10 ] || budget=10
run_phase train $((train_end - $(now) + 20)) "$PY" -m worldsim train --recipe "$RECIPE" --data "$WORK/data" \
  --stage all --out "$WORK/run" --device "$DEVICE" --time-budget "${budget}s" --resume
collect

# ---- 4. pack: whatever stage the run reached -----------------------------------------------------------------------
run_phase pack 60 "$PY" scripts/pack_checkpoint.py "$WORK/run" "$OUT_DIR/world" --dtype bfloat16 \
  --shard-mib "$SHARD_MIB" --hold-still || finish 1

# ---- 5. eval the packed world (it also proves that the shards load) --------------------------------------------------
late=0
[ "$HAVE_CUDA" = 1 ] && [ "$DRY" = 0 ] && late=100
run_phase eval "$(atmost 90 $(($(left) - late)))" "$PY" -m worldsim eval --checkpoint "$OUT_DIR/world" \
  --out "$REPORT/eval" --ground-truth "$WORK/ground-truth" --frames "$EVAL_FRAMES" --episodes 1 \
  --window $((EVAL_FRAMES / 2)) --device "$DEVICE" --dtype "$DTYPE" --no-video --no-probes --no-detector \
  --no-progress ${EXTRA_EVAL[@]+"${EXTRA_EVAL[@]}"}

# ---- 6. the last minute: CUDA tests and the paper-scale bench ------------------------------------------------------
if [ "$HAVE_CUDA" = 1 ] && [ "$DRY" = 0 ]; then
  run_phase cuda-tests "$(atmost 45 $(($(left) - 60)))" "$PY" -m pytest -m cuda -q -p no:cacheprovider
  run_phase bench "$(atmost 70 $(($(left) - 5)))" "$PY" -m worldsim bench --preset paper-scale --device cuda \
    --backend eager/bfloat16 --frames 16 --warmup 40 --threads 1 --skip recompute,teacher,threads,quality \
    --json "$REPORT/bench-paper-scale.json"
else
  log "cuda-tests, bench: skipped (no CUDA device in a dry run)"
  STATUS[cuda-tests]="skipped (dry run)" STATUS[bench]="skipped (dry run)"
fi
finish 0
