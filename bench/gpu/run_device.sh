#!/usr/bin/env bash
# Check and time epbench on a GPU machine in one call, beside nccl-tests built there.
#
#   bash bench/gpu/run_device.sh PART...
#   PART: env nccltestsbuild nccltests fixtures core pyloop pipelined fused fusedpaths mpireplay
#         loopnoalign
#         transports ncclexp probe timeline
#         codecs compressed moe deepepbuild deepep pack
#
# nccl-tests' source is expected, unpacked, in .device/nccl-tests and DeepEP's (V1, e.g.
# commit 567632dd) in .device/deepep (neither is part of the repository; a prebuilt DeepEP
# extension carried as .device/deepep-build.tgz is used instead of building). Logs and JSON go to $OUT (default /tmp/epbench-device). NVLink multicast
# stays off (NCCL_NVLS_ENABLE=0) in every process started here.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/epbench-device}
mkdir -p "$OUT"
# NGPU ranks, one per GPU (default: every GPU; with CUDA_VISIBLE_DEVICES, those GPUs)
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x PYTHONPATH
        -x PYTHONUNBUFFERED ${CUDA_VISIBLE_DEVICES:+-x CUDA_VISIBLE_DEVICES} -np "$NGPU")
read -r -a SIZES <<<"${SIZES_ARGS:--b 1K -e 1G -f 2}"

section() { echo; echo "=== $* ($(date +%T))"; }

part_env() {
  section env
  nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv
  nvidia-smi topo -m
  python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version(), "gpus", torch.cuda.device_count())'
  python3 -c 'import cupy; from cupy.cuda import nccl; print("cupy", cupy.__version__,
"nccl", nccl.get_version())' || true
  command -v mpirun mpicc && mpirun --version | head -1
}

nccl_home() {
  python3 - <<'EOF'
import pathlib, nvidia.nccl as m
print(pathlib.Path(list(m.__path__)[0]))
EOF
}

use_nccl_lib() {
  # nccl-tests binaries find the image's NCCL (pip nvidia.nccl) through LD_LIBRARY_PATH
  local home
  home=$(nccl_home)
  export LD_LIBRARY_PATH="$home/lib:${LD_LIBRARY_PATH:-}"
}

part_nccltestsbuild() {
  section nccl-tests build
  [ -x .device/nccl-tests/build/alltoall_perf ] && return 0
  local nccl mpi
  nccl=$(nccl_home)
  mpi=$(dirname "$(dirname "$(command -v mpicc)")")
  [ -e "$nccl/lib/libnccl.so" ] || ln -sf "$(ls "$nccl"/lib/libnccl.so.* | head -1)" "$nccl/lib/libnccl.so"
  # Debian's Open MPI keeps mpi.h and libmpi outside MPI_HOME's include/ and lib/
  local inc lib
  inc=$(mpicc -showme:incdirs | tr ' ' ':')
  lib=$(mpicc -showme:libdirs | tr ' ' ':')
  export CPATH="$inc${CPATH:+:$CPATH}" LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  make -C .device/nccl-tests -j16 MPI=1 MPI_HOME="$mpi" NCCL_HOME="$nccl" \
    CUDA_HOME=/usr/local/cuda NVCC_GENCODE="-gencode=arch=compute_90,code=sm_90" \
    >"$OUT/nccltests-build.log" 2>&1 || { tail -30 "$OUT/nccltests-build.log"; return 1; }
}

part_nccltests() {
  part_nccltestsbuild || return 1
  use_nccl_lib
  local b=.device/nccl-tests/build
  for t in all_reduce alltoall; do
    section "nccl-tests $t (loop)"
    "${MPIRUN[@]}" -x LD_LIBRARY_PATH "$b/${t}_perf" "${SIZES[@]}" -d bfloat16 -n 20 -w 5 \
      -J "$OUT/nccltests-$t.json" 2>&1 | tee "$OUT/nccltests-$t.txt"
    section "nccl-tests $t (graph -G 20)"
    "${MPIRUN[@]}" -x LD_LIBRARY_PATH "$b/${t}_perf" "${SIZES[@]}" -d bfloat16 -n 20 -w 5 \
      -G 20 2>&1 | tee "$OUT/nccltests-$t-graph.txt"
  done
}

part_nccl_loop_only() {
  # One nccl-tests loop run (no graph) at 1-64 KiB of $NCCL_TEST (all_reduce or alltoall)
  use_nccl_lib
  "${MPIRUN[@]}" -x LD_LIBRARY_PATH ".device/nccl-tests/build/${NCCL_TEST}_perf" \
    -b 1K -e 64K -f 4 -d bfloat16 -n 20 -w 5
}

part_fixtures() {
  # Small real nccl-tests outputs for the analyzer's reader tests (tests/fixtures/nccl).
  section "nccl-tests fixtures"
  local b=.device/nccl-tests/build f="$OUT/nccl"
  mkdir -p "$f"
  use_nccl_lib
  local run=("${MPIRUN[@]}" -x LD_LIBRARY_PATH)
  "${run[@]}" "$b/all_reduce_perf" -b 1K -e 64M -f 8 -g 1 -n 20 -w 5 >"$f/all_reduce_perf.txt" 2>&1
  "${run[@]}" "$b/alltoall_perf" -b 1K -e 64M -f 8 -g 1 -n 20 -w 5 \
    -J "$f/alltoall_perf.json" >"$f/alltoall_perf.txt" 2>&1
  "${run[@]}" "$b/alltoall_perf" -b 1K -e 1M -f 8 -g 1 -n 50 -w 5 -I 1 \
    -J "$f/alltoall_perf_per_iter.json" >"$f/alltoall_perf_per_iter.txt" 2>&1
  "${run[@]}" "$b/all_reduce_perf" -b 1K -e 1M -f 8 -g 1 -n 20 -w 5 -G 10 \
    >"$f/all_reduce_perf_graph.txt" 2>&1
  "${run[@]}" -x NCCL_DEBUG=INFO "$b/alltoall_perf" -b 1K -e 1M -f 8 -g 1 \
    >"$f/alltoall_perf_info.txt" 2>&1
  ls -l "$f"
}

part_core() {
  for op in allreduce alltoall; do
    section "epbench $op nccl (loop, per-iteration, graph)"
    "${MPIRUN[@]}" python3 -m bench run "$op" --backend nccl "${SIZES[@]}" -d bfloat16 \
      -n 20 -w 5 -G 20 -o "$OUT/epbench-$op-nccl.jsonl" --overwrite
    [[ "${CORE_BACKENDS:-nccl torch-nccl}" == *torch-nccl* ]] || continue
    section "epbench $op torch-nccl"
    python3 -m bench run "$op" --backend torch-nccl --np "$NGPU" "${SIZES[@]}" -d bfloat16 \
      -n 20 -w 5 -G 20 -o "$OUT/epbench-$op-torch-nccl.jsonl" --overwrite
  done
  [ -n "${SELF_CHECK:-}" ] || return 0
  section "nccl backend self-check"
  "${MPIRUN[@]}" python3 bench/gpu/nccl_backend_gpu.py ${WITH_MPI:-} \
    --out "$OUT/nccl-backend.json" 2>&1 | tail -40
}

part_transports() {
  section "NCCL transports (epbench nccl backend, NCCL_DEBUG=INFO)"
  "${MPIRUN[@]}" -x NCCL_DEBUG=INFO python3 -m bench run alltoall --backend nccl -b 1K -e 4K \
    -d bfloat16 -n 5 -w 2 2>&1 | grep -E "NCCL version|via|Channel 00|nvls|cuMem" | sort -u | head -20
}

part_ncclexp() {
  # Which NCCL setting moves the small-size graph time (1 KiB - 64 KiB, bf16)?
  local setting
  for setting in "" NCCL_GRAPH_REGISTER=0 NCCL_GRAPH_MIXING_SUPPORT=0 NCCL_PROTO=LL; do
    for op in allreduce alltoall; do
      section "epbench $op nccl graph ${setting:-default}"
      env $setting "${MPIRUN[@]}" ${setting:+-x "${setting%%=*}"} python3 -m bench run "$op" \
        --backend nccl -b 1K -e 64K -f 4 -d bfloat16 -n 20 -w 5 -G 20 2>&1 | grep -E '^ +[0-9]'
    done
  done
}

part_probe() {
  section "host vs device cost per small op"
  "${MPIRUN[@]}" python3 tests/gpu/probe_overhead.py
}

part_timeline() {
  section "loop-mode block timeline (host phases, per-op device events)"
  "${MPIRUN[@]}" python3 bench/gpu/loop_timeline.py --out "$OUT/loop-timeline.json"
}

part_codecs() {
  section codecs
  python3 bench/gpu/codec_gpu.py --out "$OUT/codecs.json" ${CODEC_ARGS:-}
  part_compressed
}

part_compressed() {
  for codec in none fp8_e4m3 logfmt8 logfmt10; do
    section "compressed alltoall $codec"
    python3 -m bench run alltoall --backend torch-nccl --np "$NGPU" -b 56M -e 56M \
      -d bfloat16 --codec "$codec" -n 20 -w 5 -o "$OUT/a2a-$codec.jsonl" --overwrite
    python3 - "$OUT/a2a-$codec.jsonl" <<'EOF2'
import json, sys
for line in open(sys.argv[1]):
    extra = json.loads(line).get("extra") or {}
    if "encode_median_s" in extra:
        print("phases (median us): " + ", ".join(
            f"{k[:-9]} {extra[k] * 1e6:.1f}" for k in
            ("encode_median_s", "transfer_median_s", "decode_median_s")))
        break
EOF2
  done
}

part_pipelined() {
  # Compressed all-to-all of 4096 tokens x 7168 per rank: BF16, then each codec unpipelined
  # and over K chunks (encode | transfer | decode on three streams).
  local codec k
  for codec in none fp8_e4m3 logfmt8 logfmt10; do
    for k in 1 ${PIPE_CHUNKS:-2 4 8}; do
      [ "$codec" = none ] && [ "$k" != 1 ] && continue
      section "compressed alltoall $codec, $k chunks"
      local extra=()
      [ "$codec" != none ] && extra=(--codec "$codec" --codec-chunks "$k")
      python3 -m bench run alltoall --backend "${PIPE_BACKEND:-torch-nccl}" --np "$NGPU" \
        -b 56M -e 56M -d bfloat16 "${extra[@]}" -n 20 -w 5 \
        -o "$OUT/pipe-$codec-$k.jsonl" --overwrite 2>&1 | grep -E '^ +[0-9]|rror'
    done
  done
}

part_fused() {
  # BF16, then bf16 / fp8_e4m3 / logfmt8 unfused and fused (--codec-fused: encode into the
  # peers' mapped receive buffers, device barrier, local decode), 4096 tokens x 7168 per
  # rank, each point as `epbench run -G 1` times it (graph replay and loop), in one process
  # group (bench/gpu/fused_gpu.py); then the same option through the CLI once.
  section "fused compressed alltoall ($NGPU GPUs, one process group)"
  timeout -k 10 "${FUSED_TIMEOUT:-200}" python3 -m torch.distributed.run --standalone \
    --nproc-per-node "$NGPU" bench/gpu/fused_gpu.py --backend "${FUSED_BACKEND:-torch-nccl}" \
    --size 56M --codecs "${FUSED_CODECS:-bf16,fp8_e4m3,logfmt8}" --iters 20 --warmup 5 \
    --out "$OUT/fused.jsonl" 2>&1 | grep -vE '^\s*$|OMP_NUM_THREADS|^\*+$' | tee "$OUT/fused.log"
  section "epbench run alltoall --codec fp8_e4m3 --codec-fused (CLI, torch-nccl)"
  timeout -k 10 90 python3 -m bench run alltoall --backend torch-nccl --np "$NGPU" -b 56M \
    -e 56M -d bfloat16 --codec fp8_e4m3 --codec-fused -n 20 -w 5 -G 1 \
    -o "$OUT/fused-cli.jsonl" --overwrite 2>&1 | grep -E '^ +[0-9]|rror|Out of'
}

part_fusedpaths() {
  # The other ways in: CUDA IPC handles instead of symmetric memory, the CuPy nccl
  # backend, and a peer that never reaches the barrier (-T 20: the barrier gives up at 10 s).
  section "fused via CUDA IPC (fp8_e4m3, one process group)"
  timeout -k 10 90 python3 -m torch.distributed.run --standalone --nproc-per-node "$NGPU" \
    bench/gpu/fused_gpu.py --size 56M --codecs fp8_e4m3 --mapping cuda-ipc \
    --out "$OUT/fused-ipc.jsonl" 2>&1 | grep -E 'fused|unfused|no codec|rror'
  section "a peer that hangs before the fused barrier"
  timeout -k 10 60 python3 -m bench run alltoall --backend torch-nccl --np "$NGPU" -b 56M \
    -e 56M -d bfloat16 --codec fp8_e4m3 --codec-fused -n 5 -w 1 -T 20 \
    --inject-fault hang:1:0 2>&1 | grep -vE '^\s*$' | tail -12
  section "epbench run --codec-fused on the nccl backend"
  timeout -k 10 90 "${MPIRUN[@]}" python3 -m bench run alltoall --backend nccl -b 56M -e 56M \
    -d bfloat16 --codec fp8_e4m3 --codec-fused -n 20 -w 5 -G 1 2>&1 \
    | grep -E '^ +[0-9]|rror|Out of'
}

part_mpireplay() {
  # The mpi backend's compiled replay (-G) under Open MPI (pointer handles), host buffers.
  for op in alltoall allreduce pingpong; do
    section "epbench $op mpi -G (Open MPI)"
    "${MPIRUN[@]}" python3 -m bench run "$op" --backend mpi --mpi-buffer numpy -b 1K -e 64K -f 8 \
      -n 50 -w 5 -G 1 2>&1 | grep -E '^ +[0-9]|graph|rror|replay'
  done
}

part_loopnoalign() {
  # Is the small-size loop time a per-block cost? The same loop without the alignment op,
  # and with 200 ops per block instead of 20.
  local op variant
  for op in allreduce alltoall; do
    for variant in "-n 20 --no-align" "-n 200"; do
      section "epbench $op nccl loop, $variant"
      # shellcheck disable=SC2086
      "${MPIRUN[@]}" python3 -m bench run "$op" --backend nccl -b 1K -e 64K -f 4 -d bfloat16 \
        -w 5 $variant 2>&1 | grep -E '^ +[0-9]'
    done
  done
}

part_pyloop() {
  # The loop issued from Python (--python-loop) beside the compiled loop of part_core.
  for op in allreduce alltoall; do
    section "epbench $op nccl, loop issued from Python"
    "${MPIRUN[@]}" python3 -m bench run "$op" --backend nccl -b 1K -e 1M -f 4 -d bfloat16 \
      -n 20 -w 5 --python-loop -o "$OUT/epbench-$op-pyloop.jsonl" --overwrite
  done
}

part_moe() {
  section "moe ($NGPU GPUs)"
  timeout -k 10 "${MOE_TIMEOUT:-300}" python3 bench/gpu/moe_gpu.py --gpus "$NGPU" \
    --stack-dump-s 60 --out "$OUT/moe-$NGPU.json" ${MOE_ARGS:-} 2>&1 | tee "$OUT/moe-$NGPU.log"
}

deepep_build() {
  local src=.device/deepep
  compgen -G "$src/deep_ep_cpp*.so" >/dev/null && return 0
  if [ -f .device/deepep-build.tgz ]; then
    tar -C "$src" -xzf .device/deepep-build.tgz && return 0
  fi
  # With the image's NVSHMEM (pip nvidia-nvshmem): this DeepEP does not link without it.
  local cccl=/usr/local/cuda/include/cccl
  ( cd "$src" && CPATH="$cccl${CPATH:+:$CPATH}" NVCC_APPEND_FLAGS="-I$cccl" \
      TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=32 python3 setup.py build_ext --inplace ) \
    >"$OUT/deepep-build.log" 2>&1 || { tail -30 "$OUT/deepep-build.log"; return 1; }
  ( cd "$src" && tar -czf "$OUT/deepep-build.tgz" deep_ep_cpp*.so )
}

part_deepepbuild() {
  section "DeepEP build"
  deepep_build
}

part_pack() {
  # $OUT returns at most 8 files: everything but the DeepEP build goes into one archive.
  ( cd "$OUT" && tar -czf results.tgz --exclude=results.tgz --exclude=deepep-build.tgz ./* &&
    find . -mindepth 1 ! -name results.tgz ! -name deepep-build.tgz -delete )
}

part_deepep() {
  section "DeepEP build"
  [ -d .device/deepep ] || { echo "no .device/deepep"; return 1; }
  deepep_build || return 1
  section "DeepEP intranode test ($NGPU GPUs)"
  ( cd .device/deepep && PYTHONPATH="$PWD" timeout -k 10 "${DEEPEP_TIMEOUT:-300}" \
      python3 tests/test_intranode.py --num-processes "$NGPU" ) 2>&1 \
    | tee "$OUT/deepep-intranode-$NGPU.log"
}

for part in "$@"; do
  "part_$part" || echo "part $part failed with $?"
done
