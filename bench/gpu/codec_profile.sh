#!/usr/bin/env bash
# Nsight Compute profiles of the Triton codec encoders, one text report per encoder.
#
#   bash bench/gpu/codec_profile.sh [--dry-run] [CODEC:VARIANT[@SHAPE] ...]
#
# Run from the repo root on a CUDA machine. Each encoder runs in its own process
# (bench/gpu/codec_gpu.py --profile: 3 calls on a 4096x7168 bf16 input, the first one
# compiling); ncu profiles the second launch of the Triton encode kernel only, with a small
# section set (speed of light, occupancy, launch stats with registers, warp states and
# scheduler, instruction mix, memory workload, and per-SASS-line source counters for where
# warps stall). Without arguments: FP8-E4M3 and the LogFMT-8/10 encoders (previous, fast,
# defer; LogFMT-10's defer also at bt64 g2, LogFMT-8's shape). Writes under $OUT (default ./codec_profile):
# <label>.txt (ncu's details page), <label>.ncu-rep, <label>.source.csv (SASS with
# counters), profile_env.txt. About 10-15 s per encoder; ncu's clock control (base clocks)
# is left on, so compare the encoders with each other, not with codec_gpu.py's timings.
# --dry-run only checks the arguments through codec_gpu.py (no CUDA needed).
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 2
out=${OUT:-codec_profile}
ncu=${NCU:-/usr/local/cuda/bin/ncu}
python=${PYTHON:-python3}
size=${SIZE:-4096x7168}
dry=0
if [ "${1:-}" = "--dry-run" ]; then
    dry=1
    shift
fi
encoders=("$@")
if [ ${#encoders[@]} -eq 0 ]; then
    encoders=(fp8_e4m3:default
        logfmt8:fast logfmt8:defer
        logfmt10:prev logfmt10:fast logfmt10:defer logfmt10:defer@bt64w4g2)
fi
sections=(SpeedOfLight Occupancy LaunchStats WarpStateStats SchedulerStats InstructionStats
    MemoryWorkloadAnalysis SourceCounters)
section_args=()
for s in "${sections[@]}"; do
    section_args+=(--section "$s")
done

if [ "$dry" -eq 0 ]; then
    mkdir -p "$out" || exit 2
    {
        date -u
        git rev-parse HEAD 2>/dev/null
        nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv
        "$ncu" --version
        "$python" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
    } >"$out/profile_env.txt" 2>&1
fi

began=$SECONDS
failed=0
for enc in "${encoders[@]}"; do
    label=${enc//[:@]/_}
    driver=("$python" bench/gpu/codec_gpu.py --profile "$enc" --sizes "$size" --profile-calls 3)
    if [ "$dry" -eq 1 ]; then
        "${driver[@]}" --dry-run || failed=$((failed + 1))
        continue
    fi
    echo "== $enc ($((SECONDS - began)) s)"
    timeout 60 "$ncu" --target-processes all --kernel-name regex:'_encode_kernel' \
        --launch-skip 1 --launch-count 1 "${section_args[@]}" \
        --export "$out/$label" --force-overwrite "${driver[@]}" >"$out/$label.txt" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || [ ! -f "$out/$label.ncu-rep" ]; then
        echo "   ncu failed (rc $rc); last lines of $out/$label.txt:"
        tail -n 5 "$out/$label.txt"
        failed=$((failed + 1))
        continue
    fi
    "$ncu" --import "$out/$label.ncu-rep" --page source --print-source sass --csv \
        >"$out/$label.source.csv" 2>&1 || echo "   (no source page)"
    grep -E "Duration|Registers Per Thread|Achieved Occupancy|Executed Ipc Active|No Eligible" \
        "$out/$label.txt" | sed 's/^ */   /'
done
echo "done in $((SECONDS - began)) s; $failed of ${#encoders[@]} failed; reports in $out/"
[ "$failed" -eq 0 ]
