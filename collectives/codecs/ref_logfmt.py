"""Reference (numpy) LogFMT-n ([P] §3.2) and DeepEP's LogFMT-10: the definition to read.

LogFMT-n, per 1x128 tile: m, M = min and max of ln|x| over the non-zero elements, m clamped
to at least M - ln(2^32), both rounded to float32 (they travel on the wire, and the encoder
decides with exactly the values the decoder will see). step s = (M - m) / (2^(n-1) - 2).
Level K >= 1 decodes to exp(m + s*(K-1)); K = 0 is zero. An element takes the level whose
linear value is nearest in the sense of the paper: the cut between levels K and K+1 lies at
the arithmetic mean of their linear values, which in the log domain is
m + s*(K-1) + c with c = ln((1 + e^s) / 2); the cut between 0 and level 1 lies at e^m / 2.
The encoder evaluates all of it with detmath's deterministic float64 log/exp. The decoder
works in float32 from per-tile constants: with m2 = m / ln 2 = e0 + mf (e0 an integer,
mf in [0, 1) rounded to float32) and s2 = s / ln 2 (float32), level K decodes to
2^(e0 + y), y = mf + s2 * (K - 1) (two float32 roundings), 2^y = p(y - n) * 2^n with
n = floor(y + 1/2) and p detmath's float32 polynomial; 2^(e0 + n) below 2^-125 gives
FLT_MIN (the smallest inputs' levels), above FLT_MAX FLT_MAX. That is within ~3e-6 of
exp(m + s (K - 1)) relative, far inside every width's step (LogFMT-16: 7e-4).
"""

from __future__ import annotations

import numpy as np

from collectives.codecs.detmath import INV_LN2, LN2, exp2_fraction_f32
from collectives.codecs.ref import (
    F32,
    F64,
    I64,
    bf16_bits,
    bf16_value,
    exp2_det,
    finite_abs,
    flush_subnormals,
    from_tiles,
    log2_det,
    pack_codes,
    rows,
    split_rows,
    to_tiles,
    unpack_codes,
)
from collectives.codecs.spec import (
    BF16_NAN,
    DEEPEP_CLAMP_LOG2,
    DEEPEP_KMAX,
    FLT_MAX,
    FLT_MIN_NORMAL,
    LOGFMT_CLAMP_LN,
    CodecSpec,
    num_tiles,
    packed_bytes,
    parse,
    tile_lengths,
)


def ln_det(x: np.ndarray) -> np.ndarray:
    return log2_det(x) * LN2


def exp_det(y: np.ndarray) -> np.ndarray:
    return exp2_det(y * INV_LN2)


def logfmt_meta(ax: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile float32 (m, M) from |x| [T, tiles, 128]: (0, 0) for all-zero tiles,
    (NaN, NaN) for tiles holding NaN or Inf."""
    amax = ax.max(axis=-1).astype(F64)
    amin = np.where(ax > 0, ax, F32(np.inf)).min(axis=-1).astype(F64)
    zero = amax == 0
    big = ln_det(np.where(zero, 1.0, amax)).astype(F32)
    floor = big.astype(F64) - LOGFMT_CLAMP_LN
    small = np.maximum(ln_det(np.where(zero, 1.0, amin)), floor).astype(F32)
    big = np.where(finite, np.where(zero, F32(0), big), F32(np.nan))
    small = np.where(finite, np.where(zero, F32(0), small), F32(np.nan))
    return small.astype(F32), big.astype(F32)


def logfmt_step(small: np.ndarray, big: np.ndarray, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """(step s, cut offset phi = c / s) per tile, float64; s = 0 where M == m (phi = 0)."""
    step = (big.astype(F64) - small.astype(F64)) / float(kmax - 1)
    step = np.where(np.isnan(step), 0.0, step)
    safe = np.where(step > 0, step, 1.0)
    phi = ln_det((1.0 + exp_det(safe)) * 0.5) / safe
    return step, np.where(step > 0, phi, 0.0)


def logfmt_levels(
    ax: np.ndarray, small: np.ndarray, step: np.ndarray, phi: np.ndarray, kmax: int
) -> np.ndarray:
    """Magnitude codes K [T, tiles, 128] (int64) of |x| given per-tile m, s, phi."""
    m = small.astype(F64)[..., None]
    s, ph = step[..., None], phi[..., None]
    lnx = ln_det(np.where(ax > 0, ax, F32(1)).astype(F64))
    inv = 1.0 / np.where(s > 0, s, 1.0)
    u = (lnx - np.where(np.isnan(m), 0.0, m)) * inv - ph
    k = np.clip(np.floor(u) + 2.0, 1.0, float(kmax))
    k = np.where(s > 0, k, 1.0)
    k = np.where(lnx < m - LN2, 0.0, k)
    return np.where(ax > 0, k, 0.0).astype(I64)


def encode_logfmt(x: np.ndarray, spec: CodecSpec) -> np.ndarray:
    xt = to_tiles(flush_subnormals(x))
    finite, ax = finite_abs(xt)
    small, big = logfmt_meta(ax, finite)
    step, phi = logfmt_step(small, big, spec.kmax)
    k = logfmt_levels(ax, small, step, phi, spec.kmax)
    k = np.where(finite[..., None], k, 0)
    codes = k | np.where((xt < 0) & (k > 0), 1 << (spec.bits - 1), 0)
    meta = np.stack([small, big], axis=-1).astype("<f4").reshape(x.shape[0], -1)
    return rows(meta, pack_codes(from_tiles(codes, x.shape[1]), spec.bits))


def logfmt_decode_params(
    small: np.ndarray, big: np.ndarray, kmax: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tile (e0 int64, mf float32, s2 float32) of the float32 decoder (module docstring)."""
    step, _ = logfmt_step(small, big, kmax)
    m2 = np.where(np.isnan(small), F32(0), small).astype(F64) * INV_LN2
    e0 = np.floor(m2)
    return e0.astype(I64), (m2 - e0).astype(F32), (step * INV_LN2).astype(F32)


def exp2_split(e0: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float32 2^(e0 + y) for int64 e0 and float32 y >= 0 (module docstring): the product
    of the polynomial (in [2^-1/2, 2^1/2]) and 2^n is exact for n in [-125, 127], and for
    n = 128 (times 2^127, then 2) exact or past FLT_MAX (saturated)."""
    nf = np.floor(y + F32(0.5))
    p = exp2_fraction_f32((y - nf).astype(F32)).astype(F32)
    n = e0 + nf.astype(I64)
    scale = ((np.clip(n, -125, 127) + 127) << 23).astype(np.int32).view(F32)
    with np.errstate(over="ignore"):  # n = 128 may round past FLT_MAX: inf, saturated below
        value = np.minimum(p * scale * np.where(n > 127, F32(2), F32(1)), F32(FLT_MAX))
    value = np.where(n < -125, F32(FLT_MIN_NORMAL), value)
    return np.where(n > 128, F32(FLT_MAX), value).astype(F32)


def logfmt_values(k: np.ndarray, e0: np.ndarray, mf: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """float32 magnitude of level K (>= 1) per element, given the tiles' decode params."""
    y = mf[..., None] + s2[..., None] * (k - 1).astype(F32)
    return exp2_split(np.broadcast_to(e0[..., None], y.shape), y.astype(F32))


def decode_logfmt(wire: np.ndarray, spec: CodecSpec, num_tokens: int, hidden: int) -> np.ndarray:
    meta, data = split_rows(wire, spec, num_tokens, hidden)
    meta = meta.view("<f4").reshape(num_tokens, -1, 2).astype(F32)
    small, big = meta[..., 0], meta[..., 1]
    e0, mf, s2 = logfmt_decode_params(small, big, spec.kmax)
    codes = to_tiles(unpack_codes(data, hidden, spec.bits))
    k = codes & spec.kmax
    mag = np.where(k > 0, logfmt_values(np.maximum(k, 1), e0, mf, s2), F32(0))
    mag = np.where((codes >> (spec.bits - 1)) > 0, -mag, mag)
    mag = np.where(np.isnan(small)[..., None], F32(np.nan), mag)
    return from_tiles(mag, hidden)


def cut_input(bits: int, tokens: int = 8, rng_seed: int = 5) -> np.ndarray:
    """LogFMT-`bits` tiles whose elements sit on and one or two float32 steps beside the
    rounding cuts (and the zero cut), where an approximate ln would pick the wrong level:
    each tile holds 1.0 (the max) and 1e-12 (below the 2^-32 clamp, so m = -32 ln 2) and
    126 values drawn from those cut neighbourhoods, with random signs."""
    kmax = (1 << (bits - 1)) - 1
    big = np.float32(0.0)
    small = np.float32(-LOGFMT_CLAMP_LN)
    step, phi = logfmt_step(np.array([small]), np.array([big]), kmax)
    cuts = small + step[0] * (np.arange(kmax - 1) + phi[0])  # u = j: the j -> j + 1 cut
    cuts = np.append(cuts, float(small) - np.log(2.0))  # the zero cut
    centre = np.exp(cuts).astype(np.float32)
    near = [centre]
    for direction in (0.0, np.inf):
        one = np.nextafter(centre, np.float32(direction))
        near += [one, np.nextafter(one, np.float32(direction))]
    pool = np.concatenate(near)
    pool = pool[(pool > 1e-12) & (pool < 1.0)]
    rng = np.random.default_rng(rng_seed)
    x = rng.choice(pool, (tokens, 256)).astype(np.float32)
    x *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), x.shape)
    x[:, [0, 128]] = 1.0
    x[:, [1, 129]] = 1e-12
    return x


def tolerance_input(bits: int, lg2_err: float, zero: bool, tokens: int = 8,
                    rng_seed: int = 9) -> np.ndarray:  # fmt: skip
    """LogFMT-`bits` tiles (as cut_input's) whose elements lie 0.05 to 0.25 of the Triton
    encoder's fast-path tolerance (for a log2 error of `lg2_err`) from a level cut, or with
    `zero` from the zero cut. Under the interpreter that log2 is pushed by 0.9 `lg2_err`, so
    most elements cross their cut: a tolerance under half its value lets the fast path
    decide them, wrongly (no element is near enough for its chunk to be redone exactly)."""
    kmax = (1 << (bits - 1)) - 1
    small, big = np.float32(-LOGFMT_CLAMP_LN), np.float32(0.0)
    step, phi = logfmt_step(np.array([small]), np.array([big]), kmax)
    s = float(step[0])
    rng = np.random.default_rng(rng_seed)
    n = tokens * 256
    side = rng.choice(np.array([-1.0, 1.0]), n) * rng.uniform(0.05, 0.25, n)
    if zero:  # the zero cut, m - ln 2
        lnx = float(small) - LN2 + side * LN2 * lg2_err
    else:
        tau = (LN2 * lg2_err + 1e-12) / s + 1e-9
        lnx = float(small) + (rng.integers(0, kmax - 1, n) + float(phi[0]) + side * tau) * s
    x = np.exp(lnx).astype(np.float32).reshape(tokens, 256)
    x *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), x.shape)
    x[:, [0, 128]] = 1.0
    x[:, [1, 129]] = 1e-12
    return x


# ---- DeepEP LogFMT-10 -----------------------------------------------------------------
def deepep_params(
    amax: np.ndarray, amin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From the bf16 metadata (as float32): (cast?, log2 max, log2 min, step, rounding)."""
    amax64, amin64 = amax.astype(F64), amin.astype(F64)
    pos = amax64 > 0
    lmax = log2_det(np.where(pos, amax64, 1.0))
    lmin = np.maximum(log2_det(np.where(amin64 > 0, amin64, 1.0)), lmax - DEEPEP_CLAMP_LOG2)
    lmin = np.where(amin64 > 0, lmin, lmax - DEEPEP_CLAMP_LOG2)
    cast = pos & (amax64 < 1.0) & (lmin < lmax)
    step = np.where(cast, (lmax - lmin) / float(DEEPEP_KMAX - 1), 1.0)
    rounding = 2.0 - log2_det(0.5 * (1.0 + exp2_det(step))) / step
    return cast, lmin, step, rounding


def deepep_meta(xt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tile bf16 (amax, amin) as float32 (NaN, NaN when the tile holds NaN or Inf)."""
    finite, ax = finite_abs(xt)
    amax = ax.max(axis=-1)
    amin = np.where(valid, ax, F32(np.inf)).min(axis=-1)
    nan = bf16_value(np.asarray(BF16_NAN))
    return np.where(finite, amax, nan), np.where(finite, amin, nan), ax


def deepep_tile_bytes(cast: np.ndarray, length: int) -> np.ndarray:
    """Bytes a tile of `length` elements occupies when sent: 10-bit codes or BF16."""
    return np.where(cast, packed_bytes(length, 10), 2 * length)


def encode_deepep(x: np.ndarray, spec: CodecSpec) -> np.ndarray:
    xb = flush_subnormals(bf16_value(bf16_bits(x)))
    xt, valid = to_tiles(xb), to_tiles(np.ones_like(xb)) > 0
    amax, amin, ax = deepep_meta(xt, valid)
    cast, lmin, step, rounding = deepep_params(amax, amin)
    lx = log2_det(np.where(ax > 0, ax, F32(1)).astype(F64))
    u = (lx - lmin[..., None]) * (1.0 / step)[..., None] + rounding[..., None]
    k = np.where(ax > 0, np.minimum(np.floor(np.maximum(u, 0.0)), DEEPEP_KMAX), 0).astype(I64)
    codes = k | np.where((xt < 0) & (k > 0), 1 << 9, 0)
    slots = []
    for t, length in enumerate(tile_lengths(x.shape[1])):
        slot = np.zeros((x.shape[0], 2 * length), dtype=np.uint8)
        packed = pack_codes(codes[:, t, :length], 10)
        raw = bf16_bits(xt[:, t, :length]).astype("<u2").view(np.uint8)
        slot[:, : packed.shape[1]] = np.where(cast[:, t, None], packed, 0)
        slots.append(np.where(cast[:, t, None], slot, raw))
    meta = np.stack([bf16_bits(amax), bf16_bits(amin)], axis=-1).astype("<u2")
    return rows(meta.reshape(x.shape[0], -1), np.concatenate(slots, axis=1))


def decode_deepep(wire: np.ndarray, spec: CodecSpec, num_tokens: int, hidden: int) -> np.ndarray:
    meta, data = split_rows(wire, spec, num_tokens, hidden)
    meta = bf16_value(meta.view("<u2").reshape(num_tokens, -1, 2).astype(I64))
    cast, lmin, step, _ = deepep_params(meta[..., 0], meta[..., 1])
    out, offset = [], 0
    for t, length in enumerate(tile_lengths(hidden)):
        slot = data[:, offset : offset + 2 * length]
        offset += 2 * length
        raw = bf16_value(np.ascontiguousarray(slot).view("<u2").astype(I64))
        codes = unpack_codes(slot[:, : packed_bytes(length, 10)], length, 10)
        k = codes & DEEPEP_KMAX
        y = (k.astype(F64) - 1.0) * step[:, t, None] + lmin[:, t, None]
        live = cast[:, t, None] & (k > 0)
        mag = np.where(live, exp2_det(np.where(live, y, 0.0)).astype(F32), F32(0))
        mag = np.where(codes >> 9 > 0, -mag, mag)
        out.append(np.where(cast[:, t, None], mag, raw))
    return np.concatenate(out, axis=1).astype(F32)


def deepep_sent_bytes(wire: np.ndarray, num_tokens: int, hidden: int) -> int:
    """Bytes a variable-size transfer would move: metadata plus each tile as sent."""
    meta, _ = split_rows(wire, parse("deepep_logfmt10"), num_tokens, hidden)
    meta = bf16_value(meta.view("<u2").reshape(num_tokens, -1, 2).astype(I64))
    cast = deepep_params(meta[..., 0], meta[..., 1])[0]
    sent = sum(
        deepep_tile_bytes(cast[:, t], length).sum() for t, length in enumerate(tile_lengths(hidden))
    )
    return int(sent) + 4 * num_tiles(hidden) * num_tokens
