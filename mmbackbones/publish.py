"""Turn a training checkpoint into a small release file."""
import hashlib
import io
import os
import os.path as osp
from typing import Dict, Optional

import torch

from .checkpoint import safe_load
from .engine.atomic_io import atomic_write
from .input_check import input_record
from .version import __version__


def publish_checkpoint(src: str, out: Optional[str] = None) -> str:
    """Keep only the weights (the EMA weights when the run used EMA), as plain
    tensors with a little plain-data metadata, so the file loads with
    ``torch.load(weights_only=True)`` and no allow-list. The file is named
    ``<out stem>-<first 8 hex digits of its SHA-256>.pth``; with ``out`` given,
    ``out`` itself becomes a symlink to it, so configs can name a stable path
    (``checkpoints/vovnet39_imagenet.pth``). Returns the hashed file's path."""
    _check_link_target(out)
    checkpoint = safe_load(src)
    state_dict = checkpoint.get('state_dict', checkpoint)
    # MMEngine's EMAHook.before_save_checkpoint swaps the two before saving, so that
    # a checkpoint deploys its averaged model: 'state_dict' holds the EMA weights and
    # 'ema_state_dict' the raw ones (under 'module.', to resume from)
    ema = _swapped_by_ema_hook(checkpoint)
    meta = checkpoint.get('meta') or {}
    classes = (meta.get('dataset_meta') or {}).get('classes')
    return write_release(
        state_dict, dict(source=osp.basename(src), epoch=int(meta.get('epoch', 0)),
                         iter=int(meta.get('iter', 0)), ema=ema,
                         classes=[str(c) for c in classes] if classes else None,
                         backbone=meta.get('backbone'), input=input_record(checkpoint)),
        out or src, link=bool(out))


def _swapped_by_ema_hook(checkpoint: dict) -> bool:
    """Whether ``state_dict`` holds EMAHook's averaged weights: the hook swapped
    in every model tensor that ``ema_state_dict`` names under ``module.``."""
    ema, state_dict = checkpoint.get('ema_state_dict'), checkpoint.get('state_dict')
    if not isinstance(ema, dict) or not isinstance(state_dict, dict):
        return False
    averaged = [k[len('module.'):] for k in ema if k.startswith('module.')]
    return bool(averaged) and all(k in state_dict for k in averaged)


def write_release(state_dict: Dict[str, torch.Tensor], meta: dict, out: str,
                  link: bool = True) -> str:
    """Write ``{'state_dict', 'meta'}`` (plain tensors and plain data) to
    ``<out stem>-<sha>.pth``, atomically; with ``link``, ``out`` links to it."""
    if link:
        _check_link_target(out)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()
                  if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise ValueError(f'no weights to publish for {out}')
    release = dict(state_dict=state_dict,
                   meta=dict(mmbackbones_version=__version__, **meta))
    buffer = io.BytesIO()
    torch.save(release, buffer)
    data = buffer.getvalue()
    path = f'{osp.splitext(out)[0]}-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    atomic_write(data, path)
    if link:
        link_latest(path, out)
    return path


def _check_link_target(out: Optional[str]) -> None:
    if out and osp.lexists(out) and not osp.islink(out):
        raise FileExistsError(f'{out} exists and is not a symlink: choose another name '
                              f'(it becomes a link to the hashed release)')


def link_latest(target: str, link: str) -> None:
    """Point the symlink ``link`` at ``target``, replacing an older link in one
    step."""
    tmp = f'{link}.{os.getpid()}.tmp'
    os.symlink(osp.relpath(target, osp.dirname(osp.abspath(link))), tmp)
    os.replace(tmp, link)
