"""Reports and the analyzer's command line: files written, hostile strings escaped in HTML and
Markdown, predicted data labelled, user mistakes answered in one line, the demo hook."""

from __future__ import annotations

import json
import pathlib

import pytest
from rich.console import Console

from bench import cmd_report
from bench.cli import main
from results import schema
from results.loader import load_all
from results.report import build_report, md_escape
from results.synthetic import write_runs

EVIL = "<img src=x onerror=alert(1)>|`x`"


def _predicted(path: pathlib.Path, fabric: str, scale: float) -> pathlib.Path:
    header = schema.Header(
        run_id=f"pred-{fabric}",
        created_utc="2026-01-01T00:00:00Z",
        metadata={"fabric": fabric, "label": f"model {fabric}"},
        config={},
    )
    lines = [header.to_json()]
    for size in (1024, 65536, 1 << 20):
        t = (5e-6 + size / 40e9) * scale
        lines.append(
            schema.Record(
                op="alltoall",
                backend="model",
                dtype="bfloat16",
                mode="per_iter",
                size_bytes=size,
                count=size // 2,
                num_ranks=4,
                times_s=[t],
                bus_factor=0.75,
                predicted=True,
            ).to_json()
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    root = tmp_path_factory.mktemp("runs")
    paths = write_runs(
        root, num_rows=6000, runs_per_side=2, sizes=(1024, 65536, 1 << 20), num_rank_runs=1
    )
    first = paths[0].read_text().splitlines()
    header = json.loads(first[0])
    header["metadata"]["hosts"] = [EVIL]
    paths[0].write_text("\n".join([json.dumps(header), *first[1:], '{"kind": "rec']) + "\n")
    return paths


def test_report_files_escaped_and_labelled(
    runs: list[pathlib.Path], tmp_path: pathlib.Path
) -> None:
    pred = [
        _predicted(tmp_path / "p_ib.jsonl", "ib", 1.0),
        _predicted(tmp_path / "p_roce.jsonl", "roce", 1.2),
    ]
    loaded = load_all([*runs, *pred])
    out = build_report(loaded, tmp_path / "rep", by=["fabric"], title=f"t {EVIL}")
    html = out.html.read_text()
    md = out.markdown.read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html and "http://" not in html.split("</style>")[1]
    assert html.count('<img src="data:image/png;base64,') >= 6
    assert "measured vs predicted" in html and "(predicted)" in html
    assert "Comparison by meta.fabric" in html and "Warnings" in html
    assert f"{runs[0]}:{len(runs[0].read_text().splitlines())}" in html  # the broken line
    prose = md.split("```")[::2]  # outside fenced code, where a renderer would obey HTML
    assert all("<img" not in part for part in prose)
    assert md_escape(EVIL) in md
    figures = sorted(p.name for p in (tmp_path / "rep" / "figures").iterdir())
    assert "alltoall_busbw.png" in figures and "measured_vs_predicted.png" in figures
    assert all(f"figures/{name}" in md for name in figures)


def test_md_escape() -> None:
    assert md_escape("a|b<c>\n`d`") == "a\\|b&lt;c&gt; \\`d\\`"


def test_cli_load_compare_report(
    runs: list[pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "frame.csv"
    assert main(["load", *map(str, runs), "-o", str(csv)]) == 0
    assert csv.read_text().startswith("run_id,")
    assert main(["compare", *map(str, runs), "--by", "fabric", "-o", str(tmp_path / "c.csv")]) == 0
    assert "slower" in (tmp_path / "c.csv").read_text()
    assert (
        main(
            [
                "report",
                *map(str, runs),
                "-o",
                str(tmp_path / "r"),
                "--by",
                "fabric",
                "--nic-gbit",
                "400",
                "--bound",
                "NVLink=160",
            ]
        )
        == 0
    )
    assert "NVLink" in (tmp_path / "r" / "report.html").read_text()
    out = capsys.readouterr()
    assert "warning:" in out.out  # the truncated last line is reported, not fatal


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "RUNS", "--by", "nosuch"], "--by 'nosuch' names no single column"),
        (["compare", "RUNS", "--by", "fabric", "--margin", "7"], "margin 7.0 must lie in"),
        (["report", "RUNS", "-o", "OUT", "--bound", "x=fast"], "--bound 'x=fast' must be"),
        (["load", "RUNS", "-o", "OUT.xlsx"], "must end in .csv or .parquet"),
        (["report", "MISSING", "-o", "OUT"], "no measurements loaded"),
    ],
)
def test_cli_mistakes_are_one_line(
    argv: list[str],
    message: str,
    runs: list[pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subst = {
        "RUNS": str(runs[0].parent),
        "OUT": str(tmp_path / "o"),
        "OUT.xlsx": str(tmp_path / "o.xlsx"),
        "MISSING": str(tmp_path / "none"),
    }
    assert main([subst.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_demo_hook(runs: list[pathlib.Path], tmp_path: pathlib.Path) -> None:
    pred = [
        _predicted(tmp_path / "p_ib.jsonl", "ib", 1.0),
        _predicted(tmp_path / "p_roce.jsonl", "roce", 1.3),
    ]
    console = Console(record=True, width=200)
    html = cmd_report.demo([*runs, *pred], tmp_path / "demo", console)
    assert html == tmp_path / "demo" / "report.html" and html.exists()
    text = html.read_text()
    assert "predicted by the fabric model" in text and "Comparison by meta.fabric" in text
    assert "predicted slower" in text  # model rows: a ratio, no interval or test
    assert "report:" in console.export_text()
