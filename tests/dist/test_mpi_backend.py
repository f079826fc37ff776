"""Every `Comm` method of the `mpi` backend, under `mpiexec -n 1..4`.

Run as a script under mpiexec, this file checks each method with numpy, torch CPU and
fake device buffers (host memory behind `__cuda_array_interface__`, both CUDA-aware and
staged), with and without persistent requests and the aligned arena; expectations are computed
from rank and world, so the same file passes at any number of ranks. Under pytest it launches
itself with mpiexec.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from collectives.backends import mpi_setup
from tests.dist import test_mpi_checks as checks

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = [
    {"buffer": "numpy"},
    {"buffer": "numpy", "persistent": True},
    {"buffer": "numpy", "alignment_bytes": 0},
    {"buffer": "torch"},
    {"buffer": "torch", "persistent": True},
    {"buffer": "fake-device", "cuda_aware": "yes"},
    {"buffer": "fake-device", "cuda_aware": "no", "persistent": True},
    {"buffer": "fake-device", "cuda_aware": "auto"},
]


# ---- run on every rank ------------------------------------------------------------------------
MPI_FACTS = (
    "mpi_library",
    "mpi4py_version",
    "thread_level_provided",
    "buffer",
    "alignment_bytes",
    "persistent",
    "cuda_mode",
)


def check_mpi_specifics(comm) -> None:
    """What the mpi backend refuses."""
    with pytest.raises(ValueError, match="float8"):
        comm.all_reduce(comm.empty(4, "float8_e4m3"), comm.empty(4, "float8_e4m3"))
    with pytest.raises(ValueError, match="avg"):
        comm.all_reduce(comm.empty(4, "int8"), comm.empty(4, "int8"), "avg")
    with pytest.raises(ValueError, match="thread_level"):
        mpi_setup.Options(thread_level="many")


def check_native_replay(comm, options: dict) -> None:
    """`capture` replays recorded MPI calls from compiled code: two out-of-place all-reduces
    per iteration (a -> b -> a) grow `a` by world**2 per iteration, so the count shows; calls
    that need staging or persistent requests are declined (None)."""
    import numpy as np

    a = comm.from_numpy(np.full(64, comm.rank + 1.0), "float32")
    b = comm.empty(64, "float32")
    replay = comm.capture(lambda: (comm.all_reduce(b, a), comm.all_reduce(a, b)), 3)
    plain = options["buffer"] != "fake-device" and not options.get("persistent")
    assert (replay is not None) == plain, f"capture {replay} with {options}"
    if replay is None:
        return
    start = sum(r + 1.0 for r in range(comm.world)) * comm.world  # after the captured run
    np.testing.assert_array_equal(comm.to_numpy(a), np.full(64, start))
    replay()
    np.testing.assert_array_equal(comm.to_numpy(a), np.full(64, start * comm.world**6))
    pair = comm.capture(lambda: comm.all_to_all(b, a), 2)
    assert pair is not None
    b_host = comm.to_numpy(b)
    b_host[:] = 0
    comm.all_reduce(b, comm.from_numpy(b_host, "float32"))  # b = 0
    pair()
    moved = 64 // comm.world * comm.world  # equal blocks; a remainder stays put
    np.testing.assert_array_equal(comm.to_numpy(b)[:moved], comm.to_numpy(a)[:moved])
    bf16 = comm.from_numpy(np.ones(8), "bfloat16")
    assert comm.capture(lambda: comm.all_reduce(bf16, bf16), 2) is None  # in place: declined
    # alltoallv with uneven counts (counts and displacements travel as C int arrays)
    sc = [(comm.rank + p) % 3 + 1 for p in range(comm.world)]  # peer p sends me the same
    inp = comm.from_numpy(np.arange(sum(sc)) + 100.0 * comm.rank, "float32")
    out = comm.empty(sum(sc), "float32")
    comm.all_to_all(out, inp, sc, sc)
    want = comm.to_numpy(out)
    varied = comm.capture(lambda: comm.all_to_all(out, inp, sc, sc), 3)
    assert varied is not None
    out[...] = 0  # numpy array or torch CPU tensor (the buffers replay accepts)
    varied()
    np.testing.assert_array_equal(comm.to_numpy(out), want)


def run_config(launch_kwargs: dict, options: dict) -> str:
    from collectives.backends import mpi
    from collectives.backends.base import LaunchInfo

    comm = mpi.create(LaunchInfo(**launch_kwargs, options=options))
    assert (comm.rank, comm.world) == (launch_kwargs["rank"], launch_kwargs["world"])
    assert not checks.check_every_method(comm, MPI_FACTS), "in-place calls are not replayed"
    check_native_replay(comm, options)
    check_mpi_specifics(comm)
    mode = comm.facts()["cuda_mode"]
    comm.close()
    return mode


def blocked_call_lets_threads_run(launch_kwargs: dict) -> None:
    """Rank 0 waits for a message rank 1 never sends; a watchdog-like thread must still run
    (mpi4py releases the GIL inside MPI) and end the process."""
    import threading

    from collectives.backends import mpi
    from collectives.backends.base import LaunchInfo

    comm = mpi.create(LaunchInfo(**launch_kwargs, options={}))
    buf = comm.empty(8, "float32")
    if comm.rank == 0:

        def fire() -> None:
            print("watchdog thread ran while rank 0 was blocked in MPI", flush=True)
            os._exit(124)

        threading.Timer(1.0, fire).start()
        comm.recv(buf, 1)
    else:
        time.sleep(60)


def main() -> None:
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    world = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    per_node = 2 if world % 2 == 0 else 1
    launch = {
        "rank": rank,
        "world": world,
        "local_rank": rank % per_node,
        "local_world": per_node,
        "node": rank // per_node,
        "num_nodes": world // per_node,
        "host_local_rank": rank,
        "launcher": "mpi",
    }
    level = sys.argv[1] if len(sys.argv) > 1 else "single"
    if level == "hang":
        return blocked_call_lets_threads_run(launch)
    for options in CONFIGS:
        mode = run_config(launch, {**options, "thread_level": level})
        if rank == 0:
            print(f"ok {options} cuda_mode={mode}", flush=True)
    from mpi4py import MPI

    assert (
        MPI.Query_thread() == {"single": MPI.THREAD_SINGLE, "multiple": MPI.THREAD_MULTIPLE}[level]
    )
    if rank == 0:
        print(f"all checks passed at world {world}", flush=True)


# ---- the pytest side ---------------------------------------------------------------------------
def _mpiexec() -> str:
    found = shutil.which("mpiexec") or shutil.which(
        "mpiexec", path=str(pathlib.Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("mpiexec not found")
    return found


def _launch(num_ranks: int, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [_mpiexec(), "-n", str(num_ranks), sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("num_ranks", [1, 2, 3, 4])
def test_every_method_at_world(num_ranks: int) -> None:
    proc = _launch(num_ranks)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"all checks passed at world {num_ranks}" in proc.stdout
    assert "cuda_mode=direct" in proc.stdout and "cuda_mode=host staging" in proc.stdout


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_blocked_call_releases_the_gil() -> None:
    start = time.monotonic()
    proc = _launch(2, "hang", timeout_s=60)
    assert proc.returncode != 0
    assert "watchdog thread ran while rank 0 was blocked in MPI" in proc.stdout
    assert time.monotonic() - start < 45  # far less than rank 1's 60 s sleep


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_thread_multiple_is_honoured() -> None:
    proc = _launch(2, "multiple")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all checks passed at world 2" in proc.stdout


if __name__ == "__main__":
    main()
