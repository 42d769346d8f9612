#!/usr/bin/env bash
# N local processes of one job (e.g. one per GPU, or CPU processes for testing):
#   launch/local.sh 2 --config edm_toy --workdir checkpoints/edm_toy_2proc
# Each process sees its share of devices; set XLA_FLAGS/CUDA_VISIBLE_DEVICES per process as
# needed (below: CPU test mode gives each process 2 simulated devices).
set -euo pipefail
n=$1; shift
port=${GENMOD_PORT:-$((20000 + RANDOM % 10000))}
pids=()
for ((i = 0; i < n; i++)); do
  if [[ -n "${GENMOD_GPUS_PER_PROC:-}" ]]; then
    export CUDA_VISIBLE_DEVICES=$(seq -s, $((i * GENMOD_GPUS_PER_PROC)) $(((i + 1) * GENMOD_GPUS_PER_PROC - 1)))
  else
    export XLA_FLAGS="--xla_force_host_platform_device_count=${GENMOD_CPU_DEVICES:-2}" JAX_PLATFORMS=cpu
  fi
  python -m genmod.launch --coordinator "127.0.0.1:$port" --num_processes "$n" --process_id "$i" "$@" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT   # preemption: every process saves and exits 0
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
