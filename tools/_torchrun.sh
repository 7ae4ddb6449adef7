# Sourced by dist_train.sh / dist_test.sh: run a tools/ script under torchrun.
# NNODES, NODE_RANK, MASTER_ADDR and PORT select the machines, as in OpenMMLab.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python )}

torchrun_script() {  # torchrun_script NPROC SCRIPT ARGS...
  local nproc=$1 script=$2
  shift 2
  PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
      --nproc_per_node="$nproc" "$ROOT/tools/$script" "$@" --launcher pytorch
}
