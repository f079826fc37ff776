"""Max-min fair rate sharing (progressive filling) and the flow-completion event loop.

Flows and links form a weighted incidence in CSR form: flow f loads link flinks[e] by
fw[e] * rate[f] for e in fptr[f]:fptr[f+1] (fw of size 1 means every weight is 1; fractional
weights come from symmetry-aggregated flows). Progressive filling
raises every unfrozen flow's rate together until a link saturates, freezes the flows on it,
and repeats; the result is the unique max-min fair allocation. `complete` recomputes it each
time flows finish. `rel_tol` > 0 trades exactness for speed: links within that fraction of
saturation freeze together (rates at most rel_tol low), and flows finishing before
(1 + rel_tol) x the next completion time finish together (the others keep their rates until
then, and never in steps below rel_tol x the busiest link's drain time), which bounds the
number of recomputations by about (T_last / T_link) / rel_tol.
Compiled with numba; docs/PERFORMANCE.md ("Fabric model") states the model and its limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

F = TypeVar("F", bound=Callable[..., Any])
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


def _jit(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


@_jit
def _transpose(fptr: Any, flinks: Any, num_links: int) -> tuple[Any, Any]:
    """CSR flows->links to CSR links->flows (counting sort)."""
    lptr = np.zeros(num_links + 1, dtype=np.int64)
    for e in range(flinks.size):
        lptr[flinks[e] + 1] += 1
    for li in range(num_links):
        lptr[li + 1] += lptr[li]
    fill = lptr[:-1].copy()
    lflows = np.empty(flinks.size, dtype=np.int32)
    for f in range(fptr.size - 1):
        for e in range(fptr[f], fptr[f + 1]):
            li = flinks[e]
            lflows[fill[li]] = f
            fill[li] += 1
    return lptr, lflows


@_jit
def _link_weights(fptr: Any, flinks: Any, fw: Any, active: Any, num_links: int) -> Any:
    """Sum of the weights of active flows on each link."""
    weighted = fw.size > 1
    wsum = np.zeros(num_links)
    for f in range(fptr.size - 1):
        if active[f]:
            for e in range(fptr[f], fptr[f + 1]):
                wsum[flinks[e]] += fw[e] if weighted else 1.0
    return wsum


@_jit
def _next_step(wsum: Any, remaining: Any) -> tuple[float, int]:
    """Smallest rate increase that saturates a link, and that link."""
    step, best = np.inf, -1
    for li in range(wsum.size):
        if wsum[li] > 1e-12:
            t = remaining[li] / wsum[li]
            if t < step:
                step, best = t, li
    return step, best


@_jit
def _freeze_link(
    li: int, level: float, lptr: Any, lflows: Any, fptr: Any, flinks: Any, fw: Any,
    frozen: Any, rate: Any, wsum: Any,
) -> int:  # fmt: skip
    """Freeze the unfrozen flows on link li at `level`; return how many."""
    weighted = fw.size > 1
    count = 0
    for k in range(lptr[li], lptr[li + 1]):
        f = lflows[k]
        if frozen[f]:
            continue
        frozen[f] = True
        rate[f] = level
        count += 1
        for e in range(fptr[f], fptr[f + 1]):
            wsum[flinks[e]] -= fw[e] if weighted else 1.0
    wsum[li] = 0.0
    return count


@_jit
def _fill(
    fptr: Any, flinks: Any, fw: Any, lptr: Any, lflows: Any, cap: Any, active: Any, rate: Any,
    rel_tol: float,
) -> None:  # fmt: skip
    """Max-min fair rates of active flows into `rate` (progressive filling)."""
    wsum = _link_weights(fptr, flinks, fw, active, cap.size)
    remaining = cap.copy()
    frozen = ~active
    left = int(active.sum())
    level = 0.0
    while left > 0:
        step, best = _next_step(wsum, remaining)
        if best < 0:
            break
        level += step
        slack = rel_tol * level  # links within rel_tol of saturation freeze together
        for li in range(cap.size):
            if wsum[li] > 1e-12:
                remaining[li] -= step * wsum[li]
        for li in range(cap.size):
            if wsum[li] > 1e-12 and (
                li == best or remaining[li] <= slack * wsum[li] + 1e-9 * cap[li]
            ):
                left -= _freeze_link(li, level, lptr, lflows, fptr, flinks, fw, frozen, rate, wsum)
    for f in range(active.size):
        if active[f] and not frozen[f]:
            rate[f] = np.inf  # a flow that crosses no link


@_jit
def _complete(
    fptr: Any,
    flinks: Any,
    fw: Any,
    lptr: Any,
    lflows: Any,
    cap: Any,
    size: Any,
    rel_tol: float,
    min_step: float,
) -> tuple[Any, int]:
    """Completion time of every flow; rates recomputed whenever flows finish."""
    num_flows = size.size
    remaining = size.astype(np.float64).copy()
    active = remaining > 0
    finish = np.zeros(num_flows)
    rate = np.zeros(num_flows)
    now = 0.0
    events = 0
    while active.any():
        _fill(fptr, flinks, fw, lptr, lflows, cap, active, rate, rel_tol)
        events += 1
        first = np.inf
        for f in range(num_flows):
            if active[f]:
                t = remaining[f] / rate[f]
                if t < first:
                    first = t
        cut = max((now + first) * (1.0 + rel_tol) - now, first + min_step)
        step = first
        for f in range(num_flows):
            if active[f]:
                t = remaining[f] / rate[f]
                if t <= cut and t > step:
                    step = t
        for f in range(num_flows):
            if active[f]:
                t = remaining[f] / rate[f]
                if t <= cut:
                    finish[f] = now + t
                    active[f] = False
                    remaining[f] = 0.0
                else:
                    remaining[f] -= rate[f] * step
        now += step
    return finish, events


@_jit
def _link_sum(fptr: Any, flinks: Any, fw: Any, size: Any, num_links: int) -> Any:
    out = np.zeros(num_links)
    weighted = fw.size > 1
    for f in range(fptr.size - 1):
        for e in range(fptr[f], fptr[f + 1]):
            out[flinks[e]] += (fw[e] if weighted else 1.0) * size[f]
    return out


def link_bytes(
    fptr: IntArray, flinks: Int32Array, fw: FloatArray, size: FloatArray, num_links: int
) -> FloatArray:
    """Bytes on each link when flow f moves size[f] bytes (weighted incidence)."""
    return cast(FloatArray, _link_sum(fptr, flinks, fw, size, num_links))


def max_min_rates(
    fptr: IntArray, flinks: Int32Array, fw: FloatArray, cap: FloatArray
) -> FloatArray:
    """Max-min fair rate of every flow (bytes/s) on links of capacity `cap` (bytes/s)."""
    lptr, lflows = _transpose(fptr, flinks, cap.size)
    num_flows = fptr.size - 1
    rate = np.zeros(num_flows)
    _fill(fptr, flinks, fw, lptr, lflows, cap, np.ones(num_flows, dtype=np.bool_), rate, 0.0)
    return cast(FloatArray, rate)


def completion_times(
    fptr: IntArray,
    flinks: Int32Array,
    fw: FloatArray,
    cap: FloatArray,
    size_bytes: FloatArray,
    rel_tol: float = 0.0,
) -> tuple[FloatArray, int]:
    """Finish time (s) of every flow under max-min sharing recomputed as flows finish, and
    the number of rate recomputations."""
    if rel_tol < 0:
        raise ValueError(f"rel_tol={rel_tol}; use >= 0")
    lptr, lflows = _transpose(fptr, flinks, cap.size)
    # no flow can finish before the busiest link drains: batch completions in steps of
    # rel_tol of that bound, so skewed sizes cannot force one recomputation per tiny flow
    bound = (
        float((link_bytes(fptr, flinks, fw, size_bytes, cap.size) / cap).max()) if cap.size else 0.0
    )
    finish, events = _complete(
        fptr, flinks, fw, lptr, lflows, cap, size_bytes, rel_tol, rel_tol * bound
    )
    return cast(FloatArray, finish), int(events)
