"""nccl_native finds the NCCL library this process mapped, and its compiled loop makes the
recorded calls exactly as recorded: checked against C-callable stand-ins for NCCL's functions
(the real library runs in the GPU tier: bench/gpu/nccl_backend_gpu.py)."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from collectives.backends import nccl_native
from collectives.backends.base import CommError
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


def test_nothing_is_bound_without_a_mapped_library() -> None:
    assert loaded_library("libnccl") is None  # this CPU process maps no libnccl
    assert nccl_native.load(22809) is None


VOID = ctypes.c_void_p


class FakeNccl:
    """C-callable stand-ins for the NCCL functions, logging every call; `fail` maps a
    function name to the status it returns; `absent` names functions the library lacks."""

    def __init__(self, fail: dict[str, int] | None = None, absent: tuple[str, ...] = ()) -> None:
        self.log: list[tuple[Any, ...]] = []
        self._fail = fail or {}
        self._fns = {name: proto(self._fake(name)) for name, proto in nccl_native.FUNCTIONS}
        self.lib = nccl_native.Library(
            lambda name: None if name in absent else ctypes.cast(self._fns[name], VOID).value
        )

    def _fake(self, name: str) -> Any:
        def fn(*args: int) -> int:
            self.log.append((name, *args))
            return self._fail.get(name, 0)

        return fn


SEND = nccl_native.NativeCall(nccl_native.SEND, (0x1000, 5, 9, 1, 0xC0, 0x57))
RECV = nccl_native.NativeCall(nccl_native.RECV, (0x2000, 5, 9, 1, 0xC0, 0x57))
START = nccl_native.NativeCall(nccl_native.GROUP_START)
END = nccl_native.NativeCall(nccl_native.GROUP_END)
REDUCE = nccl_native.NativeCall(nccl_native.ALL_REDUCE, (0x10, 0x20, 2**40, 7, 4, 0xC0, 0x57))


def test_the_compiled_loop_makes_the_recorded_calls_in_order_n_times() -> None:
    fake = FakeNccl(absent=("ncclAlltoAll",))
    assert not fake.lib.has(nccl_native.ALL_TO_ALL) and fake.lib.has(nccl_native.SEND)
    nccl_native.repeater(fake.lib, [START, SEND, RECV, END, REDUCE], 3, rank=0)()
    one = [("ncclGroupStart",), ("ncclSend", *SEND.args), ("ncclRecv", *RECV.args),
           ("ncclGroupEnd",), ("ncclAllReduce", *REDUCE.args)]  # fmt: skip
    assert fake.log == one * 3  # 64-bit counts and 32-bit enums arrive intact


def test_a_failing_call_stops_the_loop_closes_the_group_and_names_the_status() -> None:
    fake = FakeNccl(fail={"ncclRecv": 3})
    issue = nccl_native.repeater(fake.lib, [START, SEND, RECV, END], 5, rank=1)
    with pytest.raises(CommError, match="rank 1: ncclResult_t 3"):
        issue()
    assert [c[0] for c in fake.log] == ["ncclGroupStart", "ncclSend", "ncclRecv", "ncclGroupEnd"]


def test_bad_recordings_are_refused() -> None:
    lib = FakeNccl().lib
    with pytest.raises(ValueError, match="bad arguments"):
        nccl_native.pack([nccl_native.NativeCall(nccl_native.SEND, (-1, 5, 9, 1, 0, 0))])
    with pytest.raises(ValueError, match="at least one"):
        nccl_native.repeater(lib, [], 3, rank=0)


def test_the_prefix_matches_the_library_name_only() -> None:
    maps = (
        "7f00-7f01 r-xp 0 08:01 1 /opt/lib/libmpich.so.12\n"
        "7f02-7f03 r-xp 0 08:01 2 /opt/lib/libmpi_cxx.so.40\n"
        "7f04-7f05 r-xp 0 08:01 3 /usr/lib/x86_64-linux-gnu/libmpi.so.40\n"
    )
    assert loaded_library("libmpi", maps) == "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
    assert loaded_library("libmpi", maps.splitlines()[0]) is None
