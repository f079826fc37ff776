"""One benchmark process from start to end: communicator, preflight, results file, teardown.

`Session` creates the backend's communicator from the detected launch, derives the real
rank -> node layout from what every rank reports (bench.launch.place_comm), refuses to go
on when ranks disagree on the configuration (a hash of it is all-gathered before anything
is timed), writes the header, and owns the watchdog whose firing closes the results file
cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from bench import launch as launch_mod
from bench import metadata
from bench.errors import UsageError
from bench.output import ResultWriter
from bench.watchdog import Watchdog
from collectives import backends, nodemap
from collectives.backends.base import BackendUnavailable, Comm, CommError, LaunchInfo
from collectives.nodemap import NodeMap
from results.schema import Header


def default_backend() -> str:
    """nccl (CuPy) when a GPU and CuPy are there, torch-nccl with a GPU only, else gloo."""
    gpus = pathlib.Path("/proc/driver/nvidia/gpus")
    if not (gpus.is_dir() and any(gpus.iterdir())):
        return "gloo"  # no NVIDIA driver: skip importing torch just to learn that
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        return "gloo"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "torch-nccl"
    return "nccl"


def config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(configs: list[Mapping[str, Any]]) -> str:
    base = configs[0]
    for rank, other in enumerate(configs[1:], start=1):
        keys = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
        if keys:
            key = keys[0]
            return (
                f"rank 0 has {key}={base.get(key)!r} but rank {rank} has {key}={other.get(key)!r}"
            )
    return "configurations differ"


class Session:
    """Holds the communicator, watchdog and writer of one process."""

    def __init__(
        self,
        *,
        backend: str,
        timeout_s: float,
        gpus_per_node: int | None,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.detected = launch_mod.detect(self.env)
        self.virtual_nodes = gpus_per_node is not None
        self.launch: LaunchInfo = launch_mod.launch_info(
            self.detected,
            gpus_per_node=gpus_per_node,
            timeout_s=timeout_s * 1.5 + 5,
            options=options,
            rendezvous=backend != "mpi",  # MPI starts from its own launcher's wire-up
        )
        self.backend = backend
        self.timeout_s = timeout_s
        self.writer: ResultWriter | None = None
        self.dog = Watchdog(timeout_s, self.detected.rank, on_fire=self._on_timeout)
        self.comm: Comm = self._start()
        try:
            with self.dog.guard("gathering the node layout"):
                self.nodes = self._place(gpus_per_node)
        except UsageError:
            self.dog.close()
            with contextlib.suppress(Exception):
                self.comm.close()
            raise

    def _start(self) -> Comm:
        """The backend's communicator; a UsageError (watchdog closed) when it cannot start."""
        try:
            # start-up imports libraries and waits for late ranks: allow it more time
            with self.dog.guard(f"starting backend {self.backend}", max(self.timeout_s, 120.0)):
                return backends.create(self.backend, self.launch)
        except BackendUnavailable as exc:
            self.dog.close()
            raise UsageError(str(exc), exit_code=3) from None
        except CommError as exc:
            self.dog.close()
            raise UsageError(str(exc), exit_code=1) from None
        except ValueError as exc:  # a backend option the user gave that it cannot take
            self.dog.close()
            raise UsageError(str(exc)) from None

    def _place(self, gpus_per_node: int | None) -> NodeMap:
        """The real rank -> node map, applied to the communicator (fake: ranks in blocks)."""
        if self.backend == "fake":  # one process poses as every rank: nothing to gather
            return nodemap.block(self.launch.world, self.launch.local_world)
        nodes = launch_mod.place_comm(self.comm, self.env, self.detected, gpus_per_node)
        self.launch = dataclasses.replace(
            self.launch,
            node=self.comm.node,
            local_rank=self.comm.local_rank,
            local_world=self.comm.local_world,
            num_nodes=self.comm.num_nodes,
        )
        return nodes

    @property
    def rank(self) -> int:
        return self.comm.rank

    def _on_timeout(self, message: str) -> None:
        if self.writer is not None:
            self.writer.close(status="error", message=message)
            message += f" (results so far: {self.writer.path})"
        print(f"epbench: error: {message}", file=sys.stderr, flush=True)

    def preflight(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Gather host facts, confirm nodes, refuse mismatched configs. Returns rank facts."""
        with self.dog.guard("preflight (config hash and host facts)"):
            mine = config_hash(config)
            hashes = self.comm.gather_object(mine)
            if len(set(hashes)) > 1:
                configs = self.comm.gather_object(dict(config))
                raise UsageError(
                    "ranks disagree on the configuration: "
                    f"{_differences(configs)}; launch every rank with the same command line"
                )
            facts = self.comm.gather_object(metadata.local_facts())
        return list(facts)

    def rank_map(self, rank_facts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The rank -> node map as run: node and local rank (virtual under
        --gpus-per-node), plus each rank's host when the facts are given."""
        rows: list[dict[str, Any]] = [dict(row) for row in self.nodes.records()]
        for row, facts in zip(rows, rank_facts or [], strict=False):
            row["host"] = facts.get("hostname")
        return rows

    def node_layout(self) -> dict[str, Any]:
        """Summary of the rank -> node map for the header (block, cyclic or other)."""
        return {
            "kind": self.nodes.kind,
            "num_nodes": self.nodes.num_nodes,
            "ranks_per_node": self.nodes.local_world,
            "virtual": self.virtual_nodes,
            "source": self.detected.launcher,
        }

    def open_results(
        self,
        path: pathlib.Path,
        *,
        config: Mapping[str, Any],
        rank_facts: list[dict[str, Any]],
        argv: list[str],
        overwrite: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> ResultWriter | None:
        """Rank 0 opens the file and writes the header; other ranks get None."""
        if self.rank != 0:
            return None
        self.writer = ResultWriter(path, overwrite=overwrite)
        meta = metadata.run_metadata(
            argv=argv,
            launcher=self.detected.launcher,
            backend_facts=self.comm.facts(),
            rank_facts=rank_facts,
            rank_map=self.rank_map(rank_facts),
            extra={"node_layout": self.node_layout(), **dict(extra or {})},
            env=self.env,
        )
        header = Header(
            run_id=uuid.uuid4().hex,
            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(),
            metadata=meta,
            config=dict(config),
        )
        self.writer.header(header)
        return self.writer

    def close(self, status: str = "ok", message: str = "") -> None:
        if self.writer is not None:
            self.writer.close(status=status, message=message)
        self.dog.close()
        with contextlib.suppress(Exception):
            self.comm.close()
