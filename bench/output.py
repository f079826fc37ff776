"""Writing results: the JSON Lines file (durable per record), exports, and the stdout table.

Rank 0 alone writes. Each line is flushed and fsync'd as soon as its point is measured, so
a crash, a timeout or a kill loses at most the point in flight. The stdout table follows
nccl-tests' columns (size, count, type, redop, root, time, algbw, busbw, #wrong) plus
per-iteration p50/p99.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Sequence
from typing import IO

import numpy as np

from bench.errors import UsageError
from results.schema import Footer, Header, Record

GB = 1e9


class ResultWriter:
    """Appends header, records and footer to a run file; safe to close from the watchdog."""

    def __init__(self, path: pathlib.Path, *, overwrite: bool = False) -> None:
        self.path = path
        if path.exists() and not overwrite:
            raise UsageError(f"results file {path} exists; choose another -o or pass --overwrite")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write results to {path}: {exc.strerror}") from None
        self._lock = threading.Lock()
        self.num_records = 0
        self.records: list[Record] = []

    def _write(self, line: str) -> None:
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def header(self, header: Header) -> None:
        self._write(header.to_json())

    def record(self, record: Record) -> None:
        self._write(record.to_json())
        self.num_records += 1
        self.records.append(record)

    def close(self, status: str = "ok", message: str = "") -> None:
        footer = Footer(status=status, message=message, num_records=self.num_records)
        self._write(footer.to_json())
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def export(path: pathlib.Path, fmt: str) -> pathlib.Path:
    """Write the run's tidy table (results.load: one row per record x sample, metadata as
    columns) as CSV or Parquet beside the JSON Lines file."""
    import results

    frame = results.load([path])
    first = ["op", "backend"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    out = path.with_suffix("." + fmt)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return out


def stats_us(times_s: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(times_s, dtype=np.float64) * 1e6
    if arr.size == 0:
        return {
            "mean": float("nan"),
            "median": float("nan"),
            "p50": float("nan"),
            "p99": float("nan"),
        }
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
    }


TABLE_HEADER = (
    f"#{'size':>11} {'count':>11} {'type':>9} {'redop':>6} {'root':>5} "
    f"{'time(us)':>10} {'algbw(GB/s)':>11} {'busbw(GB/s)':>11} {'#wrong':>7} "
    f"{'p50(us)':>10} {'p99(us)':>10}"
)


def table_row(summary: Record, per_iter: Record | None, with_bound: bool = False) -> str:
    """One nccl-tests style row: time/algbw/busbw from `summary` (loop or graph mode),
    p50/p99 from the per-iteration record."""
    st = stats_us(summary.times_s)
    # median of the blocks: one disturbed block must not move the row (nccl-tests has one)
    algbw = summary.size_bytes / (st["median"] * 1e-6) / GB if st["median"] > 0 else 0.0
    pi = stats_us(per_iter.times_s) if per_iter else {"p50": float("nan"), "p99": float("nan")}
    wrong = "N/A" if summary.num_wrong < 0 else str(summary.num_wrong)
    return (
        f" {summary.size_bytes:>11} {summary.count:>11} {summary.dtype:>9} "
        f"{summary.redop:>6} {summary.root:>5} {st['median']:>10.2f} {algbw:>11.2f} "
        f"{algbw * summary.bus_factor:>11.2f} {wrong:>7} {pi['p50']:>10.2f} {pi['p99']:>10.2f}"
        + (f" {summary.extra.get('link_bound_s', float('nan')) * 1e6:>10.2f}" if with_bound else "")
    )
