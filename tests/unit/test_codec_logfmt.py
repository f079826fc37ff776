"""LogFMT-n follows its definition: levels from the float32 tile metadata, linear-space
(arithmetic-mean) rounding cuts, relative error within half a step; DeepEP's variant keeps
tiles with amax >= 1 in BF16."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from collectives import codecs
from collectives.codecs import ref
from collectives.codecs.spec import num_tiles, parse

RNG = np.random.default_rng(3)


def wire_parts(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m [T, tiles], M [T, tiles], K [T, H]) read back from the reference wire."""
    spec = parse(name)
    num_tokens, hidden = x.shape
    wire = codecs.get(name, impl="numpy").encode(torch.from_numpy(x)).numpy()
    meta, data = ref.split_rows(wire, spec, num_tokens, hidden)
    meta = meta.view("<f4").reshape(num_tokens, num_tiles(hidden), 2)
    codes = ref.unpack_codes(data, hidden, spec.bits)
    return meta[..., 0], meta[..., 1], codes & spec.kmax


def brute_force_levels(ax: np.ndarray, m: float, big: float, bits: int):  # type: ignore[no-untyped-def]
    """Level of each |x| by comparing with the arithmetic means of neighbouring level values
    (numpy's own exp in float64), and whether |x| sits within 1e-9 of a cut."""
    kmax = (1 << (bits - 1)) - 1
    step = (np.float64(big) - np.float64(m)) / (kmax - 1)
    values = np.concatenate([[0.0], np.exp(np.float64(m) + step * np.arange(kmax))])
    cuts = (values[:-1] + values[1:]) / 2
    level = np.searchsorted(cuts, ax, side="right")
    near = np.abs(ax[:, None] - cuts[None, :]).min(axis=1) <= 1e-9 * ax
    return level, near


def samples(hidden: int) -> list[np.ndarray]:
    gauss = RNG.normal(size=(4, hidden))
    wide = RNG.lognormal(0, 6, size=(4, hidden)) * RNG.choice([-1, 1], size=(4, hidden))
    outlier = gauss.copy()
    outlier[:, ::37] *= 500
    return [a.astype(np.float32) for a in (gauss, wide, outlier)]


@pytest.mark.parametrize("bits", [4, 5, 8, 10, 12, 16])
def test_levels_follow_the_arithmetic_mean_rule(bits: int) -> None:
    name = f"logfmt{bits}"
    for x in samples(300):
        small, big, level = wire_parts(name, x)
        for t in range(x.shape[0]):
            for tile in range(small.shape[1]):
                sl = slice(tile * 128, (tile + 1) * 128)
                ax = np.abs(x[t, sl]).astype(np.float64)
                want, near = brute_force_levels(ax, small[t, tile], big[t, tile], bits)
                assert np.array_equal(level[t, sl][~near], want[~near]), (name, t, tile)


def test_metadata_is_min_and_max_of_ln_with_the_2_pow_32_clamp() -> None:
    x = np.array([[3.0, -0.5, 0.0, 1e-3] + [1.0] * 124, [2.0**40] + [1.0] * 127], np.float32)
    small, big, _ = wire_parts("logfmt8", x)
    assert np.isclose(big[0, 0], np.log(3.0)) and np.isclose(small[0, 0], np.log(1e-3))
    assert np.isclose(big[1, 0], 40 * np.log(2)) and np.isclose(small[1, 0], 8 * np.log(2))


@pytest.mark.parametrize("bits", [4, 6, 8, 10, 16])
def test_relative_error_within_half_a_step(bits: int) -> None:
    name = f"logfmt{bits}"
    codec = codecs.get(name, impl="numba")
    for x in samples(256):
        y = codec.decode(codec.encode(torch.from_numpy(x)), *x.shape).numpy()
        small, big, _ = wire_parts(name, x)
        step = np.repeat((big.astype(np.float64) - small) / ((1 << (bits - 1)) - 2), 128, axis=1)
        inside = np.abs(x) >= np.exp(np.repeat(small, 128, axis=1))
        bound = np.abs(x) * (np.expm1(step) / 2 + 2e-6)
        assert np.all(np.abs(y - x)[inside] <= bound[inside]), name
        assert np.all(np.sign(y[inside]) == np.sign(x[inside]))


def test_more_bits_less_error() -> None:
    x = torch.from_numpy(samples(512)[0])
    errs = []
    for bits in range(4, 17):
        codec = codecs.get(f"logfmt{bits}")
        y = codec.decode(codec.encode(x), *x.shape)
        errs.append(float((y - x).norm() / x.norm()))
    assert all(a > b for a, b in itertools.pairwise(errs)), errs


def test_deepep_logfmt10_casts_small_tiles_and_keeps_large_ones_in_bf16() -> None:
    x = RNG.normal(size=(2, 512)).astype(np.float32)
    x[0, :256] *= 0.01  # tiles 0, 1 of token 0: amax < 1 -> LogFMT-10
    x[1, 128:256] = 0.0  # an all-zero tile: sent as BF16 (nothing to scale)
    xt = torch.from_numpy(x)
    codec = codecs.get("deepep_logfmt10")
    wire = codec.encode(xt)
    y = codec.decode(wire, 2, 512)
    bf16 = xt.to(torch.bfloat16).float()
    assert torch.equal(y[0, 256:], bf16[0, 256:]) and torch.equal(y[1], bf16[1])
    rel = (y[0, :256] - bf16[0, :256]).abs() / bf16[0, :256].abs()
    assert 0 < rel.max() < 2 ** (32 / 510) - 1
    assert codec.sent_bytes(wire, 2, 512) == 2 * 16 + 2 * 160 + 6 * 256
    assert codec.nominal_bytes(1, 7168) == 9184
