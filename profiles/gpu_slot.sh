#!/usr/bin/env bash
# Run one command on one GPU of this machine, waiting until a GPU has a free slot:
#
#   make -j 8 reproduce PROFILE=paper ... LAUNCH_GPU=profiles/gpu_slot.sh GPU_SLOTS=2
#
# (Make passes GPU_SLOTS and the other settings below to the script through the environment.)
# It sets CUDA_VISIBLE_DEVICES to the chosen GPU and OMP_NUM_THREADS to this machine's cores
# shared among all slots, then replaces itself with the command, which holds the slot's lock
# file until it (and every process it started) ends.
#   GPU_IDS       GPUs to use (default: the GPUs CUDA_VISIBLE_DEVICES allows when it is set, as
#                 a scheduler such as Slurm sets it for a job; else every GPU nvidia-smi lists,
#                 else 0)
#   GPU_SLOTS     commands at once per GPU (default 1; small runs can share a GPU)
#   GPU_THREADS   OMP_NUM_THREADS per command (default: cores / (GPUs x slots), at least 1)
#   GPU_LOCK_DIR  where the lock files live (default: $TMPDIR or /tmp; inside a Slurm job, a
#                 folder of the job's own: Slurm gives each job its own GPUs, which another job's
#                 CUDA_VISIBLE_DEVICES may name with the same index)
# A value given that makes no sense stops the script (exit 2) with a message naming it, before any
# wait; `gpu_slot.sh --check` only checks the values (Make runs it when it starts).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 command [args...] | $0 --check" >&2; exit 2; }
fail() { echo "$0: $*" >&2; exit 2; }
whole='^[1-9][0-9]*$'
[[ -z "${GPU_SLOTS:-}" || "$GPU_SLOTS" =~ $whole ]] ||
  fail "GPU_SLOTS=$GPU_SLOTS: give the number of commands at once per GPU, a whole number >= 1"
[[ -z "${GPU_THREADS:-}" || "$GPU_THREADS" =~ $whole ]] ||
  fail "GPU_THREADS=$GPU_THREADS: give OMP_NUM_THREADS per command, a whole number >= 1"
read -r -a given <<< "${GPU_IDS:-}"
gpu_id='^([0-9]+|(GPU|MIG)-[0-9A-Za-z-]+)$'   # an index or a UUID, as CUDA_VISIBLE_DEVICES takes
for id in "${given[@]}"; do
  [[ "$id" =~ $gpu_id ]] ||
    fail "GPU_IDS=$GPU_IDS: $id is not a GPU index or UUID (give them separated by spaces, e.g." \
      "GPU_IDS=\"0 1\")"
done
# The GPUs this process may use (comma-separated), when something set them: never any other.
IFS=, read -r -a allowed <<< "${CUDA_VISIBLE_DEVICES:-}"
if [ ${#given[@]} -eq 0 ]; then
  for id in "${allowed[@]}"; do
    [[ "$id" =~ $gpu_id ]] ||
      fail "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES: $id is not a GPU index or UUID, so no GPU" \
        "is allowed; unset it, or set GPU_IDS"
  done
fi
[ "$1" != --check ] || exit 0

if [ ${#given[@]} -gt 0 ]; then ids=("${given[@]}")
elif [ ${#allowed[@]} -gt 0 ]; then ids=("${allowed[@]}")
else
  read -r -a ids <<< "$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null \
    | tr '\n' ' ' || true)"
fi
[ ${#ids[@]} -gt 0 ] || ids=(0)
slots="${GPU_SLOTS:-1}"
threads="${GPU_THREADS:-$(( $(nproc) / (${#ids[@]} * slots) ))}"
[ "$threads" -ge 1 ] || threads=1
lock_dir="${GPU_LOCK_DIR:-${TMPDIR:-/tmp}}/cxr-lungmask-gpu-slots-$(id -u)"
lock_dir+="${SLURM_JOB_ID:+-job$SLURM_JOB_ID}"
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
