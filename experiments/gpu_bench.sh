#!/usr/bin/env bash
# The GPU benchmarks the open issues ask for, as one prepared run (a lent GPU is short:
# every step has its own timeout and prints its numbers as it ends; JSON goes to $OUT).
#
# On this machine, pack the project for an image without a package index, then run this
# there with .offline carried:
#   ../shared/tools/offline-pack            # -> .offline/
#   bash experiments/gpu_bench.sh [STEP ...]   # default: every step, in this order
# Steps (most wanted first):
#   memo_sample  MEMO paper 512 px, 20 steps, guidance, bf16: s/frame at batch 1 and 8,
#                per-frame cost for 1 / 4 / 16 clips, peak memory  (issue: MEMO release)
#   memo_train   MEMO stage 2 train step: step time, examples/s, MFU from the jaxpr count
#   ifmdm_sample IF-MDM 512 px, paper renderer, batch 1 / 16 and streaming  (issue 13)
#   ifmdm_train  IF-MDM stage 1 at 512 px, batch 16
#   infp_sample  INFP DyConv config at 512 px: batch 1 streaming frames/s, two tracks (issue 17)
# SMOKE=1 runs the same steps with the tiny configs on CPU (checks this script, not speed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/talkjax_gpu_bench}
mkdir -p "$OUT"
if [ -d .offline ]; then
  export PYTHONPATH="$PWD/.offline/site:$PWD/.offline/src${PYTHONPATH:+:$PYTHONPATH}"
fi
talkjax() { python3 -c "import sys; from talkjax.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }

if [ "${SMOKE:-0}" = 1 ]; then
  export JAX_PLATFORMS=cpu
  MEMO=memo/synthtalk_tiny_stage2; MEMO_SET="model.emotion.classifier="; MEMO_RES=64
  IFMDM2=ifmdm/synthtalk_tiny_stage2; IFMDM1=ifmdm/synthtalk_tiny_stage1; IF_RES=64
  INFP2=infp/synthtalk_tiny_stage2
  SECONDS_OF_AUDIO=0.64; CLIPS="1 2"; BATCHES_MEMO="1 2"; BATCHES_IF="1 2"; STEPS=2; LIMIT=600
  IF_TRAIN_SET="data.batch_size=2"
else
  MEMO=memo/paper_512_stage2; MEMO_SET="model.remat=True"; MEMO_RES=512
  IFMDM2=ifmdm/hdtf_512_stage2; IFMDM1=ifmdm/hdtf_512_stage1; IF_RES=512
  INFP2=infp/dyconv_512_stage2
  SECONDS_OF_AUDIO=1.28; CLIPS="1 4 16"; BATCHES_MEMO="1 8"; BATCHES_IF="1 16"; STEPS=5; LIMIT=0
  IF_TRAIN_SET="data.batch_size=16"
fi

step() {   # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  [ "$LIMIT" != 0 ] && limit=$LIMIT
  echo "=== $name (timeout ${limit} s) $(date -u +%H:%M:%S)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "frames/s|ms per frame|peak device|step_time_ms|examples_per_s|mfu|flops_source|Error|error:" \
    "$OUT/$name.log" | tail -n 20
  echo "=== $name: rc $rc after $((SECONDS - start)) s"
}

run_step() {
  case $1 in
    memo_sample) step memo_sample 420 talkjax bench sample --config "$MEMO" --set $MEMO_SET \
        --resolutions $MEMO_RES --batches $BATCHES_MEMO --seconds "$SECONDS_OF_AUDIO" \
        --repeats 2 --clips $CLIPS --json "$OUT/memo_sample.json" ;;
    memo_train) step memo_train 300 talkjax bench train --config "$MEMO" --set $MEMO_SET \
        --steps "$STEPS" --warmup 2 --json "$OUT/memo_train.json" ;;
    ifmdm_sample) step ifmdm_sample 300 talkjax bench sample --config "$IFMDM2" \
        --resolutions $IF_RES --batches $BATCHES_IF --seconds "$SECONDS_OF_AUDIO" --repeats 2 \
        --stream --json "$OUT/ifmdm_sample.json" ;;
    ifmdm_train) step ifmdm_train 240 talkjax bench train --config "$IFMDM1" \
        --set $IF_TRAIN_SET --steps "$STEPS" --warmup 2 --json "$OUT/ifmdm_train.json" ;;
    infp_sample) step infp_sample 300 talkjax bench sample --config "$INFP2" \
        --resolutions $IF_RES --batches 1 --seconds "$SECONDS_OF_AUDIO" --repeats 2 \
        --stream --json "$OUT/infp_sample.json" ;;
    *) echo "unknown step $1 (memo_sample memo_train ifmdm_sample ifmdm_train infp_sample)"; return 2 ;;
  esac
}

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
for s in "${@:-memo_sample memo_train ifmdm_sample ifmdm_train infp_sample}"; do
  for one in $s; do run_step "$one"; done
done
echo "logs and JSON: $OUT"
