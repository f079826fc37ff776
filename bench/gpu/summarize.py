"""Markdown tables from one device campaign's files (bench/gpu/campaign.sh).

    python bench/gpu/summarize.py DIR

DIR holds the unpacked results.tgz. Prints: the nccl backend against nccl-tests from the
same call (loop vs loop, graph vs graph; ratio of times, and busbw ratio at large sizes)
with the issue's targets; and the MoE table of each moe-N.json beside DeepEP's `Best`
lines from deepep-intranode-N.log.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pandas as pd

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from results.loader import load_all

OPS = {"allreduce": "all_reduce", "alltoall": "alltoall"}


def target(size: int) -> str:
    if size <= 64 * 1024:
        return "time <= 1.15x"
    if size >= 64 * 2**20:
        return "busbw >= 0.97x"
    if 2**20 <= size <= 16 * 2**20:
        return "busbw >= 0.90x"
    return "-"


def nccl_table(folder: pathlib.Path, op: str) -> None:
    name = OPS[op]
    paths = [folder / f"nccltests-{name}.txt", folder / f"nccltests-{name}-graph.txt",
             folder / f"epbench-{op}-nccl.jsonl"]  # fmt: skip
    paths = [p for p in paths if p.exists()]
    if len(paths) < 3:
        return
    frame = load_all(paths).frame
    frame = frame[frame["mode"].isin(["loop", "graph"])]
    med = frame.groupby(["format", "mode", "size_bytes"]).agg(
        time_s=("time_s", "median"), busbw=("busbw_gbps", "median")
    )
    print(f"\n#### {op}, bf16, 2 ranks: epbench `nccl` / nccl-tests (same call)\n")
    print("| size | loop µs (ours / nccl-tests) | graph µs (ours / nccl-tests) | "
          "time ratio loop / graph | busbw ratio loop / graph | target |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for size in sorted(med.loc["epbench"].index.get_level_values("size_bytes").unique()):
        cells, ratios, bw = [], [], []
        for mode in ("loop", "graph"):
            try:
                ours = med.loc[("epbench", mode, size)]
                ref = med.loc[("nccl-tests", mode, size)]
            except KeyError:
                cells.append("-")
                continue
            cells.append(f"{ours.time_s * 1e6:.2f} / {ref.time_s * 1e6:.2f}")
            ratios.append(f"{ours.time_s / ref.time_s:.2f}")
            bw.append(f"{ours.busbw / ref.busbw:.2f}")
        print(f"| {_size(size)} | {cells[0]} | {cells[1]} | {' / '.join(ratios)} | "
              f"{' / '.join(bw)} | {target(size)} |")  # fmt: skip


def _size(n: int) -> str:
    for unit, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= scale:
            return f"{n // scale}{unit}"
    return str(n)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]  # fmt: skip
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def moe_table(folder: pathlib.Path) -> None:
    for path in sorted(folder.glob("moe-*.json")):
        data = json.loads(path.read_text())
        print(f"\n#### MoE, {data['world']} GPUs ({path.name})\n")
        rows = pd.DataFrame(data.get("normal", []))
        if not rows.empty:
            cols = ["case", "p50_us", "b2b_mean_us", "graph_us", "raw_b2b_mean_us",
                    "b2b_vs_raw", "graph_vs_raw", "b2b_nvl_gbps", "num_wrong"]  # fmt: skip
            print(markdown(rows[[c for c in cols if c in rows]].round(2)))
        ll = data.get("low_latency", [])
        if ll:
            print("\n| LL tokens | dispatch p50 / graph µs | raw p50 µs | combine p50 / graph µs "
                  "| raw p50 µs | #wrong |\n|---|---|---|---|---|---|")  # fmt: skip
            for r in ll:
                print(f"| {r['tokens']} | {r['dispatch']['p50_us']:.1f} / "
                      f"{r.get('dispatch_graph_us', float('nan')):.1f} | "
                      f"{r['raw_dispatch_bytes']['p50_us']:.1f} | {r['combine']['p50_us']:.1f} / "
                      f"{r.get('combine_graph_us', float('nan')):.1f} | "
                      f"{r['raw_combine_bytes']['p50_us']:.1f} | {r['num_wrong']} |")  # fmt: skip
        if data.get("overlap"):
            print("\noverlap:", {k: round(v, 3) if isinstance(v, float) else v
                                 for k, v in data["overlap"].items()})  # fmt: skip
        log = folder / f"deepep-intranode-{data['world']}.log"
        if log.exists():
            print("\nDeepEP:")
            for line in log.read_text().splitlines():
                if "Best" in line:
                    print("   ", line.strip())


def main() -> None:
    folder = pathlib.Path(sys.argv[1])
    for op in OPS:
        nccl_table(folder, op)
    moe_table(folder)


if __name__ == "__main__":
    main()
