"""The special-value policy of docs/CODECS.md, one test per rule, for every implementation."""

from __future__ import annotations

import math

import pytest
import torch

from collectives import codecs

SCALED = ("fp8_e4m3", "fp8_e5m2_pow2", "logfmt8", "logfmt13")
IMPLS = ("numpy", "numba", "torch")


def roundtrip(name: str, x: torch.Tensor, impl: str) -> torch.Tensor:
    codec = codecs.get(name, impl=impl)
    wire = codec.encode(x)
    assert wire.numel() == codec.wire_bytes(*x.shape)
    return codec.decode(wire, *x.shape)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", [*SCALED, "deepep_logfmt10"])
def test_zeros_and_all_zero_tiles_decode_to_plus_zero(name: str, impl: str) -> None:
    x = torch.zeros(3, 300)
    x[1, 200:] = torch.linspace(-0.5, 0.5, 100)
    x[2, 5] = -0.0
    y = roundtrip(name, x, impl)
    zero = x == 0
    assert torch.all(y[zero] == 0) and not torch.any(torch.signbit(y[zero]))
    codec = codecs.get(name, impl=impl)
    assert torch.all(codec.encode(torch.zeros(2, 256)) == 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", [*SCALED, "deepep_logfmt10"])
def test_subnormal_inputs_read_as_zero(name: str, impl: str) -> None:
    x = torch.full((2, 130), 1e-3)
    x[0, :5] = torch.tensor([1e-39, -1e-40, 1.4e-45, -1e-44, 5e-39])
    x[1] = 1e-39
    y = roundtrip(name, x, impl)
    assert torch.all(y[0, :5] == 0) and torch.all(y[1] == 0)
    assert torch.all(y[0, 5:] != 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_is_a_plain_round_to_nearest_even_cast(impl: str) -> None:
    x = torch.tensor([[1e-40, -0.0, 3.4e38, -math.inf, math.nan, 1.00390625, 1.01171875]])
    y = roundtrip("bf16", x, impl)
    want = x.to(torch.bfloat16).float()
    same = (y == want) | (torch.isnan(y) & torch.isnan(want))
    assert torch.all(same) and torch.signbit(y[0, 1])
    assert math.isinf(y[0, 2])  # FLT_MAX rounds up past the largest bf16: +Inf, as IEEE says


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", SCALED)
def test_huge_values_stay_finite(name: str, impl: str) -> None:
    x = torch.tensor([[3.4028235e38, -3.0e38, 1e38, 1.0] * 32])
    y = roundtrip(name, x, impl)
    assert torch.all(torch.isfinite(y))
    assert torch.all((y[0, :3] - x[0, :3]).abs() <= 0.07 * x[0, :3].abs())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_poisons_only_its_tile(name: str, impl: str, bad: float) -> None:
    x = torch.randn(2, 300, generator=torch.Generator().manual_seed(0))
    x[0, 130] = bad
    y = roundtrip(name, x, impl)
    assert torch.all(torch.isnan(y[0, 128:256]))
    assert torch.all(torch.isfinite(y[0, :128])) and torch.all(torch.isfinite(y[0, 256:]))
    assert torch.all(torch.isfinite(y[1]))


@pytest.mark.parametrize("impl", IMPLS)
def test_deepep_logfmt10_sends_non_finite_tiles_as_bf16(impl: str) -> None:
    x = torch.randn(1, 256, generator=torch.Generator().manual_seed(0)) * 0.01
    x[0, 3], x[0, 4] = math.inf, math.nan
    y = roundtrip("deepep_logfmt10", x, impl)
    assert math.isinf(y[0, 3]) and math.isnan(y[0, 4])
    assert torch.equal(y[0, :3], x[0, :3].to(torch.bfloat16).float())
    assert not torch.equal(y[0, 128:], x[0, 128:].to(torch.bfloat16).float())


def test_bad_inputs_raise_value_errors_naming_the_value() -> None:
    codec = codecs.get("logfmt8")
    with pytest.raises(ValueError, match="float16"):
        codec.encode(torch.zeros(2, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="2-D"):
        codec.encode(torch.zeros(8))
    with pytest.raises(ValueError, match="must be 24 uint8 bytes"):
        codec.decode(torch.zeros(31, dtype=torch.uint8), 1, 16)
    with pytest.raises(ValueError, match="logfmt3"):
        codecs.get("logfmt3")
    with pytest.raises(ValueError, match="cuda"):
        codecs.get("bf16", impl="cuda")
    with pytest.raises(ValueError, match="hidden=0"):
        codec.wire_bytes(4, 0)


def test_empty_batches() -> None:
    for name in codecs.names():
        codec = codecs.get(name)
        wire = codec.encode(torch.zeros(0, 200))
        assert wire.numel() == 0 and codec.decode(wire, 0, 200).shape == (0, 200)
