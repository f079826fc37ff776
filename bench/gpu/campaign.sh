#!/usr/bin/env bash
# Every GPU check and benchmark of epbench on a 4-GPU host (nvidia-h200-x4), in phases:
#   1  builds (nccl-tests, DeepEP) | codecs and the launch-shape sweep on GPU 3 |
#      MoE and DeepEP on GPUs 0-1 (all pairs there are NVLink NV18, as on nvidia-h200-x2)
#   2  nccl backend beside nccl-tests, loop-block experiment, compressed alltoall (GPUs 0-1)
#   3  MoE and DeepEP on 4 GPUs
#   4  codec identity + launch-shape sweep (GPU 3) | loop-mode timeline, small sizes (GPUs 0-1)
#   5  nccl vs nccl-tests, compressed (GPUs 0-1) | MoE 2 GPUs (GPUs 2-3); then MoE 4 GPUs
#   6  codecs + sweep (GPU 3) | nccl vs nccl-tests <= 1 MiB, compressed (GPUs 0-1); MoE 4 GPUs
# Measured 2026-11-28: phase 1 about 4 min, phase 2 about 4.5 min, phase 3 about 3.5 min,
# so one call of at most 10 minutes holds phases 1 and 3, or 2 alone. Needs .device/nccl-tests
# and .device/deepep (see run_device.sh). Then `run_device.sh pack` puts everything in
# $OUT/results.tgz (also after a timeout):
#
#   timeout 560 bash bench/gpu/campaign.sh 1 3; bash bench/gpu/run_device.sh pack
#   timeout 560 bash bench/gpu/campaign.sh 2;   bash bench/gpu/run_device.sh pack
set -uo pipefail
B=bench/gpu/run_device.sh
export OUT=${OUT:-/tmp/epbench-device} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
say() { echo; echo "##### $* ($(date +%T))"; }

# Codec identity + bandwidth, then the launch-shape sweep, on GPU 3 in the background, output
# in $OUT/codecs.txt: codecs_gpu3 CHECK_TIMEOUT TUNE_TIMEOUT (the caller waits on $!).
codecs_gpu3() {
  ( export CUDA_VISIBLE_DEVICES=3
    timeout "$1" python3 bench/gpu/codec_gpu.py --out "$OUT/codecs.json" \
      --sizes 4096x7168,16384x7168 --codecs fp8_e4m3,logfmt8,logfmt10,bf16 --repeats 20
    timeout "$2" python3 bench/gpu/codec_tune.py --out "$OUT/codec-tune.json"
  ) >"$OUT/codecs.txt" 2>&1 &
}

phase1() {
  say "1: builds (CPU) | codecs on GPU 3 | MoE and DeepEP on GPUs 0-1"
  bash $B env
  bash $B nccltestsbuild deepepbuild >"$OUT/builds.txt" 2>&1 &
  local builds=$! codecs
  codecs_gpu3 120 150
  codecs=$!
  CUDA_VISIBLE_DEVICES=0,1 NGPU=2 MOE_TIMEOUT=170 bash $B moe
  wait $builds; tail -4 "$OUT/builds.txt"
  CUDA_VISIBLE_DEVICES=0,1 NGPU=2 DEEPEP_TIMEOUT=120 bash $B deepep
  wait $codecs; cat "$OUT/codecs.txt"
}

phase2() {
  say "2: nccl backend vs nccl-tests, compressed alltoall (GPUs 0-1)"
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  SIZES_ARGS="-b 1K -e 1G -f 4" CORE_BACKENDS=nccl timeout 200 bash $B nccltests core
  timeout 60 bash $B loopnoalign
  timeout 90 bash $B compressed
}

phase3() {
  say "3: 4 GPUs: MoE and DeepEP, one after the other"
  bash $B deepepbuild >/dev/null 2>&1
  CUDA_VISIBLE_DEVICES=0,1,2,3 NGPU=4 MOE_TIMEOUT=150 MOE_ARGS="--skip overlap" bash $B moe
  CUDA_VISIBLE_DEVICES=0,1,2,3 NGPU=4 DEEPEP_TIMEOUT=110 bash $B deepep
}

phase4() {
  say "4: codec identity and launch-shape sweep on GPU 3 | loop timeline, small sizes (GPUs 0-1)"
  bash $B env
  codecs_gpu3 100 330
  local codecs=$!
  bash $B nccltestsbuild >"$OUT/builds.txt" 2>&1 &
  local builds=$!
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  timeout 120 bash $B timeline
  wait $builds
  SIZES_ARGS="-b 1K -e 1M -f 4" CORE_BACKENDS=nccl timeout 150 bash $B nccltests core
  timeout 60 bash $B loopnoalign
  wait $codecs; cat "$OUT/codecs.txt"
}

phase5() {
  say "5: nccl vs nccl-tests + compressed (GPUs 0-1) | MoE 2 GPUs (GPUs 2-3); then MoE 4 GPUs"
  bash $B env
  ( export CUDA_VISIBLE_DEVICES=2,3 NGPU=2
    MOE_TIMEOUT=200 bash $B moe ) >"$OUT/moe2.txt" 2>&1 &
  local moe=$!
  ( export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
    SIZES_ARGS="-b 1K -e 1G -f 4" CORE_BACKENDS=nccl timeout 220 bash $B nccltests core
    timeout 90 bash $B compressed )
  wait $moe; tail -40 "$OUT/moe2.txt"
  CUDA_VISIBLE_DEVICES=0,1,2,3 NGPU=4 MOE_TIMEOUT=150 MOE_ARGS="--skip overlap" bash $B moe
}

phase6() {
  say "6: codecs on GPU 3 | nccl vs nccl-tests <= 1 MiB, compressed (GPUs 0-1); then MoE 4 GPUs"
  bash $B env
  codecs_gpu3 100 300
  local codecs=$!
  ( export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
    SIZES_ARGS="-b 1K -e 1M -f 4" CORE_BACKENDS=nccl timeout 200 bash $B nccltests core
    timeout 90 bash $B compressed )
  wait $codecs; cat "$OUT/codecs.txt"
  CUDA_VISIBLE_DEVICES=0,1,2,3 NGPU=4 MOE_TIMEOUT=200 MOE_ARGS="--skip ll,overlap" bash $B moe
}

phase7() {
  say "7: 2 GPUs: self-check, compiled loop vs nccl-tests, Python loop, MoE overlap"
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  bash $B env
  bash $B nccltestsbuild >"$OUT/builds.txt" 2>&1 &
  local builds=$!
  mpirun --allow-run-as-root -x NCCL_NVLS_ENABLE -x PYTHONPATH -np 2 timeout 120 python3 \
    bench/gpu/nccl_backend_gpu.py --begin 1024 --end 1048576 --out "$OUT/nccl-backend.json" \
    2>&1 | tail -25
  wait $builds; tail -3 "$OUT/builds.txt"
  SIZES_ARGS="-b 1K -e 1M -f 4" CORE_BACKENDS=nccl timeout 150 bash $B nccltests core
  mkdir -p "$OUT/small1" && mv "$OUT"/nccltests-* "$OUT"/epbench-* "$OUT/small1/"
  timeout 60 bash $B pyloop
  MOE_TIMEOUT=120 MOE_ARGS="--skip normal,ll" bash $B moe
  timeout 60 python3 -m bench run moe --overlap --backend torch-nccl --np 2 -n 20 -w 5 \
    -o "$OUT/moe-overlap.jsonl" --overwrite
  SIZES_ARGS="-b 16M -e 1G -f 4" CORE_BACKENDS=nccl timeout 150 bash $B nccltests core
  mkdir -p "$OUT/large" && mv "$OUT"/nccltests-* "$OUT"/epbench-* "$OUT/large/"
  SIZES_ARGS="-b 1K -e 1M -f 4" CORE_BACKENDS=nccl timeout 150 bash $B nccltests core
}

phase8() {
  say "8: 2 GPUs: small-size loop variants beside nccl-tests, MoE overlap"
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  bash $B nccltestsbuild >"$OUT/builds.txt" 2>&1 &
  local builds=$! op variant
  timeout 60 bash $B probe
  for op in allreduce alltoall; do
    for variant in "-n 20" "-n 20 --no-align" "-n 200" "-n 20 --python-loop"; do
      echo "--- epbench $op $variant"
      # shellcheck disable=SC2086
      timeout 40 mpirun --allow-run-as-root -x NCCL_NVLS_ENABLE -x PYTHONPATH -np 2 \
        python3 -m bench run "$op" --backend nccl -b 1K -e 64K -f 4 -d bfloat16 -w 5 \
        $variant 2>&1 | grep -E '^ +[0-9]'
    done
    echo "--- epbench $op -n 20, mpirun --bind-to none"
    timeout 40 mpirun --allow-run-as-root --bind-to none -x NCCL_NVLS_ENABLE -x PYTHONPATH \
      -np 2 python3 -m bench run "$op" --backend nccl -b 1K -e 64K -f 4 -d bfloat16 -w 5 \
      -n 20 2>&1 | grep -E '^ +[0-9]'
  done
  wait $builds
  SIZES_ARGS="-b 1K -e 64K -f 4" timeout 60 bash $B nccltests
  MOE_TIMEOUT=120 MOE_ARGS="--skip normal,ll" bash $B moe
  timeout 90 python3 -m bench run moe --overlap --backend torch-nccl --np 2 -n 20 -w 5 \
    -o "$OUT/moe-overlap.jsonl" --overwrite
}

phase9() {
  say "9: 2 GPUs: nccl-tests loop and epbench compiled loop, alternated, 1-64 KiB"
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  bash $B nccltestsbuild >"$OUT/builds.txt" 2>&1
  local round op
  for round in 1 2 3; do
    for op in allreduce alltoall; do
      echo "--- round $round nccl-tests ${op/allreduce/all_reduce}"
      NCCL_TEST=${op/allreduce/all_reduce} bash $B nccl_loop_only 2>&1 | grep -E '^ +[0-9]'
      echo "--- round $round epbench $op"
      timeout 40 mpirun --allow-run-as-root -x NCCL_NVLS_ENABLE -x PYTHONPATH -np 2 \
        python3 -m bench run "$op" --backend nccl -b 1K -e 64K -f 4 -d bfloat16 -n 20 -w 5 \
        -o "$OUT/alt-$round-$op.jsonl" --overwrite 2>&1 | grep -E '^ +[0-9]'
    done
  done
}

phase10() {
  say "10: 2 GPUs: pipelined compressed all-to-all; mpi replay under Open MPI"
  export CUDA_VISIBLE_DEVICES=0,1 NGPU=2
  timeout 240 bash $B pipelined
  PIPE_BACKEND=nccl PIPE_CHUNKS=4 timeout 80 bash $B pipelined
  timeout 60 bash $B mpireplay
}

phase11() {
  say "11: one GPU: codec A/B of the LogFMT encoders (fast, defer) at several shapes, ncu profile"
  timeout 330 python3 bench/gpu/codec_gpu.py --out "$OUT/ab.json" \
    --sizes 4096x7168,16384x7168 --codecs fp8_e4m3,logfmt8,logfmt10 --bench-impls triton \
    --repeats 10 --loop 10 --graph --ab \
    --ab-configs ${AB_CONFIGS:-bt64w4g2,bt64w4g4,bt128w4g2,bt64w2g2,bt32w4g4} \
    2>&1 | tee "$OUT/ab.txt"
  OUT="$OUT/profile" timeout 120 bash bench/gpu/codec_profile.sh ${PROFILE_ENCODERS:-} 2>&1 | tail -40
}

for p in "${@:-1 2 3}"; do
  for q in $p; do "phase$q"; done
done
say "done"
