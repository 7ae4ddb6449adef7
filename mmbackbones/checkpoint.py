"""Loading checkpoints safely and strictly.

* Safe: every load runs ``torch.load(weights_only=True)`` with an allow-list of
  the plain-data types MMEngine's Runner checkpoints hold (``HistoryBuffer``, its
  four statistics, numpy arrays and scalars under NumPy 1 and 2 names) and
  nothing that could run code. torch's own switch for trusted files,
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, is honoured, with a warning.
* Every source MMEngine resolves: local paths (``~`` too), URLs and the
  ``torchvision://``, ``open-mmlab://``, ``mmcls://`` schemes go through MMEngine's
  own :class:`~mmengine.runner.checkpoint.CheckpointLoader` and its cache, inside
  :func:`safe_loading` (MMEngine's URL loader passes ``weights_only=False``).
* Strict: :func:`load_weights` (and every backbone's ``init_cfg=Pretrained``)
  refuses a checkpoint that would leave any backbone tensor unloaded, instead of
  MMEngine's silent ``strict=False``.
"""
import contextlib
import functools
import logging
import os
import os.path as osp
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

PathLike = Union[str, 'os.PathLike[str]']
TRUSTED_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
FORCE_SAFE_ENV = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'
_TRUE = ('1', 'y', 'yes', 'true')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


#: the statistics MMEngine's HistoryBuffer pickles with every buffer, as
#: ``getattr(HistoryBuffer, name)``; plain functions of the class
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling: the only attributes a
    Runner checkpoint asks for are HistoryBuffer's statistics."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(owner, "__name__", owner)!r}, {name!r}) is not allowed: only '
        f'HistoryBuffer statistics {HISTORY_BUFFER_STATISTICS} are')


def _numpy_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    dtypes = [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64',
                                          'int32', 'int8', 'uint8', 'bool')]
    # NumPy 1 pickles name numpy.core.*, NumPy 2 numpy._core.*: allow both names
    aliases = [(getattr(core.multiarray, name), f'numpy.{package}.multiarray.{name}')
               for name in ('scalar', '_reconstruct') for package in ('core', '_core')]
    return [np.dtype, np.ndarray, *aliases, *dtypes]


#: plain-data types a Runner checkpoint of MMEngine/MMPretrain/MMDetection holds
SAFE_GLOBALS = [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'),
                *_numpy_globals()]


def _env_true(name: str) -> bool:
    return os.environ.get(name, '0').lower() in _TRUE


def trusted_by_env() -> bool:
    """Whether torch's switch for trusted files is on (then nothing is forced)."""
    return _env_true(TRUSTED_ENV)


@contextlib.contextmanager
def safe_loading() -> Iterator[None]:
    """Every ``torch.load`` inside is ``weights_only`` with :data:`SAFE_GLOBALS`
    allowed, even where the caller passes ``weights_only=False`` (MMEngine's URL
    loader does), unless the user set torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        if trusted_by_env() or _env_true(FORCE_SAFE_ENV):
            yield
            return
        os.environ[FORCE_SAFE_ENV] = '1'
        try:
            yield
        finally:
            os.environ.pop(FORCE_SAFE_ENV, None)


def _warn_trusted(source: str) -> None:
    warnings.warn(f'{TRUSTED_ENV} is set: loading {source} with weights_only=False, which '
                  f'runs any code the file holds. Only do this for files you trust.',
                  UserWarning, stacklevel=3)


@contextlib.contextmanager
def _clear_errors(source: str) -> Iterator[None]:
    try:
        yield
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f'refusing to load {source}: it needs a type outside the safe allow-list, so '
            f'loading it could run code. Only load checkpoints you trust, and convert them '
            f'to plain tensors (tools/publish_model.py); for a file you trust, torch\'s '
            f'{TRUSTED_ENV}=1 loads it as it is. Details: {err}') from None
    except (RuntimeError, EOFError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f'cannot read checkpoint {source} (truncated or not a torch '
                              f'file?): {err}') from None


def safe_load(path: PathLike, map_location: Union[str, torch.device, None] = 'cpu') -> dict:
    """A local checkpoint file, loaded with :func:`safe_loading`."""
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    trusted = trusted_by_env()
    if trusted:
        _warn_trusted(path)
    with _clear_errors(path), safe_loading():
        return torch.load(path, map_location=map_location, weights_only=not trusted)


def load_checkpoint(source: PathLike, map_location: Union[str, torch.device, None] = 'cpu'
                    ) -> dict:
    """A checkpoint from anywhere MMEngine resolves (local path, ``~``, URL,
    ``torchvision://``, ``open-mmlab://``, ``mmcls://``, ...), through MMEngine's
    loader and cache, loaded safely. Nothing is downloaded when the file is in
    the cache (``$TORCH_HOME/hub/checkpoints``)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    source = os.fspath(source)
    loader = _safe_scheme(CheckpointLoader._get_checkpoint_loader(source))
    try:
        return loader(source, map_location)
    except KeyError as err:  # a scheme's model name that is not in its table
        raise CheckpointError(f'{source}: MMEngine knows no model named {err}') from None


def _safe_scheme(loader: Callable) -> Callable:
    """MMEngine's loader for one scheme, run under :func:`safe_loading`."""
    if getattr(loader, 'mmbackbones_safe', False):
        return loader

    @functools.wraps(loader)
    def load(filename, map_location=None, *args, **kwargs):
        if trusted_by_env():
            _warn_trusted(filename)
        with _clear_errors(filename), safe_loading():
            return loader(filename, map_location, *args, **kwargs)
    load.mmbackbones_safe = True
    return load


def _load_from_local(filename, map_location=None):
    return safe_load(filename, map_location)


_load_from_local.mmbackbones_safe = True


def install() -> None:
    """Make MMEngine's checkpoint loading safe for the whole process, since resume,
    ``load_from`` and ``init_cfg`` of other packages' modules load through it:
    local files through :func:`safe_load`, every other registered scheme (URLs,
    ``torchvision://``, ``open-mmlab://``, ...) under :func:`safe_loading`. Only
    what may be unpickled changes; what MMEngine resolves and writes does not."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        safe = _load_from_local if prefix == '' else _safe_scheme(loader)
        if safe is not loader:
            CheckpointLoader.register_scheme(prefix, safe, force=True)


def extract_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights of a Runner checkpoint (``state_dict``), a published one, or a
    raw state dict (e.g. torchvision's)."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def normalize_prefix(prefix: Optional[str]) -> Optional[str]:
    """MMEngine's prefix forms: ``'backbone'`` and ``'backbone.'`` are the same."""
    if not prefix:
        return None
    return prefix if prefix.endswith('.') else prefix + '.'


@dataclass
class LoadReport:
    loaded: int
    source: str
    set_aside: List[str] = field(default_factory=list)


def load_weights(model: nn.Module, checkpoint: Union[PathLike, dict],
                 prefix: Optional[str] = None, map_location='cpu',
                 logger: Union[str, logging.Logger] = 'current') -> LoadReport:
    """Load ``checkpoint`` (anything :func:`load_checkpoint` resolves, or a loaded
    dict) into ``model``, requiring that every tensor of the model is loaded and
    every key of the checkpoint is used.

    ``prefix`` (e.g. ``'backbone.'`` or ``'backbone'``) selects and strips the keys
    of one submodule. A torchvision state dict loads into a torchvision port as it
    is; its classifier is set aside (and reported). A public checkpoint in another
    layout (timm, MMDetection, vovnet-detectron2, ...: :mod:`mmbackbones.weights`)
    is recognised and converted, when ``model`` is the network it was trained as.
    """
    from_file = not isinstance(checkpoint, dict)
    source = os.fspath(checkpoint) if from_file else '<state dict>'
    state_dict = extract_state_dict(load_checkpoint(source, map_location)
                                    if from_file else checkpoint)
    state_dict = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    prefix = normalize_prefix(prefix)
    try:
        return _load_exactly(model, _select_prefix(state_dict, prefix, source), source,
                             prefix, logger)
    except CheckpointError as mismatch:
        converted = _public_layout(state_dict)
        if converted is None:
            raise mismatch from None
    _check_same_network(model, converted, source)
    return _load_exactly(model, converted.state_dict, source, None, logger,
                         note=f'converted from the {converted.source} layout',
                         set_aside=converted.set_aside)


def _select_prefix(state_dict: Dict[str, torch.Tensor], prefix: Optional[str],
                   source: str) -> Dict[str, torch.Tensor]:
    if not prefix:
        return state_dict
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        roots = sorted({k.split('.', 1)[0] + '.' for k in state_dict})
        raise CheckpointError(f'prefix {prefix!r} matches none of the {len(state_dict)} '
                              f'keys of {source}; its keys start with {roots}')
    return selected


def _public_layout(state_dict: Dict[str, torch.Tensor]):
    """The public layout ``state_dict`` is in, converted, or None."""
    from .weights import convert_weights
    try:
        return convert_weights(state_dict)
    except CheckpointError:
        return None


def _check_same_network(model: nn.Module, converted, source: str) -> None:
    """The file's network must be ``model``'s: same class, same arguments."""
    differ = {k: v for k, v in converted.kwargs.items() if getattr(model, k, None) != v}
    if type(model).__name__ != converted.type or differ:
        raise CheckpointError(
            f'{source} holds {converted.source} weights, whose network is '
            f'{converted.type}({_args(converted.kwargs)}); this model is '
            f'{type(model).__name__} with {_args({k: getattr(model, k, None) for k in differ})}. '
            f'Build {converted.type}({_args(converted.kwargs)}) to load it.')


def _args(kwargs: dict) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in kwargs.items())


def _load_exactly(model: nn.Module, state_dict: Dict[str, torch.Tensor], source: str,
                  prefix: Optional[str], logger, note: str = '',
                  set_aside: Optional[List[str]] = None) -> LoadReport:
    name = type(model).__name__
    model.__dict__.pop('dropped_head_keys', None)  # set again by a torchvision port's hook
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches, one line each
        lines = str(err).strip().splitlines()
        more = f'\n\t... and {len(lines) - 7} more' if len(lines) > 7 else ''
        raise CheckpointError(f'{source} does not fit {name} (another architecture?): '
                              + '\n'.join(lines[1:7]) + more) from None
    set_aside = list(set_aside or []) + list(getattr(model, 'dropped_head_keys', []))
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
              + (f' ({note})' if note else '')
              + (f'; set aside {_preview(set_aside)}' if set_aside else ''),
              logger=logger)
    return LoadReport(loaded=loaded, source=source, set_aside=set_aside)


PRETRAINED_TYPES = ('Pretrained', 'PretrainedInit')


def split_pretrained(init_cfg) -> tuple:
    """``(pretrained cfgs, other cfgs)`` of an ``init_cfg`` dict or list."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg] if init_cfg else []
    pretrained = [c for c in cfgs if isinstance(c, dict) and c.get('type') in PRETRAINED_TYPES]
    return pretrained, [c for c in cfgs if not any(c is p for p in pretrained)]


def _preview(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return f'[{shown}{", ..." if len(keys) > limit else ""}]'


__all__ = ['CheckpointError', 'SAFE_GLOBALS', 'safe_loading', 'safe_load', 'load_checkpoint',
           'load_weights', 'install', 'extract_state_dict', 'normalize_prefix', 'LoadReport',
           'split_pretrained']
