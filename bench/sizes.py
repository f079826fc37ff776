"""Sweep sizes as nccl-tests takes them: `-b/-e` with K/M/G suffixes, `-f` factor or `-i` step.

Suffixes are binary (1K = 1024 B), as in nccl-tests. Every mistake is a UsageError that
names the value and says what to give instead.
"""

from __future__ import annotations

import re

from bench.errors import UsageError

_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_SIZE_BYTES = 1 << 40


def parse_size(text: str, flag: str = "size") -> int:
    """`128`, `64K`, `1M`, `4G`, `1.5M` (binary units) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTB]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise UsageError(f"{flag} {text!r} is not a size; write e.g. 64, 8K, 128M or 1G")
    value = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if value != int(value):
        raise UsageError(f"{flag} {text!r} is not a whole number of bytes")
    if value > MAX_SIZE_BYTES:
        raise UsageError(f"{flag} {text!r} is larger than 1T; pick a smaller size")
    return int(value)


def sweep(begin: int, end: int, factor: float | None = None, step: int | None = None) -> list[int]:
    """Sizes from `begin` to `end` inclusive, multiplying by `factor` or adding `step`."""
    if begin <= 0:
        raise UsageError(f"-b {begin} must be at least 1")
    if end < begin:
        raise UsageError(f"-e {end} is smaller than -b {begin}; swap them")
    if factor is not None and step is not None:
        raise UsageError("give -f (factor) or -i (step), not both")
    if step is not None:
        if step <= 0:
            raise UsageError(f"-i {step} must be positive")
        sizes = list(range(begin, end + 1, step))
    else:
        factor = 2.0 if factor is None else factor
        if factor <= 1:
            raise UsageError(f"-f {factor:g} must be greater than 1")
        sizes, size = [], float(begin)
        while size <= end:
            sizes.append(int(size))
            size *= factor
    if len(sizes) > 10_000:
        raise UsageError(f"the sweep has {len(sizes)} sizes; use a larger -f or -i")
    return sizes


def format_size(num_bytes: float) -> str:
    """1048576 -> '1M' style, for messages."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if num_bytes >= scale and num_bytes % scale == 0:
            return f"{int(num_bytes // scale)}{unit}"
    return f"{int(num_bytes)}B"
