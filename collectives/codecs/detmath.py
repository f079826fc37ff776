"""Deterministic log2 / exp2 in float64 (and exp2 in float32), built only from correctly
rounded operations.

libm, numpy's SIMD loops, Sleef (torch CPU) and CUDA's exp/log may differ in the last bit,
and a LogFMT rounding cut that moves by one ulp flips a code. So every implementation
(numpy reference, numba, torch, Triton) evaluates the same polynomials below with the same
operation order: +, -, *, / and exact scaling by powers of two only. The Horner helpers
take numpy arrays, torch tensors or numba scalars alike. No fused multiply-add is allowed
anywhere on these paths (numba does not contract; Triton kernels run with fp fusion off).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import torch

LN2 = math.log(2.0)
INV_LN2 = 1.0 / LN2
SQRT_HALF = math.sqrt(0.5)

# ln(f) = 2 atanh(u), u = (f - 1) / (f + 1), |u| <= 0.1716 for f in [sqrt(1/2), sqrt(2)):
# 2u * sum_k u^(2k) / (2k + 1), 7 terms; truncation error below 2e-13 relative.
ATANH_COEFFS = tuple(1.0 / (2 * k + 1) for k in range(7))
# exp2(r) = sum_i (r ln2)^i / i! for |r| <= 1/2, 11 terms; truncation error below 3e-13
# relative (decoded values are float32; cut positions move by less than 1e-12).
EXP2_COEFFS = tuple(LN2**i / math.factorial(i) for i in range(11))
# Horner order: highest coefficient first.
ATANH_TOP, ATANH_REST = ATANH_COEFFS[-1], tuple(reversed(ATANH_COEFFS[:-1]))
EXP2_TOP, EXP2_REST = EXP2_COEFFS[-1], tuple(reversed(EXP2_COEFFS[:-1]))

Real = TypeVar("Real", float, "np.ndarray", "torch.Tensor")
"""What the Horner helpers take and return: a scalar, a numpy array or a torch tensor."""


# The first Horner step is written out so that `p` has the argument's type throughout.
def log2_mantissa(f: Real) -> Real:
    """log2(f) for f in [sqrt(1/2), sqrt(2)) (float64 array, tensor or scalar)."""
    u = (f - 1.0) / (f + 1.0)
    u2 = u * u
    p = ATANH_TOP * u2 + ATANH_REST[0]
    for c in ATANH_REST[1:]:
        p = p * u2 + c
    return (2.0 * u * p) * INV_LN2


def exp2_fraction(r: Real) -> Real:
    """2^r for r in [-1/2, 1/2] (float64 array, tensor or scalar)."""
    p = EXP2_TOP * r + EXP2_REST[0]
    for c in EXP2_REST[1:]:
        p = p * r + c
    return p


# LogFMT decodes in float32: 2^r for r in [-1/2, 1/2] from a degree-6 polynomial whose
# coefficients are float32 values, evaluated by Horner in float32 (no fused multiply-add):
# within 1.1e-7 relative of 2^r (least squares on Chebyshev nodes; checked over 4e5 points).
EXP2_F32_COEFFS = (1.0, 0.6931471824645996, 0.24022650718688965, 0.05550327152013779,
                   0.00961802527308464, 0.0013400432653725147, 0.00015469732170458883)  # fmt: skip
EXP2_F32_TOP, EXP2_F32_REST = EXP2_F32_COEFFS[-1], tuple(reversed(EXP2_F32_COEFFS[:-1]))


def exp2_fraction_f32(r: Real) -> Real:
    """2^r for float32 r in [-1/2, 1/2] (float32 array or tensor; numba passes float32
    scalars and its own float32 constants, see numba_kernels)."""
    p = EXP2_F32_TOP * r + EXP2_F32_REST[0]
    for c in EXP2_F32_REST[1:]:
        p = p * r + c
    return p  # type: ignore[no-any-return]
