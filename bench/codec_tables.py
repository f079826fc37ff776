"""What `epbench codec` shows and records, built from measurements without touching files:
the accuracy and throughput tables, the lines that say whether [P]'s claims hold, and the
epbench.run records (op codec_accuracy / codec_encode / codec_decode; metrics in `extra`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.table import Table

from collectives.codecs import accuracy
from results.schema import Record

BENCH_COLUMNS = (
    "codec",
    "impl",
    "tokens",
    "hidden",
    "enc in",
    "enc r+w",
    "dec in",
    "dec r+w",
    "enc µs",
    "dec µs",
)


def claim_lines(label: str, claims: Mapping[str, Any] | None) -> list[str]:
    """Rich-markup lines: does LogFMT-8 beat FP8, is LogFMT-10 close to BF16, on `label`."""
    if claims is None:
        return [
            f"{label}: claims not evaluated (need {', '.join(accuracy.CLAIM_CODECS)} "
            "and a non-BF16 input)"
        ]
    yes = {True: "[green]holds[/green]", False: "[red]does not hold[/red]"}
    return [
        f"{label}: LogFMT-8 more accurate than E4M3 and E5M2: "
        f"{yes[claims['logfmt8_beats_fp8']]} (rel L2 {claims['logfmt8_vs_e4m3']:.2f}x E4M3, "
        f"{claims['logfmt8_vs_e5m2']:.2f}x E5M2)",
        f"{label}: LogFMT-10 close to BF16 (within {accuracy.CLOSE_FACTOR:g}x its rel L2): "
        f"{yes[claims['logfmt10_close_to_bf16']]} ({claims['logfmt10_vs_bf16']:.2f}x BF16)",
    ]


def accuracy_table(label: str, per_codec: Mapping[str, Mapping[str, float]]) -> Table:
    """One row per codec: bits per element and the four error metrics on input `label`."""
    table = Table(title=f"codec accuracy · {label}", title_justify="left")
    for col in ("codec", "bits/elem", "rel L2", "max abs", "cosine", "calc_diff"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for name, m in per_codec.items():
        table.add_row(
            name,
            f"{m['bits_per_element']:.2f}",
            f"{m['rel_l2']:.3e}",
            f"{m['max_abs']:.3e}",
            f"{m['cosine']:.8f}",
            f"{m['calc_diff']:.3e}",
        )
    return table


def accuracy_records(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    inputs: Mapping[str, np.ndarray],
    dtype: str,
    impl: str,
) -> list[Record]:
    """One codec_accuracy record per (input, codec), the claims of its input beside it."""
    records = []
    for label, per_codec in results.items():
        tokens, hidden = inputs[label].shape
        claims = accuracy.verdicts(per_codec)
        for name, m in per_codec.items():
            records.append(
                Record(
                    op="codec_accuracy",
                    backend=impl,
                    dtype=dtype,
                    mode="per_iter",
                    size_bytes=tokens * hidden * (4 if dtype == "float32" else 2),
                    count=tokens * hidden,
                    num_ranks=1,
                    times_s=[],
                    bus_factor=1.0,
                    codec=name,
                    extra={
                        "input": label,
                        "tokens": tokens,
                        "hidden": hidden,
                        **m,
                        "claims": claims,
                    },
                )
            )
    return records


def throughput_records(
    codec_name: str,
    phases: Mapping[str, Mapping[str, Any]],
    count: int,
    dtype: str,
    common: Mapping[str, Any],
) -> list[Record]:
    """Encode and decode records of one point from `throughput.measure`'s phases; `count`
    elements of `dtype`, `common` facts (device, threads) added to each record's extra."""
    records = []
    for phase, measured in phases.items():
        facts = dict(measured)
        records.append(
            Record(
                op=f"codec_{phase}",
                backend=facts["impl"],
                dtype=dtype,
                mode="per_iter",
                size_bytes=facts["input_bytes"],
                count=count,
                num_ranks=1,
                times_s=facts.pop("times_s"),
                bus_factor=1.0,
                codec=codec_name,
                extra={**facts, **common},
            )
        )
    return records


def bench_table(records: list[Record]) -> Table:
    """One row per (encode, decode) record pair: GB/s of input and of bytes read + written."""
    table = Table(
        title="codec throughput (GB/s: input tokens | bytes read + written)", title_justify="left"
    )
    for col in BENCH_COLUMNS:
        table.add_column(col, justify="left" if col in ("codec", "impl") else "right")
    for enc, dec in zip(records[::2], records[1::2], strict=True):
        e, d = enc.extra, dec.extra
        table.add_row(
            enc.codec,
            e["impl"],
            str(e["tokens"]),
            str(e["hidden"]),
            f"{e['input_gbps']:.2f}",
            f"{e['rw_gbps']:.2f}",
            f"{d['input_gbps']:.2f}",
            f"{d['rw_gbps']:.2f}",
            f"{e['median_s'] * 1e6:.1f}",
            f"{d['median_s'] * 1e6:.1f}",
        )
    return table
