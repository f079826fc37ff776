#!/usr/bin/env bash
# epbench's mpi backend beside the OSU micro-benchmarks, same MPI, same host, 2 ranks.
#
#   bash bench/cpu/osu_compare.sh OSU_PREFIX OUT_DIR [ROUNDS]
#
# OSU_PREFIX is an OMB 7.4 install built with this venv's mpicc (configure CC=mpicc
# CXX=mpicxx --prefix=...; make install). Each round runs, back to back: osu_alltoall and
# osu_latency (default output: mean over iterations, 1 B - 4 KiB and 64 KiB - 1 MiB), then
# `epbench run alltoall|pingpong --backend mpi -G 10`, whose graph-mode time is the mean over
# a block of back-to-back calls replayed from compiled code (mpi_native.py), and whose p50
# column is the per-iteration Python path. Rounds alternate the tools so drift hits both.
# Every rank raises its own CFS group weight (ranks start in their own session under hydra),
# as a shared machine otherwise swings two busy-polling ranks by milliseconds.
# `python bench/cpu/osu_summary.py OUT_DIR` prints the tables of docs/BENCHMARKS.md §2.
set -euo pipefail
OSU=${1:?OSU install prefix}/libexec/osu-micro-benchmarks/mpi
OUT=${2:?output directory}
ROUNDS=${3:-4}
mkdir -p "$OUT"
prio() { echo "echo -20 > /proc/self/autogroup 2>/dev/null; exec \"\$@\""; }
run2() { mpiexec -n 2 bash -c "$(prio)" rank "$@"; }
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r ($(date +%T))"
  run2 "$OSU/collective/osu_alltoall" -m 1:1048576 >"$OUT/osu_alltoall_$r.txt"
  run2 python -m bench run alltoall --backend mpi -d int8 -b 32 -e 2M -n 1000 -w 100 -G 10 \
    -o "$OUT/epbench_alltoall_$r.jsonl" --overwrite >"$OUT/epbench_alltoall_$r.txt" 2>&1
  run2 "$OSU/pt2pt/osu_latency" -m 1:1048576 >"$OUT/osu_latency_$r.txt"
  run2 python -m bench run pingpong --backend mpi -d int8 -b 64 -e 1M -n 2000 -w 200 -G 10 \
    -o "$OUT/epbench_pingpong_$r.jsonl" --overwrite >"$OUT/epbench_pingpong_$r.txt" 2>&1
done
