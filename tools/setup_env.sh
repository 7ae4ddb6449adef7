#!/usr/bin/env bash
# Idempotent set-up: builds .venv/ in the repository with the pinned stack of
# requirements/lock.txt, including mmcv 2.1.0 with its compiled ops.
#
# PyPI ships mmcv 2.1.0 only as an sdist whose setup.py forces -std=c++17, while
# torch 2.14's headers need C++20. We patch that one flag, build the wheel once
# (~18 min on 2 CPU cores) and keep it in a cache outside the repository, so later
# set-ups on the same machine install it instantly.
#
# Detectron2 publishes no wheels either. Where its source archive is at hand
# (CI has one in ../shared/vendor/; MMBACKBONES_DETECTRON2_SRC names another),
# it is built the same way, once per machine (~3.5 min on 2 cores); its PyPI
# dependencies are pinned in the lock (setup.py's [detectron2] extra). Without the archive nothing changes: users install
# Detectron2 their usual way and its tests skip, saying so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMBACKBONES_VENV:-$ROOT/.venv}"
CACHE="${MMBACKBONES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmbackbones}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
MMCV_VERSION=2.1.0
D2_SRC="${MMBACKBONES_DETECTRON2_SRC:-$(ls "$ROOT"/../shared/vendor/detectron2-*.tar.gz 2>/dev/null | tail -1 || true)}"
STAMP="$VENV/.mmbackbones-setup-$( { cat "$ROOT/requirements/lock.txt" "$ROOT/setup.py"
  echo "$D2_SRC"; } | sha1sum | cut -c1-12)"

if [ -f "$STAMP" ]; then
  exit 0
fi

log() { printf '[setup_env] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip 'setuptools<82' wheel ninja
# torch first: mmcv's build imports it.
"${PIP[@]}" install -q "torch==$(grep -E '^torch==' "$ROOT/requirements/lock.txt" | cut -d= -f3)" \
  "torchvision==$(grep -E '^torchvision==' "$ROOT/requirements/lock.txt" | cut -d= -f3)"

if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  TORCH_TAG="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
  WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_TAG"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with compiled ops (once per machine, ~18 min on 2 cores)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: \
      "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$WHEEL_DIR.partial"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel -q --no-deps \
      --no-build-isolation -w "$WHEEL_DIR.partial" "$BUILD/mmcv-$MMCV_VERSION"
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"   # publish only a finished wheel
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
fi

if [ -n "$D2_SRC" ] && ! "$VENV/bin/python" -c "import detectron2._C" 2>/dev/null; then
  TORCH_TAG="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
  D2_DIR="$CACHE/$(basename "$D2_SRC" .tar.gz)-torch$TORCH_TAG"
  if ! ls "$D2_DIR"/detectron2-*.whl >/dev/null 2>&1; then
    log "building Detectron2 from $D2_SRC (once per machine, ~3.5 min on 2 cores)"
    rm -rf "$D2_DIR.partial" && mkdir -p "$D2_DIR.partial"
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel -q --no-deps --no-build-isolation \
      -w "$D2_DIR.partial" "$D2_SRC"
    rm -rf "$D2_DIR" && mv "$D2_DIR.partial" "$D2_DIR"
  fi
  "${PIP[@]}" install -q --no-deps "$D2_DIR"/detectron2-*.whl
fi
log "installing the locked stack and mmbackbones (editable)"
"${PIP[@]}" install -q -r "$ROOT/requirements/lock.txt"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmpretrain, mmbackbones" >/dev/null
if [ -n "$D2_SRC" ]; then
  "$VENV/bin/python" -c "import detectron2._C, mmbackbones.adapters.detectron2" >/dev/null
fi
rm -f "$VENV"/.mmbackbones-setup-* && touch "$STAMP"
log "ready: $VENV"
