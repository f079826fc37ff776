"""Tables of epbench's mpi backend against OSU from bench/cpu/osu_compare.sh's files.

    python bench/cpu/osu_summary.py OUT_DIR

Per size: OSU's mean latency (osu_alltoall bytes per peer, osu_latency one-way), epbench's
graph mode (mean over a block of calls replayed from compiled code; median over blocks) and
loop mode (the Python loop), each the median over rounds, and the ratios to OSU. epbench's
all-to-all size is the whole per-rank buffer, so its row for s bytes per peer is 2s.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys


def osu(path: pathlib.Path) -> dict[int, float]:
    out = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            out[int(fields[0])] = float(fields[1])
    return out


def epbench(path: pathlib.Path, per_peer: int) -> dict[str, dict[int, float]]:
    """{mode: {size per peer: median µs}}."""
    out: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "mode" not in rec or "times_s" not in rec:
            continue
        size = rec["size_bytes"] // per_peer
        out.setdefault(rec["mode"], {})[size] = statistics.median(rec["times_s"]) * 1e6
    return out


def table(out_dir: pathlib.Path, osu_name: str, ours: str, per_peer: int) -> None:
    rounds = sorted(out_dir.glob(f"{osu_name}_*.txt"))
    osu_runs = [osu(p) for p in rounds]
    our_runs = [epbench(out_dir / p.name.replace(osu_name, ours).replace(".txt", ".jsonl"),
                        per_peer) for p in rounds]  # fmt: skip
    sizes = sorted(set(osu_runs[0]) & set(our_runs[0].get("graph", {})))
    print(f"\n{osu_name} vs epbench {ours.split('_')[1]}, {len(rounds)} rounds, µs "
          "(median over rounds; ratio to OSU)\n")  # fmt: skip
    print("| size | OSU | epbench graph (compiled replay) | epbench loop (Python) |")
    print("|---|---|---|---|")
    for size in sizes:
        ref = statistics.median(r[size] for r in osu_runs)
        cells = []
        for mode in ("graph", "loop"):
            got = statistics.median(r[mode][size] for r in our_runs)
            cells.append(f"{got:.2f} ({got / ref:.2f}x)")
        print(f"| {size} | {ref:.2f} | {cells[0]} | {cells[1]} |")


def main() -> int:
    out_dir = pathlib.Path(sys.argv[1])
    table(out_dir, "osu_alltoall", "epbench_alltoall", 2)
    table(out_dir, "osu_latency", "epbench_pingpong", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
