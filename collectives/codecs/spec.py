"""Codec names, formats and wire layouts: pure arithmetic, no arrays moved.

Every codec works on 1x128 tiles of each token row (the last tile of a row is shorter when
`hidden` is not a multiple of 128). A token's wire row is `[tile metadata][element codes]`,
so splitting a wire buffer by token rows splits it by tokens, as a collective needs.
docs/CODECS.md defines each format, the byte layout and the special-value policy;
docs/PERFORMANCE.md counts the bytes the same way.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

TILE = 128
"""Elements per scaling tile (1x128 per token, as DeepSeek-V3 and DeepEP use)."""
LOGFMT_BITS = range(4, 17)
"""LogFMT-n widths offered: sign + (n-1)-bit code."""
FLT_MIN_NORMAL = 2.0**-126
"""Smallest normal float32; smaller non-zero inputs are read as zero (docs/CODECS.md)."""
FLT_MAX = float(np.finfo(np.float32).max)
LOGFMT_CLAMP_LN = 32 * math.log(2.0)
"""The tile min of ln|x| is clamped to at least max - ln(2^32)."""
DEEPEP_CLAMP_LOG2 = 32.0
"""DeepEP's LogFMT-10 clamps the tile min of log2|x| to at least max - 32."""
DEEPEP_KMAX = 511
"""Largest code of DeepEP's LogFMT-10: 9 bits beside the sign bit."""
BF16_NAN = 0x7FC0
"""Bits of the canonical BF16 quiet NaN, written for every NaN (docs/CODECS.md)."""
FP8_MIN_TILE_AMAX = 2.0**-117
"""FP8 tiles with a smaller amax are sent as zeros: their scale would be a subnormal."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fp8Format:
    """One 8-bit float format (OCP FP8): sign, `exp_bits`, `man_bits`, `bias`."""

    name: str
    """e4m3 or e5m2."""
    man_bits: int
    """Explicit mantissa bits."""
    bias: int
    """Exponent bias."""
    max_code: int
    """Code (without sign) of the largest finite value."""
    max_finite: float
    """Largest finite value (448 for E4M3, 57344 for E5M2)."""

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def subnormal_scale(self) -> float:
        """Multiplier that maps a subnormal value to its integer code."""
        return 2.0 ** (self.bias - 1 + self.man_bits)


FP8_FORMATS = {
    "e4m3": Fp8Format(name="e4m3", man_bits=3, bias=7, max_code=0x7E, max_finite=448.0),
    "e5m2": Fp8Format(name="e5m2", man_bits=2, bias=15, max_code=0x7B, max_finite=57344.0),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodecSpec:
    """What a codec name means."""

    name: str
    """The registry name (bf16, fp8_e4m3, fp8_e4m3_pow2, logfmt8, deepep_logfmt10, ...)."""
    kind: str
    """bf16, fp8, logfmt or deepep_logfmt."""
    bits: int
    """Bits per element on the wire (metadata excluded)."""
    fp8: Fp8Format | None = None
    """The FP8 format (fp8 codecs only)."""
    pow2_scale: bool = False
    """FP8 scales rounded up to a power of two."""

    @property
    def kmax(self) -> int:
        """Largest LogFMT magnitude code, 2^(n-1) - 1."""
        return (1 << (self.bits - 1)) - 1


def _parse(name: str) -> CodecSpec | None:
    if name == "bf16":
        return CodecSpec(name=name, kind="bf16", bits=16)
    if name == "deepep_logfmt10":
        return CodecSpec(name=name, kind="deepep_logfmt", bits=10)
    if name.startswith("fp8_"):
        fmt, _, tail = name[4:].partition("_")
        if fmt in FP8_FORMATS and tail in ("", "pow2"):
            return CodecSpec(
                name=name, kind="fp8", bits=8, fp8=FP8_FORMATS[fmt], pow2_scale=tail == "pow2"
            )
    if name.startswith("logfmt") and name[6:].isdigit() and int(name[6:]) in LOGFMT_BITS:
        return CodecSpec(name=name, kind="logfmt", bits=int(name[6:]))
    return None


def names() -> tuple[str, ...]:
    """Every codec name the registry knows, in a stable order."""
    fp8 = [f"fp8_{f}{t}" for f in FP8_FORMATS for t in ("", "_pow2")]
    return ("bf16", *fp8, *(f"logfmt{n}" for n in LOGFMT_BITS), "deepep_logfmt10")


def parse(name: str) -> CodecSpec:
    """The spec of codec `name`; ValueError naming the known codecs when unknown."""
    spec = _parse(name)
    if spec is None:
        raise ValueError(
            f"unknown codec {name!r}; choose bf16, fp8_e4m3, fp8_e5m2 (optionally _pow2), "
            f"logfmt4 ... logfmt16 or deepep_logfmt10"
        )
    return spec


def num_tiles(hidden: int) -> int:
    """Tiles per token row: ceil(hidden / 128)."""
    return -(-hidden // TILE)


def tile_lengths(hidden: int) -> list[int]:
    """Elements in each tile of a row (all 128 except possibly the last)."""
    tiles = num_tiles(hidden)
    return [min(TILE, hidden - t * TILE) for t in range(tiles)]


def packed_bytes(num_elems: int, bits: int) -> int:
    """Bytes of `num_elems` codes of `bits` bits, bit-packed LSB first: ceil(n*bits/8)."""
    return -(-num_elems * bits // 8)


def meta_row_bytes(spec: CodecSpec, hidden: int) -> int:
    """Metadata bytes per token: FP8 one float32 scale per tile, LogFMT two float32 (min,
    max of ln|x|), DeepEP two bf16 (amax, amin), BF16 none."""
    per_tile = {"bf16": 0, "fp8": 4, "logfmt": 8, "deepep_logfmt": 4}[spec.kind]
    return per_tile * num_tiles(hidden)


def code_row_bytes(spec: CodecSpec, hidden: int) -> int:
    """Element-code bytes per token (DeepEP: the BF16-sized slots, the worst case)."""
    if spec.kind in ("bf16", "deepep_logfmt"):
        return 2 * hidden
    if spec.kind == "fp8":
        return hidden
    return packed_bytes(hidden, spec.bits)


def row_bytes(spec: CodecSpec, hidden: int) -> int:
    """Wire bytes per token."""
    return meta_row_bytes(spec, hidden) + code_row_bytes(spec, hidden)


def check_shape(num_tokens: int, hidden: int) -> None:
    """ValueError unless num_tokens >= 0 and hidden >= 1."""
    if num_tokens < 0 or hidden < 1:
        raise ValueError(
            f"bad codec shape: num_tokens={num_tokens} hidden={hidden}; "
            "need num_tokens >= 0 and hidden >= 1"
        )


def wire_bytes(spec: CodecSpec, num_tokens: int, hidden: int) -> int:
    """Exact length of the encoded buffer of a [num_tokens, hidden] input."""
    check_shape(num_tokens, hidden)
    return num_tokens * row_bytes(spec, hidden)


def nominal_row_bytes(spec: CodecSpec, hidden: int) -> float:
    """Bytes per token under the published convention: DeepEP counts its LogFMT-10 as
    hidden*10/8 + hidden/128*4 whatever falls back to BF16; other codecs as `row_bytes`."""
    if spec.kind == "deepep_logfmt":
        return hidden * 10 / 8 + hidden / TILE * 4
    return float(row_bytes(spec, hidden))


def fp8_decode_table(fmt: Fp8Format) -> np.ndarray:
    """float32 value of each of the 256 codes of `fmt` (NaN codes as NaN, E5M2 Inf as Inf)."""
    table = np.empty(256, dtype=np.float32)
    exp_max = (1 << (7 - fmt.man_bits)) - 1
    for code in range(128):
        exp, man = code >> fmt.man_bits, code & ((1 << fmt.man_bits) - 1)
        if exp == 0:
            value = man * 2.0 ** (1 - fmt.bias - fmt.man_bits)
        else:
            value = (1 + man / 2**fmt.man_bits) * 2.0 ** (exp - fmt.bias)
        if code > fmt.max_code:
            value = math.inf if fmt.name == "e5m2" and exp == exp_max and man == 0 else math.nan
        table[code], table[code | 0x80] = value, -value
    return table
