"""FP8 codecs: scales, codes equal to torch's own float8 casts, and the mantissa error bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collectives import codecs
from collectives.codecs import ref
from collectives.codecs.spec import parse

TORCH_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
MAN_BITS = {"e4m3": 3, "e5m2": 2}


def payload(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 300, generator=g) * torch.logspace(-3, 3, 5)[:, None]
    x[:, 7::50] *= 100.0
    return x


def split(name: str, wire: torch.Tensor, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    meta, codes = ref.split_rows(wire.numpy(), parse(name), *x.shape)
    return meta.view("<f4"), np.ascontiguousarray(codes)


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "fp8_e4m3_pow2", "fp8_e5m2_pow2"])
def test_scales_and_codes_match_torch_float8_casts(name: str) -> None:
    spec = parse(name)
    assert spec.fp8 is not None
    x = payload(0)
    scales, codes = split(name, codecs.get(name).encode(x), x)
    amax = torch.stack([x[:, i : i + 128].abs().amax(dim=1) for i in range(0, 300, 128)], 1)
    if spec.pow2_scale:
        assert np.all(np.log2(scales) == np.round(np.log2(scales)))
        assert np.all(scales >= amax.numpy() / spec.fp8.max_finite)
    else:
        assert np.array_equal(scales, (amax / spec.fp8.max_finite).numpy())
    y = x / torch.from_numpy(np.repeat(scales, 128, axis=1)[:, :300])
    want = y.to(TORCH_FP8[spec.fp8.name]).view(torch.uint8).numpy()
    assert np.array_equal(codes, want)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_error_bounded_by_the_mantissa(fmt: str) -> None:
    name, man = f"fp8_{fmt}", MAN_BITS[fmt]
    spec = parse(name)
    assert spec.fp8 is not None
    codec = codecs.get(name, impl="numba")
    for seed in range(3):
        x = payload(seed)
        wire = codec.encode(x)
        y = codec.decode(wire, *x.shape)
        scale = torch.from_numpy(np.repeat(split(name, wire, x)[0], 128, axis=1)[:, :300])
        quantum = scale * spec.fp8.min_normal * 2.0**-man
        bound = torch.maximum(x.abs() * 2.0 ** -(man + 1), quantum / 2) * (1 + 1e-6)
        assert torch.all((y - x).abs() <= bound)
