#!/usr/bin/env bash
# Cloud TPU VM pod slice: the same command on every worker; JAX detects the pod itself.
#   launch/tpu_vm.sh my-tpu us-central2-b --config edm_cifar10 --workdir gs://bucket/edm_cifar10
# Install first:  gcloud compute tpus tpu-vm ssh my-tpu --zone ZONE --worker=all \
#   --command 'git clone REPO genmod && cd genmod && pip install -e . "jax[tpu]"'
set -euo pipefail
tpu=$1 zone=$2; shift 2
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command "cd genmod && python -m genmod.launch --distributed on $*"
