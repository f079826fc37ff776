"""The pieces `epbench codec`, `load`, `compare` and `report` are built from, each on its own:
the option parsers, the bounds and settings they turn into, and the tables and records built
from real measurements (no files, no console but a recording one)."""

from __future__ import annotations

import argparse
import copy
import pathlib

import pytest
import torch
from rich.console import Console

from bench import codec_tables, report_args, report_tables
from bench.errors import UsageError
from collectives import codecs
from collectives.codecs import accuracy, throughput
from results.compare import CompareSettings, compare
from results.loader import load_all
from results.synthetic import write_runs


def _text(*renderables: object) -> str:
    console = Console(record=True, width=200)
    for item in renderables:
        console.print(item)
    return console.export_text()


def test_accuracy_records_and_claims_from_a_real_measurement() -> None:
    inputs = {"gaussian": accuracy.sample("gaussian", 8, 256, 0)}
    chosen = [codecs.get(name, "numpy") for name in accuracy.CLAIM_CODECS]
    results = accuracy.measure(inputs, chosen, torch.float32)
    records = codec_tables.accuracy_records(results, inputs, "float32", "numpy")
    assert [r.codec for r in records] == list(accuracy.CLAIM_CODECS)
    assert {r.size_bytes for r in records} == {8 * 256 * 4}
    assert records[0].extra["claims"] == accuracy.verdicts(results["gaussian"])
    lines = codec_tables.claim_lines("gaussian", accuracy.verdicts(results["gaussian"]))
    assert len(lines) == 2 and "LogFMT-8 more accurate" in lines[0]
    without_bf16 = {k: v for k, v in results["gaussian"].items() if k != "bf16"}
    assert (
        "claims not evaluated" in codec_tables.claim_lines("g", accuracy.verdicts(without_bf16))[0]
    )
    text = _text(codec_tables.accuracy_table("gaussian", results["gaussian"]))
    assert "codec accuracy · gaussian" in text and all(c in text for c in accuracy.CLAIM_CODECS)


def test_throughput_records_leave_the_measurement_intact() -> None:
    x = torch.from_numpy(accuracy.sample("gaussian", 4, 256, 0)).bfloat16()
    phases = throughput.measure(codecs.get("fp8_e4m3", "numpy"), x, 0, 2)
    before = copy.deepcopy(phases)
    common = {"device": "cpu", "numba_threads": None}
    records = codec_tables.throughput_records("fp8_e4m3", phases, x.numel(), "bfloat16", common)
    assert phases == before
    assert [r.op for r in records] == ["codec_encode", "codec_decode"]
    for record, phase in zip(records, ("encode", "decode"), strict=True):
        assert record.times_s == phases[phase]["times_s"] and "times_s" not in record.extra
        assert record.extra["device"] == "cpu" and record.size_bytes == 4 * 256 * 2
    text = _text(codec_tables.bench_table(records))
    assert "fp8_e4m3" in text and "numpy" in text and "enc r+w" in text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epbench")
    sub = parser.add_subparsers(dest="command")
    report_args.add_load(sub, lambda args: 0)
    report_args.add_compare(sub, lambda args: 1)
    report_args.add_report(sub, lambda args: 2)
    return parser


def test_parsers_take_the_documented_options() -> None:
    parser = _parser()
    load = parser.parse_args(["load", "a", "b", "--format", "osu", "-o", "t.csv"])
    assert load.paths == ["a", "b"] and load.fmt == "osu" and load.output == pathlib.Path("t.csv")
    assert load.func(load) == 0
    cmp = parser.parse_args(["compare", "a", "--by", "fabric", "--margin", "0.1"])
    assert cmp.by == "fabric" and cmp.margin == 0.1 and cmp.output is None and cmp.func(cmp) == 1
    rep = parser.parse_args(
        ["report", "a", "-o", "d", "--by", "x", "--by", "y", "--nic-gbit", "400"]
    )
    assert rep.by == ["x", "y"] and rep.nic_gbit == [400.0] and rep.title == "epbench report"
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "a"])  # -o DIR is required
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", "a"])  # --by is required


def test_bounds_and_settings_name_the_bad_value() -> None:
    found = report_args.bounds(["NIC 400G=50", "a=b=3"], [400.0])
    assert [(b.name, b.gbps) for b in found] == [
        ("NIC 400G", 50.0),
        ("a=b", 3.0),
        ("NIC 400 Gb/s line rate", 50.0),
    ]
    with pytest.raises(UsageError, match="--bound 'x' must be NAME=GBPS"):
        report_args.bounds(["x"], [])
    with pytest.raises(UsageError, match="NIC rate -1.0"):
        report_args.bounds([], [-1.0])
    args = _parser().parse_args(["compare", "a", "--by", "k", "--margin", "2"])
    with pytest.raises(UsageError, match="margin 2.0"):
        report_args.settings(args)
    args.margin = 0.1
    assert report_args.settings(args) == CompareSettings(margin=0.1)


def test_loaded_and_comparison_tables_escape_file_strings(tmp_path: pathlib.Path) -> None:
    write_runs(tmp_path, num_rows=1200, runs_per_side=2, sizes=(1024, 65536))
    loaded = load_all([tmp_path])
    for col in ("label", "meta.label"):
        loaded.frame[col] = loaded.frame[col].astype(str) + "[bold]"
    text = _text(report_tables.loaded_table(loaded.frame, len(loaded.runs)))
    assert f"{len(loaded.frame)} rows from 4 runs" in text and "ib[bold]" in text
    result = compare(loaded.frame, "fabric", settings=CompareSettings(n_boot=200))
    text = _text(report_tables.comparison_table(result))
    assert all(col in text for col in report_tables.COMPARE_COLUMNS)
    assert text.count("alltoall") == len(result.table) == 2
    lines = report_tables.differing_lines(result)
    assert lines == [r"  meta.label: ib\[bold] vs roce\[bold]"]
    assert _text(*lines).splitlines() == ["  meta.label: ib[bold] vs roce[bold]"]
