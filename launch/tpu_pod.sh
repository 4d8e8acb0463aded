#!/usr/bin/env bash
# TPU pod slice: the same command on every worker of the slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config configs/base.py --workdir gs://bucket/runs/base
#
# Needs the repository checked out at ~/unispeech_jax on every worker and
# `pip install -e ~/unispeech_jax "jax[tpu]"` done once (e.g. with --command on all workers).
# On TPU VMs jax.distributed.initialize() finds the coordinator and process ids itself. The
# exit status is gcloud's: non-zero when the command failed on any worker. A maintenance
# event or preemption sends SIGTERM to the workers: they save and exit 0; run this again to
# resume.
set -euo pipefail
name=${1:?usage: $0 TPU_NAME ZONE TRAIN_ARGS...}
zone=${2:?usage: $0 TPU_NAME ZONE TRAIN_ARGS...}
shift 2
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all \
  --command "cd ~/unispeech_jax && python -m unispeech_jax.train $args"
