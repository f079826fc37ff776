#!/usr/bin/env bash
# Every GPU check and benchmark of epbench in one call on a 4-GPU host (nvidia-h200-x4):
# 2-GPU runs on GPUs 0-1 (all pairs there are NVLink NV18, as on nvidia-h200-x2), codecs on
# GPU 3 at the same time, then the 4-GPU MoE runs. Needs .device/nccl-tests and
# .device/deepep (see run_device.sh). Then `run_device.sh pack` puts everything in
# $OUT/results.tgz (also after a timeout):
#
#   timeout 560 bash bench/gpu/campaign.sh; bash bench/gpu/run_device.sh pack
set -uo pipefail
B=bench/gpu/run_device.sh
export OUT=${OUT:-/tmp/epbench-device} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
phase() { echo; echo "##### $* ($(date +%T))"; }

phase "1: builds (CPU) | codecs on GPU 3 | MoE and DeepEP on GPUs 0-1"
bash $B env
bash $B nccltestsbuild deepepbuild >"$OUT/builds.txt" 2>&1 &
builds=$!
( export CUDA_VISIBLE_DEVICES=3
  timeout 200 python3 bench/gpu/codec_gpu.py --out "$OUT/codecs.json" \
    --sizes 4096x7168,16384x7168 --codecs fp8_e4m3,logfmt8,logfmt10,bf16 --repeats 20
  [ -f bench/gpu/codec_tune.py ] && timeout 150 python3 bench/gpu/codec_tune.py \
    --out "$OUT/codec-tune.json" ) >"$OUT/codecs.txt" 2>&1 &
codecs=$!
export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
MOE_TIMEOUT=170 bash $B moe
wait $builds; tail -4 "$OUT/builds.txt"
DEEPEP_TIMEOUT=120 bash $B deepep
wait $codecs; cat "$OUT/codecs.txt"

phase "2: nccl backend vs nccl-tests, compressed alltoall (GPUs 0-1)"
SIZES_ARGS="-b 1K -e 1G -f 4" CORE_BACKENDS=nccl timeout 200 bash $B nccltests core
timeout 60 bash $B loopnoalign
timeout 90 bash $B compressed

phase "3: 4 GPUs: MoE and DeepEP"
export CUDA_VISIBLE_DEVICES=0,1,2,3 NGPU=4
MOE_TIMEOUT=150 MOE_ARGS="--skip overlap" bash $B moe
DEEPEP_TIMEOUT=110 bash $B deepep
phase "done"
