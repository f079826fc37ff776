"""Codec.encode(x, out=...): the wire lands in the given buffer (a peer's mapped memory for
the fused all-to-all), byte for byte what encode(x) returns; a wrong buffer is refused."""

from __future__ import annotations

import pytest
import torch

from collectives import codecs


@pytest.mark.parametrize("name", ["fp8_e4m3", "logfmt8", "bf16", "deepep_logfmt10"])
@pytest.mark.parametrize("impl", ["numba", "torch", "numpy"])
def test_encode_writes_into_out(name: str, impl: str) -> None:
    codec = codecs.get(name, impl)
    x = torch.randn(5, 300)
    out = torch.full((codec.wire_bytes(5, 300),), 7, dtype=torch.uint8)
    got = codec.encode(x, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(out, codec.encode(x))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda n: torch.zeros(n - 1, dtype=torch.uint8), "bytes"),
        (lambda n: torch.zeros(n, dtype=torch.int8), "int8"),
        (lambda n: torch.zeros(2 * n, dtype=torch.uint8)[::2], "contiguous"),
    ],
)
def test_a_wrong_out_buffer_is_refused(make, what: str) -> None:  # type: ignore[no-untyped-def]
    codec = codecs.get("logfmt8", "numpy")
    with pytest.raises(ValueError, match="out= must be a contiguous uint8 tensor"):
        codec.encode(torch.randn(5, 300), out=make(codec.wire_bytes(5, 300)))
