#!/usr/bin/env bash
# Debian packages the test suite needs: a real Slurm (slurm-wlm), shellcheck for the sbatch
# templates, and headless chromium for the HTML report. Idempotent; needs root (or sudo).
set -euo pipefail
PATH="${PATH}:/usr/sbin:/usr/local/sbin" # slurmctld lives in sbin, off a plain user's PATH
pkgs=()
command -v slurmctld >/dev/null 2>&1 || pkgs+=(slurm-wlm)
command -v shellcheck >/dev/null 2>&1 || pkgs+=(shellcheck)
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
if ((${#pkgs[@]} == 0)); then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
