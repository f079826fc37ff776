#!/usr/bin/env bash
# A real Slurm cluster on one machine, for tests and for trying sweeps without a cluster:
# one slurmctld and N slurmd daemons started with `-N nK`, every node sharing this host
# (NodeHostname=localhost, one port per node). No munge (auth/none, cred/none), no cgroups
# (proctrack/linuxproc, task/none), all state, spool and logs under DIR.
#
#   slurm/local-cluster.sh start DIR [NUM_NODES] [BASE_PORT] [CPUS_PER_NODE]
#   slurm/local-cluster.sh stop DIR
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, srun, squeue, sinfo talk to it
#
# slurmctld listens on BASE_PORT (default 17000); node K's slurmd on BASE_PORT+K.
# Where the system allows it (root), each slurmd runs in its own UTS and mount namespace
# with host name nK and an /etc/hosts (DIR/hosts) where n1..nN are this host, so ranks on
# different nodes see different host names as on a real cluster, and the names resolve.
# Each node declares CPUS_PER_NODE CPUs (default 2) whatever the host has, so nodes share
# the host's cores. Exits non-zero, naming the log to read, if the nodes do not come up.
set -euo pipefail
PATH="${PATH}:/usr/sbin:/usr/local/sbin" # the daemons live in sbin, off a plain user's PATH

usage() {
  echo "usage: $0 start DIR [NUM_NODES] [BASE_PORT] [CPUS_PER_NODE] | stop DIR" >&2
  exit 2
}

write_conf() {
  local dir=$1 num_nodes=$2 base_port=$3 cpus=$4 user
  user=$(id -un)
  {
    echo "ClusterName=epbench"
    echo "SlurmctldHost=localhost(127.0.0.1)"
    echo "SlurmctldPort=${base_port}"
    echo "SlurmUser=${user}"
    echo "SlurmdUser=${user}"
    echo "AuthType=auth/none"
    echo "CredType=cred/none"
    echo "MpiDefault=none"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "SchedulerType=sched/builtin"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "ReturnToService=2"
    echo "MinJobAge=3600"
    echo "SlurmdTimeout=60"
    echo "InactiveLimit=0"
    echo "KillWait=5"
    echo "StateSaveLocation=${dir}/state"
    echo "SlurmdSpoolDir=${dir}/spool/%n"
    echo "SlurmctldPidFile=${dir}/run/slurmctld.pid"
    echo "SlurmdPidFile=${dir}/run/slurmd-%n.pid"
    echo "SlurmctldLogFile=${dir}/log/slurmctld.log"
    echo "SlurmdLogFile=${dir}/log/slurmd-%n.log"
    local k
    for ((k = 1; k <= num_nodes; k++)); do
      echo "NodeName=n${k} NodeHostname=localhost NodeAddr=127.0.0.1" \
        "Port=$((base_port + k)) CPUs=${cpus} State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=n[1-${num_nodes}] Default=YES MaxTime=INFINITE State=UP"
  } >"${dir}/slurm.conf"
}

wait_idle() {
  local dir=$1 num_nodes=$2 tries idle
  for ((tries = 0; tries < 100; tries++)); do
    idle=$(SLURM_CONF="${dir}/slurm.conf" sinfo -h -N -t idle -o '%N' 2>/dev/null | wc -l)
    if ((idle >= num_nodes)); then
      return 0
    fi
    sleep 0.2
  done
  echo "local-cluster: nodes not idle after 20 s; see ${dir}/log/" >&2
  SLURM_CONF="${dir}/slurm.conf" sinfo -N >&2 || true
  return 1
}

# Whether each slurmd can get its own UTS namespace (needs root or CAP_SYS_ADMIN);
# LOCAL_CLUSTER_SHARED_HOSTNAME=1 keeps every node on this host's name.
own_hostnames() {
  [[ ${LOCAL_CLUSTER_SHARED_HOSTNAME:-0} != 1 ]] && unshare --uts --mount true 2>/dev/null
}

start() {
  local dir num_nodes=${2:-2} base_port=${3:-17000} cpus=${4:-2} k
  command -v slurmctld >/dev/null 2>&1 || {
    echo "local-cluster: slurmctld not found; install Debian's slurm-wlm" >&2
    exit 3
  }
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  mkdir -p "${dir}/state" "${dir}/run" "${dir}/log"
  for ((k = 1; k <= num_nodes; k++)); do mkdir -p "${dir}/spool/n${k}"; done
  write_conf "$dir" "$num_nodes" "$base_port" "$cpus"
  # inside the nodes' namespaces every node name resolves to this host (hydra, MASTER_ADDR)
  {
    cat /etc/hosts
    echo "127.0.0.1 $(for ((k = 1; k <= num_nodes; k++)); do printf 'n%s ' "$k"; done)"
  } >"${dir}/hosts"
  slurmctld -i -f "${dir}/slurm.conf"
  for ((k = 1; k <= num_nodes; k++)); do
    if own_hostnames; then # node K's tasks see host name nK, as on separate machines
      # shellcheck disable=SC2016 # $1 $2 $3 expand in the inner shell
      unshare --uts --mount sh -c \
        'hostname "$1" && mount --bind "$3" /etc/hosts && exec slurmd -N "$1" -f "$2"' \
        sh "n${k}" "${dir}/slurm.conf" "${dir}/hosts"
    else
      slurmd -N "n${k}" -f "${dir}/slurm.conf"
    fi
  done
  wait_idle "$dir" "$num_nodes"
}

stop() {
  local dir=$1 pidfile pid tries pids=()
  for pidfile in "${dir}"/run/slurmd-*.pid "${dir}/run/slurmctld.pid"; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    if kill "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for ((tries = 0; tries < 50; tries++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  start) [[ $# -ge 2 ]] || usage; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
