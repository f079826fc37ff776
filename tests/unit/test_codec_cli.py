"""`epbench codec accuracy | bench` and the demo hook, through the real CLI entry point."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from rich.console import Console

from bench import cmd_codec
from bench.cli import main
from results.schema import Header, Record, parse_line


def read_run(path: pathlib.Path) -> tuple[Header, list[Record]]:
    lines = [parse_line(line) for line in path.read_text().splitlines()]
    header, records = lines[0], [r for r in lines if isinstance(r, Record)]
    assert isinstance(header, Header)
    return header, records


def test_accuracy_writes_records_with_claims(tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "acc.jsonl"
    rc = main(["codec", "accuracy", "--tokens", "16", "--hidden", "512", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "LogFMT-8 more accurate than E4M3 and E5M2" in text and "outlier_channels" in text
    _, records = read_run(out)
    assert {r.op for r in records} == {"codec_accuracy"}
    assert len(records) == len(cmd_codec.ACCURACY_CODECS) * 4
    gauss = {r.codec: r.extra for r in records if r.extra["input"] == "gaussian"}
    assert gauss["logfmt8"]["rel_l2"] < gauss["fp8_e4m3"]["rel_l2"] < gauss["fp8_e5m2"]["rel_l2"]
    assert gauss["logfmt8"]["claims"]["logfmt8_beats_fp8"] is True
    assert 0.999 < gauss["bf16"]["cosine"] <= 1.0


def test_accuracy_reads_npy_and_pt_files_without_pickle(tmp_path: pathlib.Path) -> None:
    acts = np.random.default_rng(0).normal(size=(2, 8, 256)).astype(np.float32)
    np.save(tmp_path / "a.npy", acts)
    torch.save({"h": torch.from_numpy(acts[0]).bfloat16(), "step": 3}, tmp_path / "b.pt")
    out = tmp_path / "acc.jsonl"
    args = ["codec", "accuracy", "--dist", "", "--codecs", "bf16,logfmt8", "-o", str(out)]
    assert main([*args, "--input", str(tmp_path / "a.npy"), "--input", str(tmp_path / "b.pt")]) == 0
    _, records = read_run(out)
    assert {r.extra["input"] for r in records} == {"a.npy", "b.pt:h"}
    assert {r.extra["tokens"] for r in records} == {16, 8}
    bf16_on_bf16 = next(r for r in records if r.extra["input"] == "b.pt:h" and r.codec == "bf16")
    assert bf16_on_bf16.extra["rel_l2"] == 0.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "missing.npy"], "cannot read"),
        (["--input", "x.txt"], "use a .npy or .pt file"),
        (["--dist", "cauchy"], "unknown distribution 'cauchy'"),
        (["--codecs", "fp7"], "unknown codec 'fp7'"),
        (["--tokens", "0"], "--tokens 0"),
    ],
)
def test_accuracy_mistakes_are_one_line(argv: list[str], message: str, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        rc = main(["codec", "accuracy", "--tokens", "4", "--hidden", "128", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_pickled_objects_are_refused(tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "evil.pt"
    torch.save({"obj": pathlib.PurePosixPath("/etc")}, path)  # needs unpickling a class
    rc = main(["codec", "accuracy", "--dist", "", "--input", str(path)])
    assert rc == 2 and "without unpickling" in capsys.readouterr().err


def test_bench_measures_every_point(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.jsonl"
    argv = [
        "codec",
        "bench",
        "--tokens",
        "1,3",
        "--hidden",
        "130",
        "--codecs",
        "fp8_e4m3,logfmt10",
        "--impl",
        "numpy,torch",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    header, records = read_run(out)
    assert header.config["repeats"] == 2
    assert len(records) == 2 * 2 * 2 * 2
    for r in records:
        assert len(r.times_s) == 2 and r.extra["rw_gbps"] > 0
        assert r.extra["bytes_read"] + r.extra["bytes_written"] > r.extra["input_bytes"]
    enc = next(r for r in records if r.op == "codec_encode" and r.codec == "logfmt10")
    assert enc.extra["wire_bytes"] == enc.extra["tokens"] * (8 * 2 + (130 * 10 + 7) // 8)


def test_demo_hook_writes_its_file(tmp_path: pathlib.Path) -> None:
    console = Console(record=True, width=120)
    paths = cmd_codec.demo(tmp_path, console)
    assert paths == [tmp_path / "codec-accuracy.jsonl"]
    _, records = read_run(paths[0])
    assert len(records) == len(cmd_codec.ACCURACY_CODECS) * 4
    assert "LogFMT-10 close to BF16" in console.export_text()
    assert json.loads(paths[0].read_text().splitlines()[-1])["kind"] == "footer"
