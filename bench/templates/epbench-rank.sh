#!/usr/bin/env bash
# Per-rank wrapper for epbench steps (srun, mpiexec or mpirun start one per rank).
# It applies this rank's environment file (ENV_DIR/rank-R.env: the plane-aware NIC settings
# of the rank map), then the compared knobs given as NAME=VALUE, records where the rank
# landed (host, node, local rank, GPU, NIC, Slurm step) as STEP_DIR/rank-R.tsv, and execs
# the command. All GPUs of the node stay visible; the runner picks the device by local rank.
#
#   epbench-rank.sh ENV_DIR STEP_DIR [NAME=VALUE ...] -- COMMAND [ARG ...]
set -euo pipefail

if (($# < 3)); then
  echo "usage: $0 ENV_DIR STEP_DIR [NAME=VALUE ...] -- COMMAND [ARG ...]" >&2
  exit 2
fi
env_dir=$1
step_dir=$2
shift 2
knobs=()
while (($# > 0)) && [[ $1 != -- ]]; do
  knobs+=("$1")
  shift
done
if [[ ${1:-} != -- ]]; then
  echo "$0: missing -- before the command" >&2
  exit 2
fi
shift

# launchers in the runner's order: torchrun, MPI, then Slurm (under mpiexec -bootstrap slurm
# the Slurm task is hydra's proxy, not the rank)
rank=${RANK:-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}}}
local_rank=${LOCAL_RANK:-${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-${SLURM_LOCALID:-0}}}}
env_file="${env_dir}/rank-${rank}.env"
if [[ -f $env_file ]]; then
  set -a
  # shellcheck source=/dev/null
  source "$env_file"
  set +a
fi
for knob in "${knobs[@]}"; do
  export "${knob?}"
done

mkdir -p "$step_dir"
host=$(hostname)
# the device is `local_rank` among the visible GPUs; name the physical GPU behind it
IFS=, read -r -a visible <<<"${CUDA_VISIBLE_DEVICES:-}"
gpu=${visible[local_rank]:-$local_rank}
knob_list=$(
  IFS=,
  echo "${knobs[*]}"
)
{
  printf 'rank\tlocal_rank\tnode_id\thost\tnode_name\tgpu\tcuda_visible\tnic\t'
  printf 'job_id\tstep_id\tstep_nodelist\tknobs\n'
  printf '%s\t' "$rank" "$local_rank" "${SLURM_NODEID:--}" "$host" \
    "${SLURMD_NODENAME:-${PMI_HOSTNAME:-$host}}" "$gpu" "${CUDA_VISIBLE_DEVICES:-all}" \
    "${UCX_NET_DEVICES:-${NCCL_IB_HCA:--}}" "${SLURM_JOB_ID:--}" "${SLURM_STEP_ID:--}" \
    "${SLURM_STEP_NODELIST:--}"
  printf '%s\n' "${knob_list:--}"
} >"${step_dir}/rank-${rank}.tsv"

exec "$@"
