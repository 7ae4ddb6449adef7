#!/usr/bin/env bash
# Distributed training: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR and PORT on each.
# On a machine without GPUs the processes train on CPU with the gloo backend.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_torchrun.sh"
torchrun_script "$2" train.py "$1" "${@:3}"
