#!/usr/bin/env bash
# Distributed evaluation: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_torchrun.sh"
torchrun_script "$3" test.py "$1" "$2" "${@:4}"
