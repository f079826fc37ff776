"""GPU check and benchmark of the payload codecs (run on a CUDA machine from the repo root).

    python bench/gpu/codec_gpu.py --out codec_gpu.json

1. Bit identity: every GPU implementation (Triton kernels where Triton imports, and the
   torch-ops path) against the numpy reference, on random inputs of several shapes and on
   special values (zeros, all-zero tiles, subnormals, huge values, NaN, Inf), values on and
   beside the FP8 and LogFMT rounding cuts and inside the LogFMT fast path's tolerance, for
   the encoded bytes and the decoded float32 bits; and the two hardware behaviours the fast
   encoders rely on, checked exhaustively (collectives/codecs/triton_hwcheck.py).
2. Bandwidth: a device copy of the input's bytes (read + written), then encode and decode
   of each codec at each size, as bytes read + written per second and as a fraction of the
   copy bandwidth measured in the same run. Targets of issue #3: FP8 >= 50%, LogFMT >= 30%.
3. Cost beside the transfer: (encode + decode) time over the time a BF16 payload of the same
   tokens takes on a 50 GB/s NIC (projected) — [P] reports 50-100% for its fused LogFMT.
Prints a compact table and writes everything as JSON to --out. Needs torch, numpy and
(optionally) triton only.

With --ab the other Triton encoders of each codec are timed beside its default (same
bytes; each is identity-checked too): the previous or fast LogFMT/FP8 encoder, and for
LogFMT the fast encoder both ways ('triton-fast': a near-cut chunk redone in place;
'triton-defer': near-cut groups recoded by a second kernel), also at every --ab-configs
launch shape. --profile CODEC:VARIANT[@SHAPE] only runs that
encoder a few times at the first --sizes size, for ncu (bench/gpu/codec_profile.sh);
--dry-run stops before the first CUDA call.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from collectives import codecs
from collectives.codecs import ref, ref_logfmt, throughput, triton_kernels

NIC_GBPS = 50.0
TARGETS = {"fp8_e4m3": 0.5, "logfmt8": 0.3, "logfmt10": 0.3}
CHECK_CODECS = ("bf16", "fp8_e4m3", "fp8_e4m3_pow2", "fp8_e5m2", "logfmt4", "logfmt8",
                "logfmt10", "logfmt13", "logfmt16", "deepep_logfmt10")  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, help="JSON results file (needed unless --profile)")
    p.add_argument("--sizes", default="4096x7168,1024x7168,16384x7168,4096x4096,4096x2048,128x7168")
    p.add_argument("--codecs", default="fp8_e4m3,logfmt8,logfmt10,fp8_e4m3_pow2,logfmt4,bf16")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--skip-check", action="store_true")
    p.add_argument(
        "--ab",
        action="store_true",
        help="also time the other Triton encoders: the previous one, LogFMT's fast and defer",
    )
    p.add_argument(
        "--loop",
        type=int,
        default=1,
        help="calls per timed sample (back to back; > 1 hides launch overhead)",
    )
    p.add_argument(
        "--host-costs",
        action="store_true",
        help="print the host's time per call of each step of a Triton encode (no timing)",
    )
    p.add_argument(
        "--graph",
        action="store_true",
        help="replay the --loop calls from a CUDA graph: kernel time without the host's",
    )
    p.add_argument(
        "--ab-configs",
        default="",
        help="with --ab, launch shapes (KernelConfig labels: bt64w4g2,...) at which the "
        "LogFMT fast and defer encoders are timed besides the codec's default shape",
    )
    p.add_argument(
        "--profile",
        metavar="CODEC:VARIANT[@SHAPE]",
        help=f"only run this encoder --profile-calls times (variants: {', '.join(VARIANTS)})",
    )
    p.add_argument("--profile-calls", type=int, default=3)
    p.add_argument("--dry-run", action="store_true", help="stop before the first CUDA call")
    p.add_argument(
        "--bench-impls",
        default="triton,torch",
        help="implementations to time (the torch-ops path is 30-150x slower)",
    )
    args = p.parse_args()
    try:
        labels = [c for c in args.ab_configs.split(",") if c]
        args.ab_shapes = [triton_kernels.KernelConfig.from_label(c) for c in labels]
        args.profiled = parse_profile(args.profile) if args.profile else None
    except ValueError as err:
        p.error(str(err))
    if args.out is None and not (args.profile or args.dry_run):
        p.error("--out is required (unless --profile or --dry-run)")
    return args


# LogFMT widths whose non-default fast encoders the identity check covers (each one costs
# several compiles; the interpreter tests cover the other widths)
VARIANT_CHECKED = ("logfmt8", "logfmt10")
VARIANTS = triton_kernels.ENCODER_VARIANTS  # (fast, defer) by name
LOGFMT_VARIANTS = ("fast", "defer")  # timed with --ab at every --ab-configs shape


def parse_profile(text: str) -> tuple[str, str, triton_kernels.KernelConfig | None]:
    """(codec, variant, launch shape or None) of --profile CODEC:VARIANT[@SHAPE]."""
    name, _, rest = text.partition(":")
    variant, _, shape = (rest or "default").partition("@")
    spec = codecs.parse(name)
    if variant not in VARIANTS or (VARIANTS[variant][1] and spec.kind != "logfmt"):
        raise ValueError(f"--profile {text}: variant {variant!r} is not one of "
                         f"{', '.join(VARIANTS)} (defer for LogFMT only)")  # fmt: skip
    if spec.kind not in triton_kernels.KERNEL_KINDS:
        raise ValueError(f"--profile {text}: {name} has no Triton encoder")
    return name, variant, triton_kernels.KernelConfig.from_label(shape) if shape else None


def variant_encoder(name: str, variant: str, config: triton_kernels.KernelConfig | None = None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """x -> wire through triton_kernels.encode with the variant's flags."""
    spec = codecs.parse(name)
    fast, defer = VARIANTS[variant]
    return lambda x: triton_kernels.encode(spec, x, config, fast=fast, defer=defer)


def impls(wanted: str = "triton,torch") -> list[str]:
    names = wanted.split(",")
    return [
        n
        for n in ("triton", "torch")
        if n in names and (n != "triton" or triton_kernels.available())
    ]


def special_inputs() -> list[torch.Tensor]:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 1000)).astype(np.float32)
    x[0, :128] = 0.0
    x[1, 3], x[2, 300], x[3, 700] = np.nan, np.inf, -np.inf
    x[4, :200] = np.float32(1e-40)
    x[5, 10], x[5, 11] = np.float32(3.4e38), np.float32(-3.0e38)
    x[6] *= np.float32(1e-3)
    x[7, 500:] = np.float32(-0.0)
    grid = 1.5 * 2.0 ** np.arange(40)
    near = np.concatenate([grid, np.nextafter(grid, 0), np.nextafter(grid, np.inf), [1.0]])
    y = np.zeros((2, 128), np.float32)
    y[:, : near.size] = near[:128]
    y[1] = -y[1]
    return [torch.from_numpy(x), torch.from_numpy(y)]


def random_inputs() -> list[torch.Tensor]:
    rng = np.random.default_rng(5)
    shapes = [(1, 7168), (37, 4096), (64, 300), (512, 7168), (3, 129)]
    out = []
    for t, h in shapes:
        x = rng.standard_t(3.0, (t, h)) * 10.0 ** rng.uniform(-6, 3, (t, 1))
        out.append(torch.from_numpy(x.astype(np.float32)))
    # LogFMT values on and beside every rounding cut (where any inexact ln picks wrong), and
    # just inside the fast path's tolerance; FP8 quotients on and beside every cut
    cuts = [ref_logfmt.cut_input(bits, tokens=64) for bits in (8, 10, 16)]
    if triton_kernels.available():  # the Triton encoder's fast path and its tolerance
        from collectives.codecs.triton_logfmt import LG2_ERR

        cuts += [ref_logfmt.tolerance_input(bits, LG2_ERR.value, zero, tokens=64)
                 for bits in (8, 10) for zero in (False, True)]  # fmt: skip
    cuts += [ref.fp8_cut_input(codecs.parse(n), tokens=64) for n in ("fp8_e4m3", "fp8_e5m2")]
    return out + [torch.from_numpy(x) for x in cuts]


def check_identity(inputs: list[torch.Tensor]) -> list[dict]:  # type: ignore[type-arg]
    inputs = inputs + [t.to(torch.bfloat16) for t in inputs[:2]]
    rows = []
    for name in CHECK_CODECS:
        ref = codecs.get(name, impl="numpy")
        wires = [ref.encode(x) for x in inputs]
        wants = [
            ref.decode(w, *x.shape).view(torch.int32) for w, x in zip(wires, inputs, strict=True)
        ]
        for impl in impls():
            gpu = codecs.get(name, impl=impl)
            bad_wire = bad_dec = 0
            for x, wire, want in zip(inputs, wires, wants, strict=True):
                for _ in range(2):  # the second call takes the compiled-kernel cache's path
                    got = gpu.encode(x.cuda()).cpu()
                    bad = int((got != wire).sum()) if got.shape == wire.shape else wire.numel()
                    bad_wire += bad
                dec = gpu.decode(wire.cuda(), *x.shape).cpu().view(torch.int32)
                bad_dec += int((dec != want).sum())
            rows.append({"codec": name, "impl": impl, "wrong_wire_bytes": bad_wire,
                         "wrong_decoded": bad_dec})  # fmt: skip
            print_identity(rows[-1])
        if "triton" in impls() and name in VARIANT_CHECKED:
            for variant in LOGFMT_VARIANTS:
                encode = variant_encoder(name, variant)
                bad = sum(int((encode(x.cuda()).cpu() != wire).sum())
                          for x, wire in zip(inputs, wires, strict=True))  # fmt: skip
                rows.append({"codec": name, "impl": f"triton-{variant}", "wrong_wire_bytes": bad,
                             "wrong_decoded": 0})  # fmt: skip
                print_identity(rows[-1])
    return rows


def timed(fn, repeats: int, loop: int = 1, graph: bool = False) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of fn() over CUDA events (after two warm-up calls); with loop > 1 a
    sample is `loop` back-to-back calls (divided by loop), so the host's launch cost
    overlaps the previous call's kernel instead of adding to it; with graph, those calls
    are captured once and replayed from a CUDA graph (no host work per call at all). The
    GPU is kept busy for 0.2 s between the warm-up (which may compile for seconds, letting
    the clocks drop) and the samples."""
    fn()
    fn()
    throughput.warm_up_clocks(0.2)

    def many() -> None:
        for _ in range(loop):
            fn()

    run = many
    if graph:
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):
            many()
        run = cuda_graph.replay
        throughput.warm_up_clocks(0.2)
    return statistics.median(throughput.timed(run, torch.device("cuda"), repeats)) / loop


def encoders(name: str, impl: str, ab: bool,
             ab_shapes: tuple[triton_kernels.KernelConfig, ...] = ()) -> list[tuple[str, object]]:  # type: ignore[type-arg]  # fmt: skip
    """(label, encode function) to time: the codec's, and with `ab` the other Triton encoders
    (same bytes): 'triton-prev' (encode(fast=False)); for LogFMT 'triton-fast' (near-cut
    chunks redone in place) and 'triton-defer' (near-cut groups recoded by a second kernel)
    at the default launch shape and at each of `ab_shapes` ('triton-defer@bt64s1w4p1g2')."""
    codec = codecs.get(name, impl=impl)
    out: list[tuple[str, object]] = [(impl, codec.encode)]
    spec = codecs.parse(name)
    if ab and impl == "triton" and spec.kind in triton_kernels.KERNEL_KINDS:
        out.append(("triton-prev", variant_encoder(name, "prev")))
    if ab and impl == "triton" and spec.kind == "logfmt":
        for config in (None, *ab_shapes):
            at = f"@{config.label}" if config else ""
            out += [(f"triton-{v}{at}", variant_encoder(name, v, config))
                    for v in LOGFMT_VARIANTS]  # fmt: skip
    return out


def bandwidth(args: argparse.Namespace, tokens: int, hidden: int) -> list[dict]:  # type: ignore[type-arg]
    dtype = getattr(torch, args.dtype)
    x = (torch.randn(tokens, hidden, device="cuda") * 0.5).to(dtype)
    in_bytes = x.numel() * x.element_size()
    dst = torch.empty_like(x)
    copy_s = timed(lambda: dst.copy_(x), args.repeats, args.loop, args.graph)
    copy_gbps = 2 * in_bytes / copy_s / 1e9
    bf16_nic_s = tokens * hidden * 2 / (NIC_GBPS * 1e9)
    rows = []
    decode_s: dict[tuple[str, str], float] = {}  # every variant's wire decodes alike
    for name in args.codecs.split(","):
        for impl, encode in (
            e for i in impls(args.bench_impls) for e in encoders(name, i, args.ab, args.ab_shapes)
        ):
            codec = codecs.get(name, impl=impl.split("-")[0])
            wire = codec.encode(x)
            enc_s = timed(lambda f=encode: f(x), args.repeats, args.loop, args.graph)  # type: ignore[operator]
            key = (name, impl.split("-")[0])
            if key not in decode_s:
                decode_s[key] = timed(lambda c=codec, w=wire: c.decode(w, tokens, hidden),
                                      args.repeats, args.loop, args.graph)  # fmt: skip
            dec_s = decode_s[key]
            enc_gbps = (in_bytes + wire.numel()) / enc_s / 1e9
            dec_gbps = (wire.numel() + x.numel() * 4) / dec_s / 1e9
            rows.append({
                "codec": name, "impl": impl, "tokens": tokens, "hidden": hidden,
                "input_bytes": in_bytes, "wire_bytes": wire.numel(), "copy_s": copy_s,
                "copy_rw_gbps": copy_gbps, "encode_s": enc_s, "decode_s": dec_s,
                "encode_rw_gbps": enc_gbps, "decode_rw_gbps": dec_gbps,
                "encode_vs_copy": enc_gbps / copy_gbps, "decode_vs_copy": dec_gbps / copy_gbps,
                "target_vs_copy": TARGETS.get(name),
                "codec_over_bf16_nic_transfer": (enc_s + dec_s) / bf16_nic_s,
            })  # fmt: skip
            print_row(rows[-1])
    return rows


def host_costs(tokens: int, hidden: int) -> dict[str, float]:
    """Host microseconds per call (1000 calls, no synchronisation inside) of a device copy,
    an empty wire allocation, Triton's encode of FP8 and LogFMT-8, and the same through a
    Codec object: where a single encode call's time beyond its kernel goes."""
    import time

    x = torch.randn(tokens, hidden, device="cuda").to(torch.bfloat16)
    dst = torch.empty_like(x)
    fp8, lf8 = codecs.parse("fp8_e4m3"), codecs.parse("logfmt8")
    steps = {
        "copy_": lambda: dst.copy_(x),
        "torch.empty(wire)": lambda: torch.empty(x.numel() * 2, dtype=torch.uint8, device="cuda"),
        "triton_kernels.encode fp8_e4m3": lambda: triton_kernels.encode(fp8, x),
        "triton_kernels.encode logfmt8": lambda: triton_kernels.encode(lf8, x),
        "Codec.encode fp8_e4m3": lambda: codecs.get("fp8_e4m3", impl="triton").encode(x),
    }
    out = {}
    for label, fn in steps.items():
        fn()
        torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(1000):
            fn()
        out[label] = (time.perf_counter() - began) * 1e3
        torch.cuda.synchronize()
        print(f"host {label:32s} {out[label]:7.1f} us per call", flush=True)
    return out


def print_identity(r: dict) -> None:  # type: ignore[type-arg]
    ok = "ok" if r["wrong_wire_bytes"] == r["wrong_decoded"] == 0 else "MISMATCH"
    print(f"identity {r['codec']:16s} {r['impl']:31s} wire {r['wrong_wire_bytes']:6d} "
          f"decoded {r['wrong_decoded']:6d}  {ok}", flush=True)  # fmt: skip


def print_header() -> None:
    print(f"{'codec':16s} {'impl':31s} {'tokens':>6s} {'hidden':>6s} {'copy GB/s':>9s} "
          f"{'enc GB/s':>8s} {'enc/copy':>8s} {'dec GB/s':>8s} {'dec/copy':>8s} "
          f"{'enc us':>8s} {'dec us':>8s} {'(e+d)/NIC':>9s} target", flush=True)  # fmt: skip


def print_row(r: dict) -> None:  # type: ignore[type-arg]
    target = r["target_vs_copy"]
    verdict = ""
    if target is not None:
        met = min(r["encode_vs_copy"], r["decode_vs_copy"]) >= target
        verdict = f">={target:.0%} {'met' if met else 'MISSED'}"
    print(f"{r['codec']:16s} {r['impl']:31s} {r['tokens']:6d} {r['hidden']:6d} "
          f"{r['copy_rw_gbps']:9.0f} {r['encode_rw_gbps']:8.0f} {r['encode_vs_copy']:8.2f} "
          f"{r['decode_rw_gbps']:8.0f} {r['decode_vs_copy']:8.2f} {r['encode_s'] * 1e6:8.1f} "
          f"{r['decode_s'] * 1e6:8.1f} {r['codec_over_bf16_nic_transfer']:9.3f} "
          f"{verdict}", flush=True)  # fmt: skip


def hardware_checks() -> dict[str, float]:
    """triton_hwcheck.run(), printed; {} without Triton."""
    if not triton_kernels.available():
        return {}
    from collectives.codecs import triton_hwcheck

    facts = triton_hwcheck.run()
    for key, value in facts.items():
        print(f"hardware {key:26s} {value:.6g}", flush=True)
    return facts


def profile(args: argparse.Namespace) -> int:
    """Run one encoder --profile-calls times on a fresh bf16/fp32 input of the first --sizes
    size (the first call compiles); nothing is checked or timed: ncu picks the launches."""
    name, variant, config = args.profiled
    tokens, hidden = (int(v) for v in args.sizes.split(",")[0].split("x"))
    encode = variant_encoder(name, variant, config)
    shape = config.label if config else "default shape"
    print(f"profile: {name} {variant} ({shape}) {tokens}x{hidden} {args.dtype}, "
          f"{args.profile_calls} calls", flush=True)  # fmt: skip
    if args.dry_run:
        return 0
    x = (torch.randn(tokens, hidden, device="cuda") * 0.5).to(getattr(torch, args.dtype))
    for _ in range(args.profile_calls):
        encode(x)
    torch.cuda.synchronize()
    return 0


def main() -> int:
    args = parse_args()
    if args.profiled is not None and args.dry_run:
        return profile(args)
    if args.dry_run:  # the encoders --ab would time, by label
        for name in args.codecs.split(","):
            labels = [label for label, _ in encoders(name, "triton", args.ab, args.ab_shapes)]
            print(f"{name}: {' '.join(labels)}")
        return 0
    if not torch.cuda.is_available():
        print("codec_gpu.py: no CUDA device visible", file=sys.stderr)
        return 2
    if args.profiled is not None:
        return profile(args)
    hw = {} if args.skip_check else hardware_checks()
    host = host_costs(4096, 7168) if args.host_costs else {}
    check = [] if args.skip_check else check_identity(random_inputs() + special_inputs())
    throughput.warm_up_clocks()
    print_header()
    bench = []
    for size in args.sizes.split(","):
        tokens, hidden = (int(v) for v in size.split("x"))
        bench += bandwidth(args, tokens, hidden)
    facts = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
             "cuda": torch.version.cuda, "python": platform.python_version(),
             "triton": getattr(triton_kernels.triton, "__version__", None), "dtype": args.dtype,
             "nic_gbps_projected": NIC_GBPS}  # fmt: skip
    facts.update(loop=args.loop, graph=args.graph)
    args.out.write_text(json.dumps({"facts": facts, "hardware": hw, "host_us": host,
                                    "identity": check, "bandwidth": bench}, indent=1))  # fmt: skip
    mismatches = sum(r["wrong_wire_bytes"] + r["wrong_decoded"] for r in check)
    mismatches += int(hw.get("fp8_e4m3_cvt_mismatches", 0) + hw.get("fp8_e5m2_cvt_mismatches", 0))
    if hw.get("lg2_max_error", 0.0) >= hw.get("lg2_error_bound", 1.0):
        print("hardware: lg2.approx errs beyond the bound the LogFMT fast path assumes")
        mismatches += 1
    print(f"wrote {args.out}; identity mismatches: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
