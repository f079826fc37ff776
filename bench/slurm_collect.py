"""`epbench slurm collect DIR`: a sweep's results, joined with what its jobs recorded.

The sbatch scripts leave each step's exit status (steps/ID/status.tsv) and each rank's
placement (steps/ID/rank-R.tsv). Collecting copies every result file into DIR/collected/
with its header metadata extended by the sweep arm and the Slurm job, step and nodes, lists
every planned step in DIR/collected/steps.tsv, and reports failed or missing steps by array
task without dropping the rest.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pathlib
import shutil
import subprocess
from typing import Any

from bench.cmd_mpirun import rank_rows, read_tsv
from bench.errors import UsageError
from results.schema import Header, SchemaError, parse_line


def _augment(
    header_line: str,
    step: dict[str, Any],
    status: dict[str, str],
    rows: list[dict[str, str]],
    plan: dict[str, Any],
) -> str:
    """The result file's header with the sweep arm and the Slurm job/step/nodes added."""
    header = parse_line(header_line)
    if not isinstance(header, Header):
        raise SchemaError("first line is not a header")
    step_ids = sorted({r["step_id"] for r in rows})
    meta = dict(header.metadata)
    meta["sweep"] = {
        "name": plan["sweep"],
        "seed": plan["seed"],
        "spec": plan["spec"],
        **{k: step[k] for k in _STEP_KEYS},
    }
    meta["slurm"] = {
        "job_id": status["job_id"],
        "array_job_id": status["array_job_id"],
        "array_task_id": status["array_task_id"],
        "nodelist": status["nodelist"],
        "step_id": step_ids[0] if len(step_ids) == 1 else ",".join(step_ids),
        "ranks": [{k: r[k] for k in _RANK_KEYS} for r in rows],
    }
    return dataclasses.replace(header, metadata=meta).to_json() + "\n"


_STEP_KEYS = ("id", "task", "block", "position", "repeat", "op", "backend", "codec")
_STEP_KEYS += ("rank_map", "env", "arm", "tags")
_RANK_KEYS = ("rank", "node_id", "node_name", "host", "local_rank", "gpu", "nic")


def collect_step(out: pathlib.Path, step: dict[str, Any], plan: dict[str, Any]) -> dict:
    """Copy one step's result into collected/ with metadata; return its state and facts."""
    step_dir = out / "steps" / step["id"]
    info = {
        "id": step["id"],
        "task": step["task"],
        "block": step["block"],
        "position": step["position"],
        "arm": step["arm"],
        "state": "missing",
        "job_id": "",
        "rc": "",
        "start_s": "",
        "why": "no status: never ran or killed",
    }
    if not (step_dir / "status.tsv").exists():
        return info
    status = read_tsv(step_dir / "status.tsv")[0]
    info.update({k: status[k] for k in ("rc", "start_s", "job_id")})
    result = out / "results" / f"{step['id']}.jsonl"
    ok = status["rc"] == "0"
    info.update(state="ok" if ok else "failed", why="" if ok else f"exit status {status['rc']}")
    if not result.exists():
        info.update(state="failed", why=f"{info['why'] or 'exit status 0'}, no result file")
        return info
    lines = result.read_text().splitlines(keepends=True)
    try:
        head = _augment(lines[0], step, status, rank_rows(step_dir), plan)
    except (SchemaError, IndexError) as exc:
        info.update(state="failed", why=f"unreadable result {result}: {exc}")
        return info
    # a failed step's file keeps what it measured before failing: collect that too
    (out / "collected" / result.name).write_text(head + "".join(lines[1:]))
    return info


def collect(out: pathlib.Path) -> list[dict[str, Any]]:
    """Collect every planned step of the sweep in `out`; write collected/steps.tsv."""
    try:
        plan = json.loads((out / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{out}/plan.json unreadable ({exc}); is {out} a sweep folder "
            "written by `epbench slurm gen`?"
        ) from None
    (out / "collected").mkdir(exist_ok=True)
    infos = [collect_step(out, step, plan) for step in plan["steps"]]
    with (out / "collected" / "steps.tsv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(infos[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(infos)
    return infos


def _still_queued(out: pathlib.Path) -> list[str]:
    """Jobs of this sweep (from --submit's jobs.json) that squeue still lists."""
    if not (out / "jobs.json").exists() or shutil.which("squeue") is None:
        return []
    ids = ",".join(json.loads((out / "jobs.json").read_text()).values())
    cmd = ["squeue", "-h", "-o", "%i", "-j", ids]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.split()


def cmd_collect(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.sweep_dir).resolve()
    infos = collect(out)
    num_ok = sum(i["state"] == "ok" for i in infos)
    print(f"collected {num_ok} of {len(infos)} steps into {out}/collected")
    queued = _still_queued(out)
    if queued:
        print(f"jobs {' '.join(queued)} are still queued or running: collect again when done")
    tasks: dict[tuple[str, int], list[dict]] = {}
    for info in infos:
        tasks.setdefault((info["id"].split("-")[0], info["task"]), []).append(info)
    for (shape, task), group in sorted(tasks.items()):
        bad = [i for i in group if i["state"] != "ok"]
        if bad:
            jobs = sorted({i["job_id"] for i in group if i["job_id"]}) or ["none"]
            print(
                f"array task {shape}/{task} (job {','.join(jobs)}): {len(bad)} of "
                f"{len(group)} steps not ok; see {out}/logs/"
            )
            for status in sorted(out.glob(f"steps/preflight-{shape}-t{task}*/status.tsv")):
                if read_tsv(status)[0]["rc"] != "0":
                    print(f"  preflight step {status.parent.name} failed: no timed step ran")
            for i in bad:
                print(f"  {i['id']}: {i['state']} ({i['why']})")
    return 0 if num_ok == len(infos) else 1
