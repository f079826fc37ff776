"""Sweep specs (TOML) and the randomized block plan that `epbench slurm gen` turns into jobs.

A spec names the allocation shapes (node counts x GPUs per node), the cases to measure
(ops x backends x codecs x rank maps) and the knobs to compare (environment variables such
as NCCL_IB_ADAPTIVE_ROUTING, PXN on/off, the rank map). Knobs that can change between job
steps are compared inside one allocation: every block runs each arm of one case once, in a
seeded random order, so slow drift of the machine hits both arms alike. Node counts cannot
change inside an allocation, so each shape becomes its own job. Everything here is pure:
parsing takes the file's text, planning takes the seed; errors name file, line and key.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from typing import Any

import tomllib

BACKENDS = ("nccl", "torch-nccl", "gloo", "mpi")
MPI_BACKENDS = ("mpi",)
RANK_MAPS = ("block", "cyclic", "plane-aligned", "misaligned")
PXN_VALUES = {"on": "0", "off": "1"}  # NCCL_PXN_DISABLE is the inverse of PXN on
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_OP_FLAGS = {"begin": "-b", "end": "-e", "factor": "-f", "iters": "-n", "warmup": "-w"}
_OP_FLAGS |= {"dtype": "-d", "check": "-c", "timeout": "-T", "aggregation": "-a"}
_KEYS = {
    "sweep": {"name", "repeats", "seed", "blocks_per_task", "runner", "partition", "account"}
    | {"time_limit", "sbatch"},
    "cluster": {"nodes", "gpus_per_node", "mpi", "request_gpus", "fabric", "topology"},
    "op": {"name", "args", *_OP_FLAGS},
    "matrix": {"backends", "codecs", "rank_maps"},
}


class SpecError(ValueError):
    """A mistake in a sweep spec; the message reads `FILE:LINE: [table] key: what is wrong`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Op:
    """One op to run and the runner flags that size it."""

    name: str
    """Op name as `epbench run` takes it (alltoall, allreduce, ...)."""
    args: tuple[str, ...]
    """Runner flags built from the op table (-b/-e/-f/-n/-w/-d/-c/-T/-a, then `args`)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sweep:
    """A parsed, validated sweep spec."""

    name: str
    """Sweep name; used in job names and file names."""
    path: str
    """File the spec came from (for messages and provenance)."""
    repeats: int
    """Blocks per case: each block runs every arm of the case once."""
    seed: int | None
    """Seed of the block order; None lets `gen` draw one and record it."""
    blocks_per_task: int
    """Blocks per job-array task; 0 puts all blocks of a shape in one job."""
    runner: tuple[str, ...]
    """Command prefix that runs one benchmark (empty: `python -m bench run`)."""
    sbatch: dict[str, str]
    """sbatch options: partition, account, time_limit, plus raw `sbatch` flags under 'extra'."""
    nodes: tuple[int, ...]
    """Node counts, one allocation shape each."""
    gpus_per_node: tuple[int, ...]
    """Ranks (one per GPU) per node, one allocation shape each."""
    mpi: str
    """srun --mpi plugin for MPI backends (pmi2 or pmix), or `hydra`: MPICH's mpiexec
    starts the ranks (its proxies through srun) and serves PMI itself."""
    request_gpus: bool
    """Ask Slurm for gpus_per_node GPUs per node (--gres=gpu:G)."""
    tags: dict[str, str]
    """Fabric and topology tags recorded with every result; the topology (a topologies
    preset name or cluster TOML file) also gives each rank its NIC environment."""
    ops: tuple[Op, ...]
    """Ops to run, in spec order."""
    backends: tuple[str, ...]
    codecs: tuple[str, ...]
    rank_maps: tuple[str, ...]
    knobs: tuple[tuple[str, tuple[str, ...]], ...]
    """Compared knobs: (name, values); env variable names, or `rank_map`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One `srun` of the runner: a case under one arm of the compared knobs."""

    id: str
    """Unique, file-name safe: shape, block and position, e.g. n2g2-b003-s1."""
    nodes: int
    gpus_per_node: int
    task: int
    """Job-array task index within its shape's job (0 when not an array)."""
    block: int
    """Block index within the shape; the arms of one block run back to back."""
    position: int
    """Position within the block (the randomized arm order)."""
    repeat: int
    op: Op
    backend: str
    codec: str
    rank_map: str
    env: dict[str, str]
    """Environment knobs of this arm (rank_map excluded)."""
    arm: str
    """Readable arm label, e.g. NCCL_IB_ADAPTIVE_ROUTING=1,rank_map=misaligned."""


def spec_error(path: str, text: str, table: str, key: str, message: str) -> SpecError:
    """A SpecError located at the line that sets `key` in `table` (header line if absent)."""
    line = key_line(text, table, key)
    where = f"{path}:{line}" if line else path
    name = f"[{table}] {key}" if key else f"[{table}]"
    return SpecError(f"{where}: {name}: {message}")


def key_line(text: str, table: str, key: str) -> int:
    """1-based line of `key = ...` inside `[table]` (`op.2` = third [[op]]); 0 if absent.

    tomllib reports no positions for keys, so the text is scanned for them.
    """
    base, _, index = table.partition(".")
    want = int(index) if index else 0
    seen, inside, header_line = -1, False, 0
    for num, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?", line)
        if header:
            seen += header.group(1) == base
            inside = header.group(1) == base and seen == want
            header_line = num if inside else header_line
        elif inside and key and re.match(rf"^\"?{re.escape(key)}\"?\s*=", line):
            return num
    return header_line


def parse(text: str, path: str = "<spec>") -> Sweep:
    """Parse and validate a sweep spec's text; SpecError names file, line and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    ctx = _Ctx(path, text)
    for table in doc:
        if table not in (*_KEYS, "compare"):
            raise ctx.err(table, "", f"unknown table; known: {', '.join([*_KEYS, 'compare'])}")
    sweep_t = ctx.table(doc, "sweep")
    cluster_t = ctx.table(doc, "cluster")
    matrix_t = ctx.table(doc, "matrix")
    if "name" not in sweep_t:
        raise ctx.err("sweep", "name", "missing; give the sweep a name")
    ops = ctx.ops(doc.get("op"))
    knobs = ctx.knobs(doc.get("compare", {}))
    rank_maps = ctx.names(matrix_t, "matrix", "rank_maps", RANK_MAPS, ["block"])
    if any(k == "rank_map" for k, _ in knobs) and "rank_maps" in matrix_t:
        raise ctx.err("compare", "rank_map", "also set in [matrix] rank_maps; keep one")
    return Sweep(
        name=ctx.safe_name(sweep_t),
        path=path,
        repeats=ctx.integer(sweep_t, "sweep", "repeats", 1, minimum=1),
        seed=ctx.integer(sweep_t, "sweep", "seed", None, minimum=0),
        blocks_per_task=ctx.integer(sweep_t, "sweep", "blocks_per_task", 0, minimum=0),
        runner=tuple(ctx.strings(sweep_t, "sweep", "runner", [])),
        sbatch=ctx.sbatch(sweep_t),
        nodes=ctx.counts(cluster_t, "nodes", 1),
        gpus_per_node=ctx.counts(cluster_t, "gpus_per_node", 1),
        mpi=ctx.mpi(cluster_t),
        request_gpus=ctx.boolean(cluster_t, "cluster", "request_gpus", True),
        tags=ctx.present(cluster_t, "cluster", ("fabric", "topology")),
        ops=ops,
        backends=ctx.names(matrix_t, "matrix", "backends", BACKENDS, ["gloo"]),
        codecs=tuple(ctx.strings(matrix_t, "matrix", "codecs", ["none"])),
        rank_maps=rank_maps,
        knobs=knobs,
    )


class _Ctx:
    """Typed getters that raise located SpecErrors."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def err(self, table: str, key: str, message: str) -> SpecError:
        return spec_error(self.path, self.text, table, key, message)

    def table(self, doc: dict[str, Any], name: str) -> dict[str, Any]:
        body = doc.get(name, {})
        if not isinstance(body, dict):
            raise self.err(name, "", "must be a table ([name]), not a value")
        self.known(body, name, _KEYS[name])
        return body

    def known(self, body: dict[str, Any], table: str, keys: set[str]) -> None:
        for key in body:
            if key not in keys:
                known = ", ".join(sorted(keys))
                raise self.err(table, key, f"unknown key; known keys: {known}")

    def integer(self, body: dict[str, Any], table: str, key: str, default: Any, *, minimum: int):
        value = body.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.err(table, key, f"{value!r} is not an integer >= {minimum}")
        return value

    def boolean(self, body: dict[str, Any], table: str, key: str, default: bool) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self.err(table, key, f"{value!r} is not true or false")
        return value

    def string(self, body: dict[str, Any], table: str, key: str) -> str:
        value = body.get(key, "")
        if not isinstance(value, str):
            raise self.err(table, key, f"{value!r} is not a string")
        return value

    def strings(self, body: dict[str, Any], table: str, key: str, default: list[str]):
        value = body.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(table, key, f"{value!r} is not a list of strings")
        return value

    def present(self, body: dict[str, Any], table: str, keys: tuple[str, ...]) -> dict[str, str]:
        values = {k: self.string(body, table, k) for k in keys}
        return {k: v for k, v in values.items() if v}

    def sbatch(self, body: dict[str, Any]) -> dict[str, str]:
        options = self.present(body, "sweep", ("partition", "account", "time_limit"))
        return {**options, "extra": " ".join(self.strings(body, "sweep", "sbatch", []))}

    def mpi(self, body: dict[str, Any]) -> str:
        plugin = self.string(body, "cluster", "mpi") or "pmi2"
        if not re.fullmatch(r"pmi2|pmix(_v\d+)?|cray_shasta|hydra", plugin):
            raise self.err(
                "cluster", "mpi", f"{plugin!r}: use an srun --mpi plugin (pmi2, pmix) or hydra"
            )
        return plugin

    def safe_name(self, body: dict[str, Any]) -> str:
        name = self.string(body, "sweep", "name")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            raise self.err("sweep", "name", f"{name!r}: use letters, digits, '.', '_', '-'")
        return name

    def counts(self, body: dict[str, Any], key: str, default: int) -> tuple[int, ...]:
        value = body.get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise self.err("cluster", key, f"{value!r} is not an integer or a list of them")
        if min(values) < 1:
            raise self.err("cluster", key, f"{value!r}: counts must be >= 1")
        return tuple(values)

    def names(self, body, table: str, key: str, allowed: tuple[str, ...], default: list[str]):
        values = self.strings(body, table, key, default)
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise self.err(table, key, f"{bad or values!r}: choose from {', '.join(allowed)}")
        return tuple(dict.fromkeys(values))

    def ops(self, tables: Any) -> tuple[Op, ...]:
        if not isinstance(tables, list) or not tables:
            raise SpecError(f'{self.path}: no [[op]] table; add one with name = "alltoall"')
        return tuple(self.op(body, f"op.{i}") for i, body in enumerate(tables))

    def op(self, body: dict[str, Any], table: str) -> Op:
        self.known(body, table, _KEYS["op"])
        name = self.string(body, table, "name")
        if not name:
            raise self.err(table, "name", "missing; name the op (alltoall, allreduce, ...)")
        args: list[str] = []
        for key, flag in _OP_FLAGS.items():
            value = body.get(key)
            if isinstance(value, (dict, list)):
                raise self.err(table, key, f"{value!r} is not a single value")
            if value is not None:
                args += [flag, str(int(value)) if isinstance(value, bool) else str(value)]
        return Op(name=name, args=(*args, *self.strings(body, table, "args", [])))

    def knobs(self, body: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if not isinstance(body, dict):
            raise self.err("compare", "", "must be a table of knob = [values]")
        knobs = []
        for key, values in body.items():
            name, vals = self.knob(key, values)
            knobs.append((name, vals))
        return tuple(knobs)

    def knob(self, key: str, values: Any) -> tuple[str, tuple[str, ...]]:
        if key in ("nodes", "gpus_per_node"):
            raise self.err("compare", key, "cannot change inside one allocation; list in [cluster]")
        if key not in ("rank_map", "pxn") and not _ENV_NAME.match(key):
            raise self.err("compare", key, "unknown knob; use rank_map, pxn or an env variable")
        ok = isinstance(values, list) and len(values) >= 2
        ok = ok and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values)
        if not ok or len(set(map(str, values))) != len(values):
            raise self.err("compare", key, f"{values!r}: give two or more distinct values")
        vals = tuple(str(v) for v in values)
        if key == "pxn":
            if not set(vals) <= set(PXN_VALUES):
                raise self.err("compare", key, f"{values!r}: pxn takes 'on' and 'off'")
            return "NCCL_PXN_DISABLE", tuple(PXN_VALUES[v] for v in vals)
        if key == "rank_map" and not set(vals) <= set(RANK_MAPS):
            raise self.err("compare", key, f"{values!r}: choose from {', '.join(RANK_MAPS)}")
        return key, vals


def arms(sweep: Sweep) -> list[dict[str, str]]:
    """Every combination of the compared knobs' values (one empty arm when none)."""
    names = [name for name, _ in sweep.knobs]
    combos = itertools.product(*(values for _, values in sweep.knobs))
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def plan(sweep: Sweep, seed: int) -> list[Step]:
    """All steps, shape by shape, in run order: per repeat, the cases' blocks in a random
    order, and inside each block the arms in a random order (all drawn from `seed`)."""
    rng = random.Random(seed)
    cases = list(itertools.product(sweep.ops, sweep.backends, sweep.codecs, sweep.rank_maps))
    steps: list[Step] = []
    for nodes, gpn in itertools.product(sweep.nodes, sweep.gpus_per_node):
        block = 0
        for repeat in range(sweep.repeats):
            for op, backend, codec, rank_map in rng.sample(cases, len(cases)):
                arm_list = arms(sweep)
                for pos, arm in enumerate(rng.sample(arm_list, len(arm_list))):
                    env = {k: v for k, v in arm.items() if k != "rank_map"}
                    steps.append(
                        Step(
                            id=f"n{nodes}g{gpn}-b{block:03d}-s{pos}",
                            nodes=nodes,
                            gpus_per_node=gpn,
                            task=block // sweep.blocks_per_task if sweep.blocks_per_task else 0,
                            block=block,
                            position=pos,
                            repeat=repeat,
                            op=op,
                            backend=backend,
                            codec=codec,
                            rank_map=arm.get("rank_map", rank_map),
                            env=env,
                            arm=",".join(f"{k}={v}" for k, v in arm.items()) or "-",
                        )
                    )
                block += 1
    return steps
