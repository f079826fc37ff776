"""`epbench simulate`: predictions written in the results schema, labelled predicted."""

from __future__ import annotations

import pathlib

import pytest
from rich.console import Console

from bench.cli import main
from bench.cmd_simulate import demo, parse_size
from results.schema import Footer, Header, Record, parse_line


def _read(path: pathlib.Path) -> tuple[Header, list[Record], Footer]:
    lines = [parse_line(line) for line in path.read_text().splitlines()]
    header, footer = lines[0], lines[-1]
    assert isinstance(header, Header) and isinstance(footer, Footer)
    records = [r for r in lines[1:-1] if isinstance(r, Record)]
    assert footer.num_records == len(records)
    return header, records, footer


def test_simulate_writes_predicted_records(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "p.jsonl"
    argv = ["simulate", "--preset", "deepseek-mpft", "--nodes", "4", "--compare",
            "deepseek-mrft-roce", "--op", "alltoall", "--op", "dispatch", "--op", "combine",
            "--op", "alltoallv", "-b", "1M", "-e", "16M", "-f", "4", "--seeds", "3", "-o", str(out)]  # fmt: skip  # noqa: E501
    assert main(argv) == 0
    header, records, _ = _read(out)
    assert header.metadata["predicted"] is True
    assert all(r.predicted and r.backend == "model" and r.mode == "per_iter" for r in records)
    assert all(len(r.times_s) == 1 and r.times_s[0] > 0 for r in records)
    clusters = {r.extra["cluster"] for r in records}
    assert clusters == {"deepseek-mpft", "deepseek-mrft-roce"}
    a2a = [r for r in records if r.op == "alltoall" and r.extra["cluster"] == "deepseek-mpft"]
    assert [r.size_bytes for r in a2a] == [1 << 20, 4 << 20, 16 << 20]
    assert a2a[-1].times_s[0] > a2a[0].times_s[0]
    classes = a2a[0].extra["link_class_bytes"]
    assert classes["forwarded_bytes"] == classes["scale_out_cross_plane_bytes"] > 0
    roce = [r for r in records if r.extra["cluster"] == "deepseek-mrft-roce" and r.op == "alltoall"]
    assert len(roce[0].extra["ecmp_seed_times_s"]) == 3 and roce[0].extra["routing"] == "ecmp"
    tokens = [r for r in records if r.op == "dispatch"]
    assert tokens[0].extra["tokens_per_rank"] == 1 << 20 and tokens[0].dtype == "fp8"


def test_predicted_alltoall_matches_nic_bound(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "a.jsonl"
    assert main(["simulate", "--preset", "deepseek-mrft", "--nodes", "4", "-b", "1G", "-e", "1G",
                 "-o", str(out)]) == 0  # fmt: skip
    (rec,) = _read(out)[1]
    world = 32
    scale_out_per_nic = (1 << 30) // world * (world - 8)  # each GPU's inter-node bytes
    assert rec.extra["transfer_s"] == pytest.approx(scale_out_per_nic / 50e9, rel=1e-6)


def test_simulate_user_errors(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    for argv in (
        ["simulate", "--preset", "nope"],
        ["simulate", "-b", "12Q"],
        ["simulate", "-b", "1G", "-e", "1M"],
        ["simulate", "--nodes", "2", "--op", "dispatch", "--experts", "7"],
        ["simulate", "--preset", "deepseek-mpft", "--forwarding", "none"],
    ):
        assert main([*argv, "-o", str(tmp_path / "x.jsonl")]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("epbench: error:") and err.count("\n") == 1, err


def test_parse_size() -> None:
    assert parse_size("64") == 64 and parse_size("16M") == 16 << 20 and parse_size("1g") == 1 << 30


def test_demo_predicts_mpft_mrft_ib_roce(tmp_path: pathlib.Path) -> None:
    console = Console(record=True, width=120)
    paths = demo(tmp_path, console)
    records = _read(paths[0])[1]
    names = {r.extra["cluster"] for r in records}
    assert names == {"deepseek-mpft", "deepseek-mrft", "deepseek-mpft-roce", "deepseek-mrft-roce"}
    assert all(r.num_ranks == 2048 for r in records)
    assert "predicted" in console.export_text()
