"""Readers: real OSU / OMB-Py outputs (tests/fixtures/osu), epbench files written through
results/schema.py (including broken and hostile ones), and nccl-tests / DeepEP format samples.

The nccl-tests and DeepEP inputs below are FORMAT SAMPLES, not real outputs: each line is
produced with the printf/f-string formats of nccl-tests src/util.cu (2.18+) and
src/common.cu (2.13), and of DeepEP's tests/legacy/*.py, with made-up numbers. They stay
until real outputs from GPU runs are committed under tests/fixtures/.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from results import schema
from results.loader import load_all, sniff

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


def _record(**kw: object) -> schema.Record:
    base: dict[str, object] = dict(
        op="alltoall",
        backend="nccl",
        dtype="bfloat16",
        mode="per_iter",
        size_bytes=1024,
        count=512,
        num_ranks=2,
        times_s=[1e-5, 1.1e-5, 1.2e-5],
        bus_factor=0.5,
    )
    base.update(kw)
    return schema.Record(**base)  # type: ignore[arg-type]


def _header(**meta: object) -> schema.Header:
    return schema.Header(
        run_id="r1",
        created_utc="2026-01-01T00:00:00Z",
        metadata={"fabric": "ib", **meta},
        config={"iters": 3},
    )


def _write(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- OSU micro-benchmarks 7.4 (C) and OMB-Py, real outputs ------------------------------


def test_osu_fixtures_load_with_printed_values() -> None:
    loaded = load_all([FIXTURES / "osu"], num_ranks=2)
    assert loaded.problems == []
    frame = loaded.frame
    by_label = frame.groupby("label", observed=True)
    assert set(by_label.groups) == {
        "osu_alltoall",
        "osu_alltoall_full_tail",
        "osu_latency",
        "osu_allreduce_full",
        "ombpy_alltoall",
        "ombpy_latency",
    }
    a2a = frame[frame["label"] == "osu_alltoall"].set_index("msg_bytes")
    assert a2a.loc[1048576, "time_s"] == pytest.approx(134.55e-6)
    assert a2a.loc[1048576, "size_bytes"] == 2 * 1048576  # nccl-tests size: per-rank buffer
    assert a2a.loc[1048576, "busbw_gbps"] == pytest.approx(2 * 1048576 / 134.55e-6 / 1e9 / 2)
    assert set(a2a["op"]) == {"alltoall"} and set(a2a["format"]) == {"osu"}
    tail = frame[frame["label"] == "osu_alltoall_full_tail"].set_index("msg_bytes")
    assert tail.loc[1, "extra.p99_us"] == pytest.approx(4.02)
    assert tail.loc[1, "ops_per_sample"] == 1000
    assert set(frame[frame["label"] == "osu_allreduce_full"]["op"]) == {"allreduce"}
    lat = frame[frame["label"] == "osu_latency"]
    assert set(lat["op"]) == {"pingpong"} and len(lat) == 21
    py = frame[frame["label"] == "ombpy_alltoall"]
    assert set(py["format"]) == {"omb-py"} and len(py) == 21


def test_osu_without_world_size_keeps_osu_sizes() -> None:
    frame = load_all([FIXTURES / "osu" / "osu_alltoall.txt"]).frame
    assert set(frame["size_convention"]) == {"osu-message"}
    assert frame["busbw_gbps"].isna().all()
    assert (frame["size_bytes"] == frame["msg_bytes"]).all()


def test_osu_broken_line_reported(tmp_path: pathlib.Path) -> None:
    text = (FIXTURES / "osu" / "osu_latency.txt").read_text().splitlines()
    text[5] = "64    oops"
    path = _write(tmp_path / "lat.txt", text)
    loaded = load_all([path])
    assert len(loaded.frame) == 20
    assert [p.line for p in loaded.problems] == [6]


# ---- epbench JSON Lines -----------------------------------------------------------------


def test_epbench_roundtrip_with_rank_times(tmp_path: pathlib.Path) -> None:
    rec = _record(
        rank_times_s=[[1e-5, 1e-5, 1e-5], [1e-5, 1.1e-5, 1.2e-5]],
        extra={"placement": "out_of_place", "wire_bytes": 2048},
    )
    path = _write(
        tmp_path / "run.jsonl",
        [_header(label="A").to_json(), rec.to_json(), schema.Footer(status="ok").to_json()],
    )
    loaded = load_all([path])
    frame = loaded.frame
    assert loaded.problems == []
    assert list(frame["time_s"]) == [1e-5, 1.1e-5, 1.2e-5]
    assert list(frame["iteration"]) == [0, 1, 2]
    assert set(frame["meta.fabric"]) == {"ib"} and set(frame["config.iters"]) == {3}
    assert set(frame["label"]) == {"A"} and set(frame["placement"]) == {"out_of_place"}
    assert set(frame["extra.wire_bytes"]) == {2048}
    assert frame["algbw_gbps"].iloc[0] == pytest.approx(1024 / 1e-5 / 1e9)
    assert frame["busbw_gbps"].iloc[0] == pytest.approx(0.5 * 1024 / 1e-5 / 1e9)
    assert len(loaded.ranks) == 6 and set(loaded.ranks["rank"]) == {0, 1}


def test_truncated_last_line_loses_only_that_line(tmp_path: pathlib.Path) -> None:
    good = [_record(size_bytes=s).to_json() for s in (1024, 2048)]
    last = _record(size_bytes=4096).to_json()
    path = _write(tmp_path / "crash.jsonl", [_header().to_json(), *good, last[: len(last) // 2]])
    loaded = load_all([path])
    assert sorted(set(loaded.frame["size_bytes"])) == [1024, 2048]
    assert len(loaded.problems) == 1 and loaded.problems[0].line == 4
    assert "not JSON" in loaded.problems[0].message


def test_malformed_lines_reported_rest_loads(tmp_path: pathlib.Path) -> None:
    nan_line = _record(size_bytes=2048).to_json().replace("1e-05", "NaN", 1)
    lines = [
        _header().to_json(),
        _record(size_bytes=1024).to_json(),
        nan_line,  # NaN sample
        '{"kind": "record", "op": "x"}',  # missing fields
        json.dumps({**json.loads(_record().to_json()), "bogus": 1}),  # unknown field
        "[1, 2, 3]",  # not an object
        _record(size_bytes=4096, bus_factor=0.5)
        .to_json()
        .replace('"bus_factor": 0.5', '"bus_factor": NaN'),
        _record(size_bytes=8192).to_json(),
    ]
    loaded = load_all([_write(tmp_path / "bad.jsonl", lines)])
    assert sorted(set(loaded.frame["size_bytes"])) == [1024, 8192]
    assert [p.line for p in loaded.problems] == [3, 4, 5, 6, 7]
    assert all(str(tmp_path / "bad.jsonl") in str(p) for p in loaded.problems)


def test_wrong_schema_version_skips_file_others_load(tmp_path: pathlib.Path) -> None:
    future = json.loads(_header().to_json())
    future["schema_version"] = 99
    bad = _write(tmp_path / "future.jsonl", [json.dumps(future), _record().to_json()])
    good = _write(tmp_path / "good.jsonl", [_header().to_json(), _record().to_json()])
    loaded = load_all([bad, good])
    assert set(loaded.frame["source"]) == {str(good)}
    assert len(loaded.problems) == 1 and "schema version 99" in loaded.problems[0].message


def test_missing_header_still_loads_records(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "nohead.jsonl", [_record().to_json(), _record().to_json()])
    loaded = load_all([path])
    assert len(loaded.frame) == 6
    assert loaded.problems[0].line == 1 and "no valid header" in loaded.problems[0].message


def test_hostile_metadata_is_data_not_markup(tmp_path: pathlib.Path) -> None:
    evil = "<script>alert(1)</script>"
    path = _write(
        tmp_path / "evil.jsonl",
        [_header(hosts=[evil], env={"NCCL_X": evil}).to_json(), _record().to_json()],
    )
    frame = load_all([path]).frame
    assert evil in frame["meta.hosts"].iloc[0]
    assert set(frame["meta.env.NCCL_X"]) == {evil}


def test_footer_error_and_predicted_records(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path / "pred.jsonl",
        [
            _header().to_json(),
            _record(backend="model", predicted=True).to_json(),
            schema.Footer(status="error", message="timeout in alltoall").to_json(),
        ],
    )
    loaded = load_all([path])
    assert loaded.frame["predicted"].all()
    assert "timeout in alltoall" in loaded.problems[0].message


def test_unknown_and_missing_files_reported(tmp_path: pathlib.Path) -> None:
    junk = _write(tmp_path / "junk.txt", ["hello", "world"])
    loaded = load_all([junk, tmp_path / "absent.jsonl"])
    assert loaded.frame.empty
    assert {p.source for p in loaded.problems} == {str(junk), str(tmp_path / "absent.jsonl")}


def test_results_never_unpickles() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "results"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for bad in (
            "import pickle",
            "from pickle",
            "read_pickle(",
            "allow_pickle=True",
            "import dill",
            "import joblib",
        ):
            assert bad not in text, f"{path}: {bad}"


# ---- nccl-tests text: FORMAT SAMPLES (printf formats of src/util.cu / common.cu) --------


def _nccl_line(
    size: int,
    dtype: str,
    redop: str,
    blocks: list[tuple[float, float, float]],
    per_iter: bool = False,
    old: bool = False,
) -> str:
    """One table line, field widths as nccl-tests' printf formats ("%12li  %12li  %8s ...")."""
    line = f"{size:12d}  {size // 4:12d}  {dtype:>8}  {redop:>6}  {-1:6d}"
    for time_us, algbw, busbw in blocks:
        if old:  # 2.13: "  %7s  %6.2f  %6.2f  %5g"
            line += f"  {time_us:7.2f}  {algbw:6.2f}  {busbw:6.2f}  {0:5g}"
        else:  # 2.18+: "  %7s  %6s  %6s  %6g"
            line += f"  {time_us:7.2f}  {algbw:6.2f}  {busbw:6.2f}  {0:6g}"
        if per_iter:  # "  %7s  %7s  %7s  %7s": i_min i_max i_p99 i_cv%
            line += (
                f"  {time_us * 0.9:7.2f}  {time_us * 1.3:7.2f}  {time_us * 1.2:7.2f}  {3.1:7.2f}"
            )
    return line


NCCL_219_HEAD = [
    "# nccl-tests version 2.19.6 nccl-headers=22809 nccl-library=22809",
    "# Collective test starting: all_reduce_perf",
    "# nThread 1 nGpus 1 minBytes 1024 maxBytes 1048576 step: 64(factor) warmup iters: 5 "
    "iters: 20 agg iters: 1 validation: 1 graph: 0 unalign: 0",
    "#",
    "# Using devices",
    "#  Rank  0 Group  0 Pid  41234 on gpu-node1 device  0 [0000:18:00] NVIDIA H200",
    "#  Rank  1 Group  0 Pid  41235 on gpu-node1 device  1 [0000:2a:00] NVIDIA H200",
    "gpu-node1:41234:41234 [0] NCCL INFO Bootstrap: Using eth0:10.0.0.1<0>",
    "gpu-node1:41234:41234 [0] NCCL INFO NCCL version 2.28.9+cuda12.9",
    "#",
    "#                                                              out-of-place        "
    "               in-place          ",
    "#       size         count      type   redop    root     time   algbw   busbw "
    "#wrong     time   algbw   busbw  #wrong ",
    "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)   "
    "         (us)  (GB/s)  (GB/s)         ",
]


def test_nccl_text_219_with_info_lines(tmp_path: pathlib.Path) -> None:
    lines = [
        *NCCL_219_HEAD,
        _nccl_line(1024, "float", "sum", [(11.5, 0.09, 0.09), (11.2, 0.09, 0.09)]),
        "gpu-node1:41235:41300 [1] NCCL INFO Channel 00/0 : 1[1] -> 0[0] via P2P/IPC",
        _nccl_line(65536, "float", "sum", [(11.1, 5.90, 5.90), (11.0, 5.96, 5.96)]),
        _nccl_line(1048576, "float", "sum", [(15.8, 66.36, 66.36), (15.6, 67.2, 67.2)]),
        "# Out of bounds values : 0 OK",
        "# Avg bus bandwidth    : 25.1 ",
        "#",
        "# Collective test concluded: all_reduce_perf",
    ]
    loaded = load_all([_write(tmp_path / "ar.log", lines)])
    assert loaded.problems == []
    frame = loaded.frame
    assert len(frame) == 6 and set(frame["op"]) == {"allreduce"}
    assert set(frame["placement"]) == {"out_of_place", "in_place"}
    row = frame[(frame["size_bytes"] == 1048576) & (frame["placement"] == "out_of_place")]
    assert row["time_s"].iloc[0] == pytest.approx(15.8e-6)
    assert row["busbw_gbps"].iloc[0] == pytest.approx(1048576 / 15.8e-6 / 1e9)  # 2(n-1)/n = 1
    assert set(frame["num_ranks"]) == {2} and set(frame["dtype"]) == {"float32"}
    assert set(frame["ops_per_sample"]) == {20} and set(frame["mode"]) == {"loop"}
    assert set(frame["meta.nccl_tests_version"]) == {"2.19.6"}


def test_nccl_text_per_iter_columns_and_broken_line(tmp_path: pathlib.Path) -> None:
    head = [
        *NCCL_219_HEAD[:3],
        "# Per-Iteration Report: CUDA event timing; i_* uses max over process rows ",
        *NCCL_219_HEAD[3:10],
        "#       size         count      type   redop    root     time   algbw   busbw "
        "#wrong    i_min    i_max    i_p99    i_cv%     time   algbw   busbw  #wrong "
        "   i_min    i_max    i_p99    i_cv% ",
    ]
    broken = _nccl_line(2048, "bfloat16", "sum", [(12.0, 0.2, 0.2)], per_iter=True)
    lines = [
        *head,
        _nccl_line(
            1024, "bfloat16", "sum", [(11.5, 0.09, 0.09), (11.2, 0.09, 0.09)], per_iter=True
        ),
        broken[:70] + "gpu-node1:1:2 [0] NCCL INFO cut in",
        _nccl_line(
            4096, "bfloat16", "sum", [(12.5, 0.33, 0.33), (12.2, 0.34, 0.34)], per_iter=True
        ),
    ]
    loaded = load_all([_write(tmp_path / "pi.log", lines)])
    assert sorted(set(loaded.frame["size_bytes"])) == [1024, 4096]
    assert set(loaded.frame["dtype"]) == {"bfloat16"}
    assert [p.line for p in loaded.problems] == [len(head) + 2]


def test_nccl_text_213_and_concatenated_tests(tmp_path: pathlib.Path) -> None:
    old_head = [
        "# nThread 1 nGpus 2 minBytes 8 maxBytes 1024 step: 2(factor) warmup iters: 5 "
        "iters: 20 agg iters: 1 validation: 1 graph: 0",
        "#",
        "# Using devices",
        "#   Rank  0 Pid   1234 on      node1 device  0 [0x18] NVIDIA H100 80GB HBM3",
        "#   Rank  1 Pid   1234 on      node1 device  1 [0x2a] NVIDIA H100 80GB HBM3",
        "#",
        "#                                                       out-of-place            "
        "           in-place          ",
        "#       size         count      type   redop    root     time   algbw   busbw "
        "#wrong     time   algbw   busbw #wrong",
    ]
    lines = [
        *old_head,
        _nccl_line(1024, "half", "none", [(20.0, 0.05, 0.03), (20.5, 0.05, 0.02)], old=True),
        *old_head,
        _nccl_line(512, "half", "none", [(19.0, 0.03, 0.01), (19.5, 0.03, 0.01)], old=True),
    ]
    loaded = load_all([_write(tmp_path / "alltoall_perf.out", lines)])
    frame = loaded.frame
    assert loaded.problems == []
    assert frame["run_id"].nunique() == 2
    assert set(frame["op"]) == {"alltoall"}  # from the file name: 2.13 does not print it
    assert set(frame["dtype"]) == {"float16"}
    assert set(frame["bus_factor"]) == {0.5}


# ---- nccl-tests -J JSON: FORMAT SAMPLE (keys of src/util.cu, JSON_FILE_VERSION 3) -------


def _nccl_json(per_iter: bool) -> dict:
    def result(size: int, t: float) -> dict:
        entry = {
            "size": size,
            "count": size // 2,
            "type": "bfloat16",
            "redop": "none",
            "root": "    -1",
            "out_of_place": {
                "time": t,
                "alg_bw": size / t / 1e3,
                "bus_bw": size / t / 2e3,
                "nwrong": 0.0,
            },
            "in_place": {"time": t * 1.01, "alg_bw": 1.0, "bus_bw": 0.5, "nwrong": 0.0},
            "actual_iterations": 20,
            "experiment_name": "alltoall",
        }
        if per_iter:
            times = [t * (1 + 0.01 * i) for i in range(20)]
            entry["out_of_place_per_iter"] = {
                "skipped_iterations": 0,
                "times_us": times,
                "per_process_max_times_us": [times, [x * 0.97 for x in times]],
            }
        return entry

    return {
        "version": 3,
        "start_time": "2026-01-01 00:00:00",
        "args": ["./build/alltoall_perf", "-b", "1K", "-e", "1M", "-a", "3", "-J", "x.json"],
        "env": ["NCCL_DEBUG=INFO", "HOME=/root", "NCCL_API_KEY=secret"],
        "nccl_version": 22809,
        "config": {
            "nthreads": 1,
            "ngpus": 1,
            "minimum_bytes": 1024,
            "iterations": 20,
            "aggregated_iterations": 1,
            "graph": 0,
            "warmup_iters": 5,
            "devices": [{"rank": 0, "hostname": "n1"}, {"rank": 1, "hostname": "n1"}],
        },
        "results": [result(1024, 9.8), result(1048576, 13.7)],
        "out_of_bounds": {"count": 0, "okay": "true"},
        "errors": [],
        "end_time": "2026-01-01 00:00:05",
    }


def test_nccl_json_mean_and_per_iteration(tmp_path: pathlib.Path) -> None:
    mean_path = tmp_path / "a.json"
    mean_path.write_text(json.dumps(_nccl_json(False)))
    iter_path = tmp_path / "b.json"
    iter_path.write_text(json.dumps(_nccl_json(True)))
    assert sniff(mean_path) == "nccl-tests-json"
    loaded = load_all([mean_path, iter_path])
    assert loaded.problems == []
    frame = loaded.frame
    mean = frame[frame["source"] == str(mean_path)]
    assert len(mean) == 4 and set(mean["aggregation"]) == {"max"}  # -a 3
    assert set(mean["op"]) == {"alltoall"} and set(mean["num_ranks"]) == {2}
    per = frame[(frame["source"] == str(iter_path)) & (frame["mode"] == "per_iter")]
    assert len(per) == 40 and set(per["placement"]) == {"out_of_place"}
    assert per["time_s"].max() == pytest.approx(13.7e-6 * 1.19)
    assert len(loaded.ranks) == 2 * 2 * 20
    env = frame["meta.env.NCCL_DEBUG"].iloc[0]
    assert env == "INFO" and "meta.env.HOME" not in frame
    assert set(frame["meta.env.NCCL_API_KEY"]) == {"<redacted>"}


def test_nccl_json_truncated_is_reported(tmp_path: pathlib.Path) -> None:
    text = json.dumps(_nccl_json(False))
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    loaded = load_all([path])
    assert loaded.frame.empty and "incomplete" in loaded.problems[0].message


# ---- DeepEP tests ----------------------------------------------------------------------
DEEPEP_FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "deepep"


def test_deepep_real_intranode_log() -> None:
    """The real log (2x H200): every tuning line and the three `Best` rows, with the
    printed times and the byte counts recovered from GB/s x time."""
    path = DEEPEP_FIXTURE / "test_intranode_2xH200.log"
    loaded = load_all([path])
    assert loaded.problems == []
    frame = loaded.frame
    tuning = sum(line.startswith("[tuning] SMs") for line in path.read_text().splitlines())
    assert len(frame) == tuning + 3
    best = frame[frame["variant"] == "best"]
    assert sorted(zip(best["op"], best["dtype"], strict=True)) == [
        ("combine", "bfloat16"), ("dispatch", "bfloat16"), ("dispatch", "float8_e4m3fn"),
    ]  # fmt: skip
    by = {(r.op, r.dtype): r for r in best.itertuples()}
    assert by["dispatch", "float8_e4m3fn"].time_s == pytest.approx(244.83e-6)
    assert by["dispatch", "bfloat16"].time_s == pytest.approx(344.36e-6)
    assert by["combine", "bfloat16"].time_s == pytest.approx(408.44e-6)
    # NVL bytes = GB/s x time: the BF16 dispatch moved about twice the FP8 one's bytes
    ratio = by["dispatch", "bfloat16"].size_bytes / by["dispatch", "float8_e4m3fn"].size_bytes
    assert ratio == pytest.approx(2 / (1 + 4 / 128), rel=1e-3)
    assert set(frame["config.num_tokens"]) == {4096}


# ---- DeepEP tests: FORMAT SAMPLES (f-strings of tests/legacy/test_*.py) -----------------


def test_deepep_intranode_tuning_lines(tmp_path: pathlib.Path) -> None:
    bytes_fp8 = 8160 * 7168 * (1 + 4 / 128)  # received tokens x hidden, FP8 + scales
    lines = ["[config] num_tokens=4096, hidden=7168, num_topk=8"]
    for chunk, t in ((4, 260.0), (6, 245.0)):
        lines.append(
            f"[tuning] SMs 24, NVL chunk {chunk}: {bytes_fp8 / 1e9 / (t * 1e-6):.2f}"
            f" GB/s (NVL), {t:.2f} us"
        )
    lines.append(
        f"[tuning] Best dispatch (FP8): SMs 24, NVL chunk 6, "
        f"{bytes_fp8 / 1e9 / 245e-6:.2f} GB/s (NVL), t: 245.00 us"
    )
    lines += [
        "",
        f"[tuning] SMs 24, NVL chunk 1: {2 * 8160 * 7168 / 1e9 / 408e-6:.2f} GB/s (NVL), 408.00 us",
        f"[tuning] Best combine: SMs 24, NVL chunk 1: {2 * 8160 * 7168 / 1e9 / 408e-6:.2f}"
        " GB/s (NVL), t: 408.00 us",
    ]
    loaded = load_all([_write(tmp_path / "intranode.log", lines)])
    assert loaded.problems == []
    frame = loaded.frame
    assert len(frame) == 5
    best = frame[frame["variant"] == "best"].set_index("op")
    assert best.loc["dispatch", "time_s"] == pytest.approx(245e-6)
    assert best.loc["dispatch", "dtype"] == "float8_e4m3fn"
    assert best.loc["dispatch", "size_bytes"] == pytest.approx(bytes_fp8, rel=1e-3)
    assert set(frame[frame["op"] == "dispatch"]["size_bytes"]) == {
        best.loc["dispatch", "size_bytes"]
    }
    assert set(frame["config.num_tokens"]) == {4096}
    assert set(frame["meta.kernel"]) == {"intranode"}


def test_deepep_internode_and_low_latency(tmp_path: pathlib.Path) -> None:
    inter = [
        "[tuning] SMs 24, NVL chunk 4, RDMA chunk 8: 20 + 420 us, 43.10 GB/s (RDMA), "
        "140.2 GB/s (NVL) ",
        "[tuning] Best dispatch (BF16): SMs 24, NVL chunk 4, RDMA chunk 8: 20 + 420 us, "
        "43.10 GB/s (RDMA), 140.2 GB/s (NVL)",
        "[tuning] Best combine: SMs 24, NVL chunk 1, RDMA chunk 12, 21.00 + 431.00 us, "
        "43.00 GB/s (RDMA), 139.00 GB/s (NVL)",
    ]
    low = [
        "[rank 0] Dispatch bandwidth: 40.12 GB/s, avg_t=77.00 us | Combine bandwidth: "
        "52.30 GB/s, avg_t=114.00 us",
        "[rank 1] Dispatch bandwidth: 39.90 GB/s, avg_t=78.00 us | Combine bandwidth: "
        "51.80 GB/s, avg_t=115.00 us",
    ]
    loaded = load_all([_write(tmp_path / "inter.log", inter), _write(tmp_path / "ll.log", low)])
    assert loaded.problems == []
    frame = loaded.frame
    inter_rows = frame[frame["label"] == "inter"]
    assert set(inter_rows["size_convention"]) == {"deepep-rdma"}
    combine = inter_rows[inter_rows["op"] == "combine"]
    assert combine["time_s"].iloc[0] == pytest.approx(431e-6)
    assert combine["extra.notify_us"].iloc[0] == pytest.approx(21.0)
    ll = frame[frame["label"] == "ll"]
    assert len(ll) == 4 and set(ll["backend"]) == {"deepep-ll"}
    assert np.allclose(sorted(ll[ll["op"] == "dispatch"]["time_s"]), [77e-6, 78e-6])


def test_real_epbench_run_output() -> None:
    """`epbench run alltoall --np 2 --backend gloo` as the runner writes it."""
    loaded = load_all([FIXTURES / "epbench" / "alltoall_gloo_np2.jsonl"])
    frame = loaded.frame
    assert loaded.problems == []
    assert set(frame["mode"]) == {"per_iter", "loop"} and set(frame["op"]) == {"alltoall"}
    assert sorted(set(frame["size_bytes"])) == [1024, 8192, 65536]
    loop = frame[frame["mode"] == "loop"]
    assert set(loop["ops_per_sample"]) == {20} and len(loop) == 15
    assert len(frame[frame["mode"] == "per_iter"]) == 60
    assert set(loaded.ranks["rank"]) == {0, 1} and len(loaded.ranks) == 2 * 75
    assert set(frame["meta.launcher"]) == {"spawn"}


def test_package_level_load_api() -> None:
    import results
    import results.report

    frame = results.load(FIXTURES / "osu" / "osu_latency.txt")
    assert len(frame) == 21
    assert len(results.load_all([FIXTURES / "osu"]).frame) == 125


def test_byte_order_mark_and_empty_file(tmp_path: pathlib.Path) -> None:
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + f"{_header().to_json()}\n{_record().to_json()}\n".encode())
    empty = tmp_path / "empty.log"
    empty.write_text("")
    loaded = load_all([bom, empty])
    assert len(loaded.frame) == 3 and set(loaded.frame["meta.fabric"]) == {"ib"}
    assert [str(p) for p in loaded.problems] == [f"{empty}: file is empty"]
