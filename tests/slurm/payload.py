"""A small real distributed program standing in for the runner in Slurm tests.

It takes the runner's command line (OP --backend B ... -o FILE), runs a real all-reduce over
gloo (torch.distributed, TCP rendezvous at MASTER_ADDR) or MPI (mpi4py under srun --mpi=pmi2),
and rank 0 writes an epbench results file whose metadata holds the SLURM_* variables.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid

from results.schema import Footer, Header, Record


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("op")
    parser.add_argument("--backend", required=True)
    parser.add_argument("-o", "--output", required=True)
    args, _ = parser.parse_known_args()
    rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    if args.backend == "mpi":
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        assert (comm.rank, comm.size) == (rank, world)
        t0 = time.perf_counter()
        total = comm.allreduce(rank)
        hosts = comm.allgather(os.environ["SLURMD_NODENAME"])
    else:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world)
        t0 = time.perf_counter()
        buf = torch.tensor([rank])
        dist.all_reduce(buf)
        total = int(buf.item())
        hosts = [None] * world
        dist.all_gather_object(hosts, os.environ["SLURMD_NODENAME"])
        dist.destroy_process_group()
    elapsed_s = time.perf_counter() - t0
    if total != world * (world - 1) // 2:
        return 3
    if rank == 0:
        write(args, world, hosts, elapsed_s)
    return 0


def write(args, world, hosts, elapsed_s) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("SLURM")}
    header = Header(
        run_id=uuid.uuid4().hex,
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metadata={"argv": sys.argv, "env": env, "hosts": hosts, "host": socket.gethostname()},
        config={"op": args.op, "backend": args.backend},
    )
    rec = Record(
        op=args.op,
        backend=args.backend,
        dtype="int32",
        mode="per_iter",
        size_bytes=4,
        count=1,
        num_ranks=world,
        times_s=[elapsed_s],
        bus_factor=1.0,
    )
    with open(args.output, "w") as fh:
        fh.write(
            header.to_json()
            + "\n"
            + rec.to_json()
            + "\n"
            + Footer(status="ok", num_records=1).to_json()
            + "\n"
        )


if __name__ == "__main__":
    raise SystemExit(main())
