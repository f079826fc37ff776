"""`epbench slurm gen|table|collect`: sbatch scripts for a sweep, their preflight, their results.

`gen SPEC -o DIR` plans the sweep (bench/sweep.py) and renders one sbatch script per
allocation shape from the packaged template bench/templates/sweep.sbatch.j2, plus the
per-rank wrapper and environment files; `--submit` hands them to sbatch. The scripts record
each step's exit status and each rank's placement under DIR/steps/; `collect DIR`
(bench/slurm_collect.py) joins them with the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import pathlib
import secrets
import shlex
import shutil
import subprocess
import sys
from typing import Any

import jinja2

from bench import slurm_collect
from bench import sweep as sweep_mod
from bench.cmd_mpirun import (
    SRUN_DISTRIBUTION,
    TEMPLATES,
    check_table,
    install_wrapper,
    layout,
    load_topology,
    rank_rows,
    write_env_files,
)
from bench.errors import UsageError
from topologies import Cluster

HELLO_ARGS = ("-b", "8", "-e", "8", "-n", "1", "-w", "1", "--blocks", "1")


def _shape(nodes: int, gpus_per_node: int) -> str:
    return f"n{nodes}g{gpus_per_node}"


def _runner(spec: sweep_mod.Sweep) -> list[str]:
    return list(spec.runner) or [sys.executable, "-m", "bench", "run"]


def _quote(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def step_command(spec: sweep_mod.Sweep, step: sweep_mod.Step, result: pathlib.Path) -> list[str]:
    """The runner command line of one step."""
    cmd = [*_runner(spec), step.op.name, "--backend", step.backend]
    cmd += ["--gpus-per-node", str(step.gpus_per_node), *step.op.args]
    if step.codec != "none":
        cmd += ["--codec", step.codec]
    if step.rank_map != "block" and runner_accepts(spec, "--rank-map"):
        cmd += ["--rank-map", step.rank_map]
    if "topology" in spec.tags and runner_accepts(spec, "--topology"):
        cmd += ["--topology", topology_source(spec)]
    if "fabric" in spec.tags and runner_accepts(spec, "--fabric"):
        cmd += ["--fabric", spec.tags["fabric"]]
    if step.arm != "-" and runner_accepts(spec, "--label"):
        cmd += ["--label", step.arm]  # the analyzer compares arms `--by label`
    return [*cmd, "-o", str(result)]


@functools.cache
def _run_parser_accepts(flag: str) -> bool:
    from bench.cli import build_parser  # late: bench.cli imports this module

    _, unknown = build_parser().parse_known_args(["run", "alltoall", flag, "x"])
    return flag not in unknown


def runner_accepts(spec: sweep_mod.Sweep, flag: str) -> bool:
    """Whether the runner takes `flag`: a custom runner is trusted, `epbench run` is asked.
    The rank map and topology always reach the results through `collect`'s metadata."""
    return bool(spec.runner) or _run_parser_accepts(flag)


def topology_source(spec: sweep_mod.Sweep) -> str:
    """The spec's topology: a preset name, or a cluster file found beside the spec."""
    name = spec.tags["topology"]
    beside = pathlib.Path(spec.path).parent / name
    return str(beside.resolve()) if name.endswith(".toml") and beside.is_file() else name


def _clusters(spec: sweep_mod.Sweep) -> dict[tuple[int, int], Cluster | None]:
    """The topology sized to each shape (None without one); refuses a mismatch up front."""
    shapes = [(n, g) for n in spec.nodes for g in spec.gpus_per_node]
    if "topology" not in spec.tags:
        return dict.fromkeys(shapes)
    return {(n, g): load_topology(topology_source(spec), n, g) for n, g in shapes}


def _write_env(
    out: pathlib.Path, nodes: int, gpn: int, cluster: Cluster | None, maps: list[str]
) -> None:
    for rank_map in maps:
        envs = layout(rank_map, nodes, gpn, cluster).envs
        write_env_files(out / "env" / f"{rank_map}-{_shape(nodes, gpn)}", envs)


def _mpiexec() -> str:
    """The mpiexec beside this Python (the MPICH wheel's), else the one on PATH."""
    beside = pathlib.Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else "mpiexec"


def _mpi(spec: sweep_mod.Sweep, backend: str, rank_map: str = "block") -> str:
    if backend not in sweep_mod.MPI_BACKENDS:
        return "none"
    if spec.mpi == "hydra" and SRUN_DISTRIBUTION[rank_map] != "block":
        raise UsageError(
            f"{spec.path}: [cluster] mpi = 'hydra' places ranks in blocks, not {rank_map!r}; "
            "use mpi = 'pmi2' for that rank map"
        )
    return spec.mpi


def _step_view(spec, step: sweep_mod.Step, out: pathlib.Path) -> dict[str, Any]:
    knobs = _quote([f"{k}={v}" for k, v in step.env.items()])
    return {
        "id": step.id,
        "block": step.block,
        "position": step.position,
        "mpi": _mpi(spec, step.backend, step.rank_map),
        "distribution": SRUN_DISTRIBUTION[step.rank_map],
        "env_dir": f"{step.rank_map}-{_shape(step.nodes, step.gpus_per_node)}",
        "knobs": f"{knobs} " if knobs else "",
        "command": _quote(step_command(spec, step, out / "results" / f"{step.id}.jsonl")),
        "comment": f"{step.op.name} {step.backend} codec={step.codec} map={step.rank_map} "
        f"arm={step.arm}",
    }


def _sbatch_options(spec: sweep_mod.Sweep) -> list[str]:
    names = {"partition": "--partition", "account": "--account", "time_limit": "--time"}
    options = [f"{names[k]}={v}" for k, v in spec.sbatch.items() if k in names]
    return options + shlex.split(spec.sbatch.get("extra", ""))


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: TEMPLATES.joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def _hello_view(spec: sweep_mod.Sweep, backend: str, gpus_per_node: int) -> dict[str, str]:
    """The preflight's 8-byte all-reduce on `backend`; its file goes beside the step's table."""
    args = ["allreduce", "--backend", backend, "--gpus-per-node", str(gpus_per_node)]
    command = _quote([*_runner(spec), *args, *HELLO_ARGS, "-o"])
    path = f'"${{sweep_dir}}/steps/${{id}}-{backend}/hello.jsonl"'
    return {"backend": backend, "mpi": _mpi(spec, backend), "command": f"{command} {path}"}


def render_job(spec, steps: list[sweep_mod.Step], out: pathlib.Path, seed: int) -> str:
    """The sbatch script of one allocation shape (all steps share nodes and GPUs per node)."""
    nodes, gpn = steps[0].nodes, steps[0].gpus_per_node
    shape = _shape(nodes, gpn)
    num_tasks = max(s.task for s in steps) + 1
    tasks = [
        {"index": t, "steps": [_step_view(spec, s, out) for s in steps if s.task == t]}
        for t in range(num_tasks)
    ]
    template = _templates().get_template("sweep.sbatch.j2")
    log = out / "logs" / (f"{shape}-%A_%a.out" if num_tasks > 1 else f"{shape}-%j.out")
    return template.render(
        job_name=f"epbench-{spec.name}-{shape}",
        nodes=nodes,
        gpus_per_node=gpn,
        request_gpus=spec.request_gpus,
        num_tasks=num_tasks,
        sbatch_options=_sbatch_options(spec),
        log_pattern=log,
        spec=spec.path,
        seed=seed,
        shape=shape,
        sweep_dir=out,
        python=sys.executable,
        mpiexec=_mpiexec(),
        srun_extra="--gpu-bind=none " if spec.request_gpus else "",
        preflight_env=f"block-{shape}",
        hellos=[_hello_view(spec, b, gpn) for b in dict.fromkeys(s.backend for s in steps)],
        tasks=tasks,
    )


def _load_spec(path: str) -> sweep_mod.Sweep:
    try:
        text = pathlib.Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    try:
        return sweep_mod.parse(text, path)
    except sweep_mod.SpecError as exc:
        raise UsageError(str(exc)) from None


def _step_record(step: sweep_mod.Step, spec: sweep_mod.Sweep) -> dict[str, Any]:
    body = dataclasses.asdict(step)
    body["op"] = step.op.name
    body["op_args"] = list(step.op.args)
    body["tags"] = spec.tags
    return body


def write_sweep(
    spec: sweep_mod.Sweep, out: pathlib.Path, seed: int
) -> tuple[list[pathlib.Path], int]:
    """Write scripts, wrapper, env files and plan.json under `out`; return the scripts and
    the number of steps."""
    out = out.resolve()
    clusters = _clusters(spec)
    steps = sweep_mod.plan(spec, seed)
    for sub in ("jobs", "logs", "results", "steps", "env"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    install_wrapper(out)
    scripts = []
    for nodes in spec.nodes:
        for gpn in spec.gpus_per_node:
            shape = _shape(nodes, gpn)
            maps = {"block", *spec.rank_maps, *(s.rank_map for s in steps)}
            _write_env(out, nodes, gpn, clusters[(nodes, gpn)], sorted(maps))
            mine = [s for s in steps if (s.nodes, s.gpus_per_node) == (nodes, gpn)]
            script = out / "jobs" / f"{shape}.sbatch"
            script.write_text(render_job(spec, mine, out, seed))
            script.chmod(0o755)
            scripts.append(script)
    plan = {
        "sweep": spec.name,
        "spec": str(pathlib.Path(spec.path).resolve()),
        "seed": seed,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "jobs": [str(s) for s in scripts],
        "steps": [_step_record(s, spec) for s in steps],
    }
    (out / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True))
    return scripts, len(steps)


def _run(cmd: list[str], what: str) -> str:
    if shutil.which(cmd[0]) is None:
        raise UsageError(
            f"{cmd[0]} not found on PATH: {what} needs a Slurm client (run on a "
            "login node, or install slurm-wlm)"
        )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        first = (proc.stderr.strip() or proc.stdout.strip() or "no message").splitlines()[0]
        raise UsageError(f"{_quote(cmd)} failed: {first}")
    return proc.stdout


def check_capacity(spec: sweep_mod.Sweep) -> None:
    """Refuse shapes the partition cannot hold (nodes, or tasks per node > CPUs per node)."""
    cmd = ["sinfo", "-h", "-o", "%P %D %c"]
    if "partition" in spec.sbatch:
        cmd[1:1] = ["-p", spec.sbatch["partition"]]
    rows = [line.split() for line in _run(cmd, "checking the partition").splitlines()]
    rows = [r for r in rows if len(r) == 3 and ("partition" in spec.sbatch or r[0].endswith("*"))]
    if not rows:
        raise UsageError(
            f"no partition {spec.sbatch.get('partition', '(default)')} in sinfo; "
            "set [sweep] partition to one `sinfo` lists"
        )
    name, num_nodes, cpus = rows[0][0].rstrip("*"), int(rows[0][1]), int(rows[0][2].rstrip("+"))
    for nodes in spec.nodes:
        for gpn in spec.gpus_per_node:
            if nodes > num_nodes or gpn > cpus:
                raise UsageError(
                    f"{spec.path}: {nodes} nodes x {gpn} tasks do not fit partition {name} "
                    f"({num_nodes} nodes of {cpus} CPUs); lower [cluster] nodes/gpus_per_node"
                )


def submit(spec: sweep_mod.Sweep, scripts: list[pathlib.Path], out: pathlib.Path) -> dict:
    check_capacity(spec)
    jobs = {}
    for script in scripts:
        job_id = _run(["sbatch", "--parsable", str(script)], "--submit").strip().split(";")[0]
        jobs[script.stem] = job_id
        print(f"submitted {script.name} as job {job_id}")
    (out / "jobs.json").write_text(json.dumps(jobs, indent=1))
    return jobs


def cmd_gen(args: argparse.Namespace) -> int:
    spec = _load_spec(args.spec)
    seed = args.seed if args.seed is not None else spec.seed
    seed = seed if seed is not None else secrets.randbelow(2**31)
    out = pathlib.Path(args.output)
    if (out / "plan.json").exists():
        raise UsageError(
            f"{out} already holds a sweep (plan.json); write to a new folder so that its "
            "results are not mixed with this one's"
        )
    scripts, num_steps = write_sweep(spec, out, seed)
    print(f"wrote {len(scripts)} sbatch script(s), {num_steps} steps, seed {seed}, to {out}")
    if args.submit:
        submit(spec, scripts, out.resolve())
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    rows = rank_rows(pathlib.Path(args.step_dir))
    cols = ("rank", "node_id", "node_name", "host", "local_rank", "gpu", "nic")
    print("  ".join(f"{c:>10}" for c in cols))
    for row in rows:
        print("  ".join(f"{row[c]:>10}" for c in cols))
    problem = check_table(rows, args.ranks)
    if problem:
        raise UsageError(f"preflight table in {args.step_dir}: {problem}", exit_code=3)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("slurm", help="sbatch scripts for a sweep; collect results")
    sub = parser.add_subparsers(dest="slurm_command", metavar="ACTION", required=True)
    p = sub.add_parser("gen", help="write sbatch scripts for a sweep spec (TOML)")
    p.add_argument("spec", help="sweep spec (TOML); see docs/LAUNCHING.md")
    p.add_argument("-o", "--output", required=True, help="sweep folder to write")
    p.add_argument("--seed", type=int, default=None, help="block-order seed (default: spec's)")
    p.add_argument("--submit", action="store_true", help="submit the scripts with sbatch")
    p.set_defaults(func=cmd_gen)
    p = sub.add_parser("table", help="check and print a step's host/rank/GPU/NIC table")
    p.add_argument("step_dir")
    p.add_argument("--ranks", type=int, required=True, help="expected number of ranks")
    p.set_defaults(func=cmd_table)
    p = sub.add_parser("collect", help="gather a sweep's results; report failed/missing tasks")
    p.add_argument("sweep_dir")
    p.set_defaults(func=slurm_collect.cmd_collect)
