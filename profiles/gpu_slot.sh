#!/usr/bin/env bash
# Run one command on one GPU of this machine, waiting until a GPU has a free slot:
#
#   make -j 8 reproduce PROFILE=paper ... LAUNCH_GPU=profiles/gpu_slot.sh GPU_SLOTS=2
#
# (Make passes GPU_SLOTS and the other settings below to the script through the environment.)
# It sets CUDA_VISIBLE_DEVICES to the chosen GPU and OMP_NUM_THREADS to this machine's cores
# shared among all slots, then replaces itself with the command, which holds the slot's lock
# file until it (and every process it started) ends.
#   GPU_IDS       GPUs to use (default: every GPU nvidia-smi lists, else 0)
#   GPU_SLOTS     commands at once per GPU (default 1; small runs can share a GPU)
#   GPU_THREADS   OMP_NUM_THREADS per command (default: cores / (GPUs x slots), at least 1)
#   GPU_LOCK_DIR  where the lock files live (default: $TMPDIR or /tmp)
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 command [args...]" >&2; exit 2; }
read -r -a ids <<< "${GPU_IDS:-$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null \
  | tr '\n' ' ' || true)}"
[ ${#ids[@]} -gt 0 ] || ids=(0)
slots="${GPU_SLOTS:-1}"
threads="${GPU_THREADS:-$(( $(nproc) / (${#ids[@]} * slots) ))}"
[ "$threads" -ge 1 ] || threads=1
lock_dir="${GPU_LOCK_DIR:-${TMPDIR:-/tmp}}/cxr-lungmask-gpu-slots-$(id -u)"
mkdir -p "$lock_dir"
while :; do
  for id in "${ids[@]}"; do
    for ((slot = 0; slot < slots; slot++)); do
      exec {fd}>"$lock_dir/gpu$id.slot$slot"
      if flock -n "$fd"; then
        export CUDA_VISIBLE_DEVICES="$id" OMP_NUM_THREADS="$threads"
        exec "$@"
      fi
      exec {fd}>&-
    done
  done
  sleep 1
done
