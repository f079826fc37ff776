"""The reference implementation of every codec, in plain numpy: the definition to read.

Inputs are float32 arrays [num_tokens, hidden] (bfloat16 inputs arrive widened, exactly);
wire buffers are flat uint8 arrays laid out as spec.py says. Speed is not a goal here:
clarity is. The numba and torch paths must produce the same bytes, bit for bit.
"""

from __future__ import annotations

import numpy as np

from collectives.codecs import detmath
from collectives.codecs.spec import (
    BF16_NAN,
    FLT_MAX,
    FLT_MIN_NORMAL,
    FP8_MIN_TILE_AMAX,
    TILE,
    CodecSpec,
    Fp8Format,
    fp8_decode_table,
    meta_row_bytes,
    num_tiles,
    row_bytes,
)

F32, F64, I64 = np.float32, np.float64, np.int64


# ---- deterministic float64 log2 / exp2 --------------------------------------------------
def log2_det(x: np.ndarray) -> np.ndarray:
    """log2 of positive float64 values (callers mask zeros)."""
    mant, exp = np.frexp(x)
    small = mant < detmath.SQRT_HALF
    mant = np.where(small, mant * 2.0, mant)
    exp = np.where(small, exp - 1, exp)
    out: np.ndarray = exp.astype(F64) + detmath.log2_mantissa(mant)
    return out


def exp2_det(y: np.ndarray) -> np.ndarray:
    """2^y for finite float64 y in [-1000, 1000]."""
    k = np.floor(y + 0.5)
    out: np.ndarray = np.ldexp(detmath.exp2_fraction(y - k), k.astype(np.int32))
    return out


# ---- shared helpers ----------------------------------------------------------------------
def flush_subnormals(x: np.ndarray) -> np.ndarray:
    """Non-zero float32 values below 2^-126 in magnitude read as +0."""
    return np.where(np.abs(x) < F32(FLT_MIN_NORMAL), F32(0), x)


def to_tiles(x: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """[T, H] -> [T, tiles, 128], the short last tile padded with `fill`."""
    num_tokens, hidden = x.shape
    padded = np.full((num_tokens, num_tiles(hidden) * TILE), fill, dtype=x.dtype)
    padded[:, :hidden] = x
    return padded.reshape(num_tokens, -1, TILE)


def from_tiles(xt: np.ndarray, hidden: int) -> np.ndarray:
    return xt.reshape(xt.shape[0], -1)[:, :hidden]


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (int64), round to nearest even; NaN -> 0x7FC0."""
    bits = x.view(np.uint32).astype(I64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return np.where(np.isnan(x), BF16_NAN, rounded)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns -> float32 values."""
    return (bits.astype(np.uint32) << 16).view(F32)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """[T, n] codes of `bits` bits -> [T, ceil(n*bits/8)] bytes, LSB-first bit stream."""
    planes = (codes[..., None] >> np.arange(bits)) & 1
    flat = planes.astype(np.uint8).reshape(codes.shape[0], -1)
    return np.packbits(flat, axis=-1, bitorder="little")


def unpack_codes(data: np.ndarray, num: int, bits: int) -> np.ndarray:
    """Inverse of pack_codes: [T, bytes] -> [T, num] int64 codes."""
    flat = np.unpackbits(data, axis=-1, bitorder="little")[:, : num * bits]
    planes = flat.reshape(data.shape[0], num, bits).astype(I64)
    codes: np.ndarray = (planes << np.arange(bits)).sum(axis=-1)
    return codes


def finite_abs(xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tile has only finite values [T, tiles], |x| with non-finite values as 0)."""
    finite = np.isfinite(xt)
    return finite.all(axis=-1), np.where(finite, np.abs(xt), F32(0))


def rows(meta: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Concatenate per-token metadata and code bytes into the flat wire buffer."""
    return np.concatenate([meta.view(np.uint8), codes.astype(np.uint8)], axis=1).reshape(-1)


def split_rows(
    wire: np.ndarray, spec: CodecSpec, num_tokens: int, hidden: int
) -> tuple[np.ndarray, np.ndarray]:
    w = wire.reshape(num_tokens, row_bytes(spec, hidden))
    mb = meta_row_bytes(spec, hidden)
    return np.ascontiguousarray(w[:, :mb]), w[:, mb:]


# ---- BF16 -------------------------------------------------------------------------------
def encode_bf16(x: np.ndarray) -> np.ndarray:
    bits = bf16_bits(x).astype("<u2")
    return bits.view(np.uint8).reshape(-1)


def decode_bf16(wire: np.ndarray, num_tokens: int, hidden: int) -> np.ndarray:
    bits = wire.reshape(-1).view("<u2").reshape(num_tokens, hidden)
    return bf16_value(bits)


# ---- FP8 --------------------------------------------------------------------------------
def fp8_codes(y: np.ndarray, fmt: Fp8Format) -> np.ndarray:
    """float32 values already scaled into range -> FP8 codes (int64), round to nearest
    even, saturating at the largest finite value."""
    mag = np.abs(y)
    bits = mag.view(np.uint32).astype(I64)
    shift = 23 - fmt.man_bits
    normal = (bits + ((1 << (shift - 1)) - 1) + ((bits >> shift) & 1)) >> shift
    normal = normal - ((127 - fmt.bias) << fmt.man_bits)
    sub = np.rint(mag * F32(fmt.subnormal_scale)).astype(I64)
    code = np.minimum(np.where(mag < F32(fmt.min_normal), sub, normal), fmt.max_code)
    signed: np.ndarray = code | np.where(y < 0, 0x80, 0)
    return signed


def pow2_ceil(s: np.ndarray) -> np.ndarray:
    """Smallest power of two >= s, for positive normal float32 s."""
    bits = s.view(np.int32).astype(I64)
    up = np.where(bits & 0x7FFFFF, (bits & 0x7F800000) + 0x800000, bits)
    return up.astype(np.int32).view(F32)


def fp8_scales(amax: np.ndarray, finite: np.ndarray, spec: CodecSpec) -> np.ndarray:
    """Per-tile float32 scale: amax / max-finite; 0 for (near-)zero tiles, NaN if poisoned."""
    assert spec.fp8 is not None
    scale = amax / F32(spec.fp8.max_finite)
    if spec.pow2_scale:
        scale = pow2_ceil(np.where(scale > 0, scale, F32(1)))
    scale = np.where(amax < F32(FP8_MIN_TILE_AMAX), F32(0), scale)
    return np.where(finite, scale, F32(np.nan)).astype(F32)


def encode_fp8(x: np.ndarray, spec: CodecSpec) -> np.ndarray:
    assert spec.fp8 is not None
    xt = to_tiles(flush_subnormals(x))
    finite, ax = finite_abs(xt)
    scale = fp8_scales(ax.max(axis=-1), finite, spec)
    usable = (scale > 0)[..., None]
    y = np.where(usable, xt / np.where(usable, scale[..., None], F32(1)), F32(0))
    codes = np.where(usable, fp8_codes(y.astype(F32), spec.fp8), 0)
    return rows(scale.astype("<f4"), from_tiles(codes, x.shape[1]))


def decode_fp8(wire: np.ndarray, spec: CodecSpec, num_tokens: int, hidden: int) -> np.ndarray:
    assert spec.fp8 is not None
    meta, codes = split_rows(wire, spec, num_tokens, hidden)
    scale = meta.view("<f4").astype(F32)
    values = to_tiles(fp8_decode_table(spec.fp8)[codes])
    values = np.clip(values * scale[..., None], F32(-FLT_MAX), F32(FLT_MAX))
    # A poisoned tile decodes to the canonical quiet NaN (0x7FC00000) whatever the hardware's
    # NaN propagation would give (CUDA's arithmetic returns 0x7FFFFFFF).
    values = np.where(np.isnan(scale)[..., None], F32(np.nan), values)
    return from_tiles(values, hidden)


def fp8_cut_input(spec: CodecSpec, tokens: int = 8, rng_seed: int = 3) -> np.ndarray:
    """[tokens, 256] float32 tiles whose quotients x / scale sit on and one or two float32
    steps beside the FP8 rounding cuts (midpoints between codes), where a quotient off by one
    ulp picks the wrong code, and at the smallest |x| whose quotient still rounds to a
    non-zero float32 (scale * 2^-150: the sign of a zero code). Tile amax from 2^-110 to
    2^120; elements with random signs; column 0 of each tile is its amax."""
    assert spec.fp8 is not None
    rng = np.random.default_rng(rng_seed)
    table = fp8_decode_table(spec.fp8)[: spec.fp8.max_code + 1].astype(F64)
    cuts = (table[:-1] + table[1:]) / 2.0
    exps = np.array([-110, -60, -20, -3, 0, 7, 20, 60, 100, 120])
    x = np.zeros((tokens, 256), dtype=F32)
    for row, start in np.ndindex(tokens, 2):
        amax = F32(rng.uniform(1.0, 2.0) * 2.0 ** rng.choice(exps))
        scale = float(fp8_scales(np.array([amax]), np.array([True]), spec)[0])
        centre = (cuts * scale).astype(F32)
        pool = [centre]
        for direction in (0.0, np.inf):
            one = np.nextafter(centre, F32(direction))
            pool += [one, np.nextafter(one, F32(direction))]
        live = np.array([scale * 2.0**-150], dtype=F32)  # exact when normal
        pool += [live, np.nextafter(live, F32(0)), np.nextafter(live, F32(np.inf))] * 8
        cand = np.concatenate(pool)
        cand = cand[(cand > 0) & (cand <= amax)]
        tile = rng.choice(cand, 128) * rng.choice(np.array([-1.0, 1.0], dtype=F32), 128)
        tile[0] = amax
        x[row, start * 128 : start * 128 + 128] = tile
    return x
