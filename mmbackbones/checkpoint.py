"""Loading checkpoints safely and strictly.

* Safe: every load goes through ``torch.load(weights_only=True)``. MMEngine 0.10.7
  never passes the flag, so under torch >= 2.6 its own Runner checkpoints (which
  hold a ``HistoryBuffer`` and numpy scalars) fail to load. :func:`install` makes
  MMEngine's local-file loader use :func:`safe_load`, which allows exactly those
  plain-data types and nothing that could run code.
* Strict: :func:`load_weights` (and every backbone's ``init_cfg=Pretrained``)
  refuses a checkpoint that would leave any backbone tensor unloaded, instead of
  MMEngine's silent ``strict=False``.
"""
import logging
import os.path as osp
import pickle
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def _numpy_globals() -> list:
    dtypes = [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64',
                                          'int32', 'int8', 'uint8', 'bool')]
    return [np.dtype, np.ndarray, np._core.multiarray.scalar,
            np._core.multiarray._reconstruct, *dtypes]


#: plain-data types a Runner checkpoint of MMEngine/MMPretrain/MMDetection holds
SAFE_GLOBALS = [HistoryBuffer, *_numpy_globals()]


def safe_load(path: str, map_location: Union[str, torch.device, None] = 'cpu') -> dict:
    """``torch.load`` with ``weights_only=True`` and the allow-list above."""
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'refusing to load {path}: it needs a type outside the safe allow-list, so '
            f'loading it could run code. Only load checkpoints you trust, and convert them '
            f'to plain tensors (tools/publish_model.py). Details: {err}') from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f'cannot read checkpoint {path} (truncated or not a torch '
                              f'file?): {err}') from None


def _history_buffer_state(self: HistoryBuffer) -> dict:
    # MMEngine pickles the class's statistics *functions* with every buffer, as
    # getattr(HistoryBuffer, 'min'), which no safe unpickler may allow. They are
    # class-level and re-registered on import, so the data alone is enough.
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def install() -> None:
    """Route MMEngine's local checkpoint loading (resume, load_from, Pretrained,
    test) through :func:`safe_load`, and make the checkpoints it writes plain
    data (see :func:`_history_buffer_state`)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    HistoryBuffer.__getstate__ = _history_buffer_state

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        return safe_load(filename, map_location)


def extract_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights of a Runner checkpoint (``state_dict``), a published one, or a
    raw state dict (e.g. torchvision's)."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


@dataclass
class LoadReport:
    loaded: int
    source: str
    set_aside: List[str] = field(default_factory=list)


def load_weights(model: nn.Module, checkpoint: Union[str, dict],
                 prefix: Optional[str] = None, map_location='cpu',
                 logger: Union[str, logging.Logger] = 'current') -> LoadReport:
    """Load ``checkpoint`` (a path or a loaded dict) into ``model``, requiring that
    every tensor of the model is loaded and every key of the checkpoint is used.

    ``prefix`` (e.g. ``'backbone.'``) selects and strips the keys of one submodule.
    A torchvision state dict loads into a torchvision port as it is; its classifier
    is set aside (and reported).
    """
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    state_dict = extract_state_dict(safe_load(checkpoint, map_location)
                                    if isinstance(checkpoint, str) else checkpoint)
    state_dict = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if prefix:
        selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not selected:
            roots = sorted({k.split('.', 1)[0] + '.' for k in state_dict})
            raise CheckpointError(f'prefix {prefix!r} matches none of the {len(state_dict)} '
                                  f'keys of {source}; its keys start with {roots}')
        state_dict = selected
    name = type(model).__name__
    model.__dict__.pop('dropped_head_keys', None)  # set again by a torchvision port's hook
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches, one line each
        lines = str(err).strip().splitlines()
        more = f'\n\t... and {len(lines) - 7} more' if len(lines) > 7 else ''
        raise CheckpointError(f'{source} does not fit {name} (another architecture?): '
                              + '\n'.join(lines[1:7]) + more) from None
    set_aside = list(getattr(model, 'dropped_head_keys', []))
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f'{source} does not fit {name}'
            + (f' (prefix {prefix!r})' if prefix else '') + ': '
            f'{len(result.missing_keys)} tensors of the model are missing from it '
            f'{_preview(result.missing_keys)}, and {len(result.unexpected_keys)} of its '
            f'keys are not in the model {_preview(result.unexpected_keys)}. Is it a '
            f'checkpoint of another architecture, or does it need prefix=\'backbone.\'?')
    loaded = len(model.state_dict())
    print_log(f'loaded {loaded} tensors into {name} from {source}'
              + (f' (prefix {prefix!r})' if prefix else '')
              + (f'; set aside classifier keys {set_aside}' if set_aside else ''),
              logger=logger)
    return LoadReport(loaded=loaded, source=source, set_aside=set_aside)


def _preview(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return f'[{shown}{", ..." if len(keys) > limit else ""}]'
