"""Codec accuracy: seeded input distributions, error metrics, and the paper's claims.

Metrics compare the decoded tensor with the input as given (float32, or bfloat16 widened):
relative L2 error, max abs error, cosine similarity and DeepEP's `calc_diff`
(1 - 2 sum(xy) / sum(x^2 + y^2) after shifting both by +1, in float64). The claims of
[P] §3.2 are checked per distribution on the relative L2 error: LogFMT-8 beats FP8 E4M3
and E5M2; LogFMT-10 is "close to BF16", read here as within `CLOSE_FACTOR` of BF16's error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

DISTRIBUTIONS = ("gaussian", "student_t", "outlier_channels", "lognormal")
"""Synthetic activations: N(0,1); Student-t with 3 degrees of freedom (heavy tails);
N(0,1) with 1 in 256 channels (at least 4) scaled by 100, as LLM activations have;
log-normal magnitudes (sigma 2) with random signs."""
CLOSE_FACTOR = 2.0
"""LogFMT-10 counts as close to BF16 when its relative L2 error is at most this x BF16's."""
CLAIM_CODECS = ("bf16", "fp8_e4m3", "fp8_e5m2", "logfmt8", "logfmt10")


def sample(distribution: str, num_tokens: int, hidden: int, seed: int) -> np.ndarray:
    """[num_tokens, hidden] float32 drawn from `distribution` (see DISTRIBUTIONS)."""
    rng = np.random.default_rng([seed, DISTRIBUTIONS.index(distribution)])
    shape = (num_tokens, hidden)
    if distribution == "gaussian":
        x = rng.standard_normal(shape)
    elif distribution == "student_t":
        x = rng.standard_t(3.0, shape)
    elif distribution == "outlier_channels":
        x = rng.standard_normal(shape)
        channels = rng.choice(hidden, size=min(hidden, max(4, hidden // 256)), replace=False)
        x[:, channels] *= 100.0
    else:
        x = rng.lognormal(0.0, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return x.astype(np.float32)


def check_distribution(name: str) -> str:
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r}; choose from {', '.join(DISTRIBUTIONS)}")
    return name


def calc_diff(x: np.ndarray, y: np.ndarray) -> float:
    """DeepEP's similarity defect: 0 for identical tensors."""
    x64, y64 = x.astype(np.float64) + 1.0, y.astype(np.float64) + 1.0
    return float(1.0 - 2.0 * np.sum(x64 * y64) / np.sum(x64 * x64 + y64 * y64))


def metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Error of decoded `y` against input `x` (finite elements of x only)."""
    keep = np.isfinite(x)
    x64, y64 = x[keep].astype(np.float64), y[keep].astype(np.float64)
    diff = y64 - x64
    norm_x, norm_y = np.linalg.norm(x64), np.linalg.norm(y64)
    return {
        "rel_l2": float(np.linalg.norm(diff) / norm_x) if norm_x else 0.0,
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "cosine": float(np.dot(x64, y64) / (norm_x * norm_y)) if norm_x and norm_y else 1.0,
        "calc_diff": calc_diff(x64, y64),
    }


def claims(results: Mapping[str, Mapping[str, float]]) -> dict[str, object]:
    """The paper's two claims on one distribution, from per-codec metrics (needs
    CLAIM_CODECS); each verdict with the numbers behind it."""
    err = {name: results[name]["rel_l2"] for name in CLAIM_CODECS}
    ratio = err["logfmt10"] / err["bf16"] if err["bf16"] else float("inf")
    return {
        "logfmt8_beats_fp8": err["logfmt8"] < min(err["fp8_e4m3"], err["fp8_e5m2"]),
        "logfmt8_vs_e4m3": err["logfmt8"] / err["fp8_e4m3"],
        "logfmt8_vs_e5m2": err["logfmt8"] / err["fp8_e5m2"],
        "logfmt10_close_to_bf16": ratio <= CLOSE_FACTOR,
        "logfmt10_vs_bf16": ratio,
    }


def measure(
    inputs: Mapping[str, np.ndarray], chosen: Sequence[Any], dtype: torch.dtype
) -> dict[str, dict[str, dict[str, float]]]:
    """{input: {codec: metrics + bits_per_element}} for codecs from `collectives.codecs.get`;
    each float32 input is cast to `dtype` first, and that cast is the reference."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label, matrix in inputs.items():
        x = torch.from_numpy(matrix).to(dtype)
        ref = x.float().numpy()
        out[label] = {}
        for codec in chosen:
            y = codec.decode(codec.encode(x), *x.shape).numpy()
            row = metrics(ref, y)
            row["bits_per_element"] = 8 * codec.wire_bytes(*x.shape) / x.numel()
            out[label][codec.name] = row
    return out


def verdicts(per_codec: Mapping[str, Mapping[str, float]]) -> dict[str, object] | None:
    """`claims`, or None when a claim codec is missing or the input is already BF16."""
    if not all(c in per_codec for c in CLAIM_CODECS) or per_codec["bf16"]["rel_l2"] == 0:
        return None
    return claims(per_codec)
