"""nccl_native finds the NCCL library this process mapped and binds ncclAlltoAll only when
the library is new enough (the call itself runs in the GPU tier: bench/gpu)."""

from __future__ import annotations

from collectives.backends import nccl_native
from collectives.backends.calls import loaded_library

MAPS = """\
7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6
7f02-7f03 r-xp 00000000 08:01 2 /venv/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2
7f04-7f05 rw-p 00000000 00:00 0
"""


def test_the_mapped_nccl_library_is_found_by_name() -> None:
    path = loaded_library("libnccl", MAPS)
    assert path == "/venv/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2"
    assert loaded_library("libnccl", MAPS.replace("libnccl", "libfoo")) is None


def test_no_alltoall_binding_without_a_new_enough_library() -> None:
    # this CPU process maps no libnccl, and 2.27 predates ncclAlltoAll
    assert nccl_native.alltoall_function(22709) is None
    assert nccl_native.alltoall_function(22809) is None or loaded_library("libnccl")


def test_the_prefix_matches_the_library_name_only() -> None:
    maps = (
        "7f00-7f01 r-xp 0 08:01 1 /opt/lib/libmpich.so.12\n"
        "7f02-7f03 r-xp 0 08:01 2 /opt/lib/libmpi_cxx.so.40\n"
        "7f04-7f05 r-xp 0 08:01 3 /usr/lib/x86_64-linux-gnu/libmpi.so.40\n"
    )
    assert loaded_library("libmpi", maps) == "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
    assert loaded_library("libmpi", maps.splitlines()[0]) is None
