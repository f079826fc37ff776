"""The three codec implementations (numpy reference, numba, torch ops) write the same bytes
and decode to the same float32 bits, on random shapes and values including specials."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectives import codecs

ALL = codecs.names()
FAST_IMPLS = ("numba", "torch")
SPECIALS = (0.0, -0.0, 1e-40, -3e-42, 1e-38, 3.4e38, -3.0e38, math.inf, -math.inf, math.nan)


@st.composite
def payloads(draw):  # type: ignore[no-untyped-def]
    """[T, H] float32 tensors: a random scale per row, heavy tails, specials sprinkled in."""
    num_tokens = draw(st.integers(1, 4))
    hidden = draw(st.sampled_from([1, 5, 8, 100, 128, 129, 200, 256, 300]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    log_scale = draw(st.floats(-40.0, 38.0))
    x = rng.standard_t(draw(st.sampled_from([2.0, 30.0])), size=(num_tokens, hidden))
    x = (x * 10.0 ** rng.uniform(-2, 0, size=(num_tokens, 1)) * 10.0**log_scale).astype(np.float32)
    for _ in range(draw(st.integers(0, 4))):
        value = draw(st.sampled_from(SPECIALS))
        x[rng.integers(num_tokens), rng.integers(hidden)] = value
    if draw(st.booleans()):
        x[:, : min(hidden, 128)] = 0.0
    return torch.from_numpy(x)


def assert_same_codec_output(name: str, x: torch.Tensor) -> None:
    num_tokens, hidden = x.shape
    ref = codecs.get(name, impl="numpy")
    wire = ref.encode(x)
    assert wire.numel() == ref.wire_bytes(num_tokens, hidden)
    want = ref.decode(wire, num_tokens, hidden).view(torch.int32)
    for impl in FAST_IMPLS:
        codec = codecs.get(name, impl=impl)
        got = codec.encode(x)
        assert torch.equal(got, wire), f"{name}/{impl}: encode differs from the reference"
        dec = codec.decode(wire, num_tokens, hidden).view(torch.int32)
        assert torch.equal(dec, want), f"{name}/{impl}: decode differs from the reference"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=payloads(), name=st.sampled_from(ALL))
def test_implementations_agree_on_random_payloads(x: torch.Tensor, name: str) -> None:
    assert_same_codec_output(name, x)


@pytest.mark.parametrize("name", ALL)
def test_implementations_agree_on_fixed_cases(name: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 300)).astype(np.float32)
    x[0, :128] = 0
    x[1, 3] = np.nan
    x[2, 200] = np.inf
    x[3] *= np.float32(1e-3)
    x[4, :50] = np.float32(1e-40)
    x[5, 10] = np.float32(3e38)
    assert_same_codec_output(name, torch.from_numpy(x))


def grid_tile(bits: int) -> np.ndarray:
    """A tile whose LogFMT levels are (up to the float32 rounding of the metadata) powers of
    two: min 1, max 2^(levels-1), step ln 2; with the floats on and either side of every
    arithmetic-mean cut 1.5 * 2^j."""
    levels = (1 << (bits - 1)) - 1
    cuts = (1.5 * 2.0 ** np.arange(levels - 1)).astype(np.float32)
    below, above = np.nextafter(cuts, np.float32(0)), np.nextafter(cuts, np.float32(np.inf))
    values = np.concatenate([[1.0, 2.0 ** (levels - 1)], cuts, below, above])
    return values.astype(np.float32)


@pytest.mark.parametrize("name", ["logfmt4", "logfmt5", "logfmt6", "logfmt7"])
def test_implementations_agree_on_and_beside_rounding_cuts(name: str) -> None:
    tile = grid_tile(int(name[6:]))
    assert_same_codec_output(name, torch.from_numpy(np.stack([tile, -tile])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["fp8_e4m3", "logfmt8", "deepep_logfmt10", "bf16"])
def test_bfloat16_input_equals_its_float32_widening(name: str, dtype: torch.dtype) -> None:
    x = (torch.randn(3, 256, generator=torch.Generator().manual_seed(1)) * 0.3).to(dtype)
    codec = codecs.get(name)
    assert torch.equal(codec.encode(x), codec.encode(x.float()))
