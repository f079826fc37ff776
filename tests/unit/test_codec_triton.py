"""The Triton kernels write the reference's bytes, bit for bit.

They run under Triton's CPU interpreter (TRITON_INTERPRET=1, which must be set before triton
is imported, hence one subprocess for the whole module) on CPU tensors: every codec the
kernels cover, random shapes (hidden not a multiple of 128 included, which also covers
unaligned rows and every packing unit), special values, LogFMT tiles at the edges of the
decoder's clamp-free path, LogFMT values on and beside every
rounding cut (where any inexact ln would pick the wrong level), FP8 quotients on and beside
every rounding cut and at the sign-of-zero threshold (where a quotient off by an ulp picks
the wrong code), LogFMT values just inside the fast path's tolerance (a tolerance half as
wide fails), the previous (fast=False) encoders, the deferring LogFMT encoders (group
"defer": near-cut groups listed and recoded by a second kernel, which must have work to do
on the tolerance inputs), every launch shape the tuner sweeps, all 256 FP8 codes, and the
int64 offset path.
Skipped where Triton is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)

CODECS = ("fp8_e4m3", "fp8_e5m2", "fp8_e4m3_pow2", "fp8_e5m2_pow2",
          *(f"logfmt{n}" for n in range(4, 17)))  # fmt: skip
# (tokens, hidden): 300 and 129 leave a short last tile and rows that are not 4-byte
# multiples; 256/384 give aligned rows (float32 metadata words, 32/16-bit code pieces).
SHAPES = ((1, 1), (3, 129), (5, 300), (4, 256), (2, 384), (2, 1000))
GROUPS = ("random", "special", "configs", "table", "wide", "cuts", "tolerance", "previous", "defer")


def random_input(rng: np.random.Generator, tokens: int, hidden: int) -> np.ndarray:
    """Heavy-tailed values with per-token magnitudes from 1e-6 to 1e3."""
    x = rng.standard_t(3.0, (tokens, hidden)) * 10.0 ** rng.uniform(-6, 3, (tokens, 1))
    return x.astype(np.float32)


def special_input() -> np.ndarray:
    """Zeros, an all-zero tile, subnormals, huge values, NaN, +-Inf, -0.0, a tile with one
    non-zero value, and values at and next to powers of two (LogFMT/FP8 rounding cuts)."""
    x = np.random.default_rng(11).standard_normal((10, 300)).astype(np.float32)
    x[0, :128] = 0.0
    x[1, 3], x[2, 150], x[3, 299] = np.nan, np.inf, -np.inf
    x[4, :200] = np.float32(1e-40)
    x[4, 200:] = -np.float32(1e-39)
    x[5, 10], x[5, 11] = np.float32(3.4e38), np.float32(-3.0e38)
    x[6, 128:256] = 0.0
    x[6, 140] = np.float32(-2.5)
    x[7, 256:] = np.float32(-0.0)
    grid = 1.5 * 2.0 ** np.arange(-40, 40, 0.5)
    near = np.concatenate([grid, np.nextafter(grid, 0), np.nextafter(grid, np.inf)])
    x[8] = near[:300].astype(np.float32)
    x[9] = -x[8][::-1]
    return x


def decode_edge_input() -> np.ndarray:
    """Tokens of 8 tiles (one LogFMT decode block at the default shape) whose tiles all sit at
    an edge of the decoder's clamp-free path: e0 = -125 (in it) and -126 (not), e0 = 94 with
    levels up to 2^127 (in it) and 95 with levels up to FLT_MAX (not), and a Gaussian token."""
    rng = np.random.default_rng(13)
    u = rng.uniform(0.0, 1.0, (5, 1024))
    x = np.empty((5, 1024))
    x[0] = 2.0 ** (-125.0 + 0.999 * u[0])
    x[1] = 2.0 ** (-126.0 + 0.999 * u[1])
    x[2] = 2.0 ** (94.0 + 32.9 * u[2])
    x[2, ::128] = 2.0**94.0001  # every tile's min: e0 = 94
    x[3] = 2.0 ** (95.5 + 32.4 * u[3])
    x[4] = rng.standard_normal(1024)
    x *= rng.choice(np.array([-1.0, 1.0]), x.shape)
    return x.astype(np.float32)


def run_checks() -> dict[str, list[str]]:
    """Everything, inside the interpreter subprocess: failures by category."""
    import torch

    from collectives import codecs
    from collectives.codecs import ref, ref_logfmt
    from collectives.codecs import triton_kernels as tk
    from collectives.codecs.triton_logfmt import LG2_ERR

    rng = np.random.default_rng(7)
    fails: dict[str, list[str]] = {k: [] for k in GROUPS}

    def check(group: str, name: str, x: torch.Tensor, config=None, fast=True, defer=None) -> None:  # type: ignore[no-untyped-def]
        spec = codecs.parse(name)
        ref = codecs.get(name, impl="numpy")
        wire = ref.encode(x)
        got = tk.encode(spec, x, config, fast=fast, defer=defer)
        label = (f"{name} {tuple(x.shape)} {x.dtype} {config.label if config else 'default'} "
                 f"fast={fast} defer={defer}")  # fmt: skip
        if not torch.equal(got, wire):
            fails[group].append(f"{label} encode: {int((got != wire).sum())} bytes differ")
        want = ref.decode(wire, *x.shape).view(torch.int32)
        dec = tk.decode(spec, wire, *x.shape, config).view(torch.int32)
        if not torch.equal(dec, want):
            fails[group].append(f"{label} decode: {int((dec != want).sum())} values differ")

    for name in CODECS:
        for tokens, hidden in SHAPES:
            check("random", name, torch.from_numpy(random_input(rng, tokens, hidden)))
        special = torch.from_numpy(special_input())
        check("special", name, special)
        check("special", name, special[:, :129].bfloat16())
        if name.startswith("logfmt"):
            check("special", name, torch.from_numpy(decode_edge_input()))
    for bits in (4, 8, 10, 13, 16):
        check("cuts", f"logfmt{bits}", torch.from_numpy(ref_logfmt.cut_input(bits)))
        for zero in (False, True):
            x = ref_logfmt.tolerance_input(bits, LG2_ERR.value, zero)
            check("tolerance", f"logfmt{bits}", torch.from_numpy(x))
    for name in CODECS[:4]:
        check("cuts", name, torch.from_numpy(ref.fp8_cut_input(codecs.parse(name), tokens=16)))
    for name in ("fp8_e4m3", "fp8_e5m2_pow2", "logfmt8", "logfmt10", "logfmt13"):
        check("previous", name, torch.from_numpy(random_input(rng, 3, 300)), fast=False)
        check("previous", name, torch.from_numpy(special_input()), fast=False)
    for kind, name in (("fp8", "fp8_e4m3"), ("logfmt", "logfmt10"), ("logfmt", "logfmt8")):
        x = torch.from_numpy(random_input(rng, 3, 1000))
        for op in tk.OPS:
            for config in tk.sweep_configs(kind, op):
                check("configs", name, x, config)
    for name in ("fp8_e4m3", "fp8_e5m2"):  # every code, scale 1 (NaN/Inf codes too)
        wire = torch.cat([torch.tensor([1.0, 1.0]).view(torch.uint8), torch.arange(256).byte()])
        want = codecs.get(name, impl="numpy").decode(wire, 1, 256).view(torch.int32)
        if not torch.equal(tk.decode(codecs.parse(name), wire, 1, 256).view(torch.int32), want):
            fails["table"].append(f"{name}: some of the 256 codes decode differently")
    check_defer(check, rng, fails["defer"])
    tk.INT32_LIMIT = 0  # force int64 offsets
    tk._shape_args.cache_clear()
    tk.plan.cache_clear()
    launches, real_launch = [], tk._launch

    def recording(launch: tk.Launch, args: tuple[object, ...]) -> None:
        launches.append(launch.named["WIDE"])
        real_launch(launch, args)

    tk._launch = recording
    try:
        for name in ("fp8_e5m2", "logfmt10", "logfmt16"):
            check("wide", name, torch.from_numpy(random_input(rng, 3, 300)))
        check("defer", "logfmt10", torch.from_numpy(random_input(rng, 3, 300)), defer=True)
    finally:
        tk._launch = real_launch
    if not launches or not all(launches):
        fails["wide"].append(f"{launches.count(False)} of {len(launches)} launches kept int32")
    return fails


def check_defer(check, rng: np.random.Generator, fails: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The deferring fast encoder: random shapes (short last tiles, unaligned rows),
    specials (all-zero tiles, one-value tiles with s = 0, subnormals, NaN/Inf tiles), bf16,
    LogFMT cuts and fast-path tolerances, every launch shape of the sweep (steps > 1 too),
    consecutive calls of one shape (a count left from the previous call shows). Without its
    second kernel the tolerance inputs must come out wrong: the list really carries them."""
    import torch

    from collectives import codecs
    from collectives.codecs import ref_logfmt
    from collectives.codecs import triton_kernels as tk
    from collectives.codecs.triton_logfmt import LG2_ERR

    for name in ("logfmt8", "logfmt10"):
        bits = int(name[6:])
        inputs = [random_input(rng, t, h) for t, h in SHAPES]
        inputs += [random_input(rng, 10, 300), special_input(), ref_logfmt.cut_input(bits)]
        inputs += [ref_logfmt.tolerance_input(bits, LG2_ERR.value, z) for z in (False, True)]
        for x in inputs:
            check("defer", name, torch.from_numpy(x), defer=True)
        check("defer", name, torch.from_numpy(special_input()[:, :129]).bfloat16(), defer=True)
        x = torch.from_numpy(random_input(rng, 3, 1000))
        for config in tk.sweep_configs("logfmt", "encode"):
            check("defer", name, x, config, defer=True)
        x = torch.from_numpy(ref_logfmt.tolerance_input(bits, LG2_ERR.value, False))
        launch, tk._launch_fixup = tk._launch_fixup, lambda *args: None
        try:
            unfixed = tk.encode(codecs.parse(name), x, defer=True)
        finally:
            tk._launch_fixup = launch
        if torch.equal(unfixed, codecs.get(name, impl="numpy").encode(x)):
            fails.append(f"{name}: the tolerance input came out right without the fixup kernel")
        # the fixup kernel's last program empties the list (no kernel of its own does), so
        # that the next encode starts from a zero count
        fix = tk._fix_list(x.device, x.shape[0] * -(-x.shape[1] // 128) * 16)
        fix[:2].fill_(0)
        check("defer", name, x, defer=True)
        if fix[:2].tolist() != [0, 0]:
            fails.append(f"{name}: the list holds {fix[:2].tolist()} after an encode, not [0, 0]")
    for name in ("logfmt4", "logfmt13", "logfmt16"):
        check("defer", name, torch.from_numpy(random_input(rng, 5, 300)), defer=True)
    # staged stores at every piece size (1, 2, 4 bytes) and padding (P = 1 .. 16), whole and
    # short last tiles
    staged = tk.KernelConfig(block_tiles=16, num_warps=1, groups=2, staged=True)
    for bits in (4, 6, 9, 10, 12, 13, 15):
        for x in (random_input(rng, 5, 256), random_input(rng, 3, 300)):
            check("defer", f"logfmt{bits}", torch.from_numpy(x), staged, defer=True)


@pytest.fixture(scope="module")
def failures() -> dict[str, list[str]]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    code = ("import json, warnings; warnings.simplefilter('ignore'); "
            "from tests.unit.test_codec_triton import run_checks; "
            "print('RESULT', json.dumps(run_checks()))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=280, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]


@pytest.mark.parametrize("group", GROUPS)
def test_triton_kernels_match_the_reference_under_the_interpreter(
    failures: dict[str, list[str]], group: str
) -> None:
    assert failures[group] == [], "\n".join(failures[group][:20])


def test_defer_is_a_variant_of_the_fast_logfmt_encoder_only() -> None:
    import torch

    from collectives import codecs
    from collectives.codecs import triton_kernels as tk

    with pytest.raises(ValueError, match="fp8_e4m3 .fast=True. has none"):
        tk.encode(codecs.parse("fp8_e4m3"), torch.ones(1, 128), defer=True)
    with pytest.raises(ValueError, match="logfmt8 .fast=False. has none"):
        tk.encode(codecs.parse("logfmt8"), torch.ones(1, 128), fast=False, defer=True)


def test_the_sweep_and_the_defaults_are_valid_launch_shapes() -> None:
    from collectives.codecs import triton_kernels as tk

    for kind in tk.KERNEL_KINDS:
        for op in tk.OPS:
            configs = tk.sweep_configs(kind, op)
            assert tk.DEFAULT_CONFIGS[(kind, op)] in configs
            assert len({c.label for c in configs}) == len(configs)
            assert all(tk.KernelConfig.from_label(c.label) == c for c in configs)
    assert tk.KernelConfig.from_label("bt16w1g2c") == tk.KernelConfig(
        block_tiles=16, num_warps=1, groups=2, staged=True)  # fmt: skip
    assert not tk.KernelConfig.from_label("bt16w1g2").staged
    with pytest.raises(ValueError, match="block_tiles"):
        tk.KernelConfig(block_tiles=12)


def test_fast_encoders_are_the_default_only_where_measured_faster() -> None:
    from collectives import codecs
    from collectives.codecs import triton_kernels as tk

    fast = {name for name in CODECS if tk.default_fast(codecs.parse(name))}
    logfmt = {f"logfmt{n}" for n in range(4, 16)}  # LogFMT-16 measured faster exact
    assert fast == {"fp8_e4m3", "fp8_e5m2", "fp8_e4m3_pow2", "fp8_e5m2_pow2", *logfmt}
    deferred = {name for name in CODECS if tk.default_defer(codecs.parse(name))}
    assert deferred == logfmt
