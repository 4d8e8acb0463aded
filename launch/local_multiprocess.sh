#!/usr/bin/env bash
# Runs N training processes on this machine, talking over loopback through JAX's own
# distributed runtime (gloo collectives on CPU): multi-host behaviour without a cluster.
#
#   launch/local_multiprocess.sh 2 --config configs/tiny.py --workdir runs/mp
#
# Every process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, which
# unispeech_jax.train passes to jax.distributed.initialize. Process 0 logs. SIGTERM/SIGINT are
# forwarded (each process saves and exits 0). The exit status is the first failure's, or 0;
# a failure terminates the other processes, which would otherwise wait for the dead peer.
set -uo pipefail
n=${1:?usage: $0 NUM_PROCESSES TRAIN_ARGS...}
shift
port=${JAX_PORT:-$((20000 + RANDOM % 20000))}
pids=()
for ((i = 0; i < n; i++)); do
  JAX_COORDINATOR_ADDRESS=127.0.0.1:$port JAX_NUM_PROCESSES=$n JAX_PROCESS_ID=$i \
    JAX_PLATFORMS=cpu python -m unispeech_jax.train "$@" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
status=0
while ((${#pids[@]})); do
  for i in "${!pids[@]}"; do
    pid=${pids[i]}
    kill -0 "$pid" 2>/dev/null && continue
    wait "$pid"  # already exited: returns its status, not interrupted by traps
    rc=$?
    unset 'pids[i]'
    if ((rc != 0 && status == 0)); then
      status=$rc
      ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
    fi
  done
  sleep 0.5
done
exit $status
