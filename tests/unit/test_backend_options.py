"""Pure rules of the mpi and nccl backends: options, reductions, NCCL type codes (no MPI, no
CuPy: these must pass on a machine with neither)."""

from __future__ import annotations

import sys

import pytest

from collectives.backends import mpi_setup, nccl_cupy, nccl_types
from collectives.backends.base import LaunchInfo


def _launch(**options: object) -> LaunchInfo:
    return LaunchInfo(
        rank=0,
        world=1,
        local_rank=0,
        local_world=1,
        node=0,
        num_nodes=1,
        host_local_rank=0,
        launcher="single",
        options=dict(options),
    )


def test_mpi_options_defaults_and_parsing() -> None:
    opts = mpi_setup.Options.from_launch(_launch())
    assert (opts.thread_level, opts.buffer, opts.alignment_bytes) == ("single", "numpy", 4096)
    assert not opts.persistent and opts.cuda_aware == "auto"
    assert mpi_setup.Options.from_launch(_launch(buffer="auto")).buffer == "numpy"
    opts = mpi_setup.Options.from_launch(_launch(persistent="yes", alignment_bytes="0"))
    assert opts.persistent and opts.alignment_bytes == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thread_level": "many"}, "thread_level='many'"),
        ({"buffer": "jax"}, "buffer='jax'"),
        ({"cuda_aware": "maybe"}, "cuda_aware='maybe'"),
        ({"alignment_bytes": 1000}, "alignment_bytes=1000"),
        ({"persistent": "sometimes"}, "persistent='sometimes'"),
        ({"threads": 4}, r"unknown mpi options \['threads'\]"),
    ],
)
def test_mpi_options_refuse_bad_values(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mpi_setup.Options.from_launch(_launch(**options))


def test_mpi_options_default_to_torch_cuda_buffers_on_gpu() -> None:
    launch = LaunchInfo(
        rank=0, world=1, local_rank=0, local_world=1, node=0, num_nodes=1,
        host_local_rank=0, launcher="mpi", device="cuda",
    )  # fmt: skip
    assert mpi_setup.Options.from_launch(launch).buffer == "torch"


def test_reduction_rules() -> None:
    has_all = lambda name: True  # noqa: E731
    has_no_half = lambda name: name not in ("FLOAT16_T", "BFLOAT16_T")  # noqa: E731
    assert mpi_setup.plan_reduction("float32", "sum", has_all) == ("FLOAT", "SUM", False)
    assert mpi_setup.plan_reduction("bf16", "max", has_no_half) == ("UINT16_T", "MAX", True)
    assert mpi_setup.plan_reduction("float16", "avg", has_all) == ("FLOAT16_T", "SUM", False)
    assert mpi_setup.plan_reduction("int8", "min", has_all) == ("INT8_T", "MIN", False)
    with pytest.raises(ValueError, match="cannot reduce float8_e4m3"):
        mpi_setup.plan_reduction("fp8", "sum", has_all)
    with pytest.raises(ValueError, match="avg is defined here for floating types only, not int8"):
        mpi_setup.plan_reduction("int8", "avg", has_all)
    with pytest.raises(ValueError, match="unknown reduction op 'xor'"):
        mpi_setup.plan_reduction("float32", "xor", has_all)


def test_nccl_type_codes_follow_cupy_then_nccl_h() -> None:
    assert nccl_types.nccl_type("bfloat16", {"NCCL_BFLOAT16": 9}, 21_000) == 9
    assert nccl_types.nccl_type("float8_e4m3", {}, 22_809) == 10
    assert nccl_types.nccl_type("float8_e5m2", {}, 22_400) == 11
    assert nccl_types.nccl_type("float8_e4m3", {"NCCL_FLOAT8E4M3": 10}, 21_000) == 10
    with pytest.raises(ValueError, match=r"NCCL 2.19.3 cannot reduce float8_e4m3 \(needs 2.24.0\)"):
        nccl_types.nccl_type("fp8", {}, 21_903)
    assert nccl_types.nccl_type("float32", {}, 20_000) == 7


def test_nccl_moves_data_in_its_own_type_like_nccl_tests() -> None:
    assert nccl_types.move_type("bf16") == (9, 2)
    assert nccl_types.move_type("float32") == (7, 4)
    assert nccl_types.move_type("int8") == (0, 1)
    assert nccl_types.move_type("fp8") == (1, 1)  # as uint8: every NCCL can move it


def test_nccl_ops_and_versions() -> None:
    assert [nccl_types.nccl_op(op, 22_809) for op in ("sum", "prod", "max", "min", "avg")] == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"op avg needs NCCL 2\.10\.0"):
        nccl_types.nccl_op("avg", 20_900)
    with pytest.raises(ValueError, match="unknown reduction op 'xor'"):
        nccl_types.nccl_op("xor", 22_809)
    assert nccl_types.format_version(22_809) == "2.28.9"


def test_nccl_backend_without_cupy_says_what_to_install() -> None:
    if "cupy" in sys.modules or _importable("cupy"):
        pytest.skip("CuPy is installed here")
    with pytest.raises(nccl_cupy.BackendUnavailable, match="needs CuPy"):
        nccl_cupy.create(_launch())


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
