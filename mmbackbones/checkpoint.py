"""Loading checkpoints safely and strictly.

* Safe: every load runs ``torch.load(weights_only=True)`` (or reads a
  ``.safetensors`` file, timm's Hub format) with an allow-list of
  the plain-data types MMEngine's Runner checkpoints hold (``HistoryBuffer``, its
  four statistics, numpy arrays and scalars under NumPy 1 and 2 names) and
  nothing that could run code. torch's own switch for trusted files,
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, is honoured, with a warning.
* Every source MMEngine resolves: local paths (``~`` too), URLs and the
  ``torchvision://``, ``open-mmlab://``, ``mmcls://`` schemes, through MMEngine's
  model tables and torch's hub cache, but loaded by us: MMEngine's URL loader
  passes ``weights_only=False``.
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
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

PathLike = Union[str, 'os.PathLike[str]']
TRUSTED_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
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


_allow_list_lock = threading.Lock()
_allow_list_users = 0
_allow_list_added: list = []


@contextlib.contextmanager
def safe_loading() -> Iterator[None]:
    """:data:`SAFE_GLOBALS` are in torch's ``weights_only`` allow-list inside (for
    every thread: torch keeps one list per process). Re-entrant and thread-safe;
    entries the user had allowed before stay allowed after."""
    global _allow_list_users, _allow_list_added
    with _allow_list_lock:
        if _allow_list_users == 0:
            present = torch.serialization.get_safe_globals()
            _allow_list_added = [g for g in SAFE_GLOBALS if g not in present]
            torch.serialization.add_safe_globals(_allow_list_added)
        _allow_list_users += 1
    try:
        yield
    finally:
        with _allow_list_lock:
            _allow_list_users -= 1
            if _allow_list_users == 0:
                from torch import _weights_only_unpickler
                _weights_only_unpickler._remove_safe_globals(_allow_list_added)
                _allow_list_added = []


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
    """A local checkpoint file, ``torch.load(weights_only=True)`` with the allow-list."""
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if path.endswith('.safetensors'):
        return _load_safetensors(path, map_location)
    trusted = trusted_by_env()
    if trusted:
        _warn_trusted(path)
    with _clear_errors(path), safe_loading():
        return torch.load(path, map_location=map_location, weights_only=not trusted)


def _load_safetensors(path: str, map_location) -> dict:
    """A ``.safetensors`` file (the format timm's weights are published in on the
    Hugging Face Hub): plain tensors, nothing to unpickle."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f'{path} is a safetensors file: pip install safetensors '
                              f'(timm installs it) to read it') from None
    device = 'cpu' if map_location is None else str(map_location)
    try:
        return load_file(path, device=device)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f'cannot read checkpoint {path} (not a safetensors file, '
                              f'or truncated?): {err}') from None


def load_url(url: str, map_location=None) -> dict:
    """A checkpoint URL through torch's hub cache (``$TORCH_HOME/hub/checkpoints``:
    nothing is downloaded when the file is there), loaded like :func:`safe_load`;
    in distributed runs rank 0 downloads first, as MMEngine does. MMEngine's own
    URL loader passes ``weights_only=False``."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    trusted = trusted_by_env()
    if trusted:
        _warn_trusted(url)

    def load():
        with _clear_errors(url), safe_loading():
            return torch.hub.load_state_dict_from_url(url, map_location=map_location,
                                                      progress=False, weights_only=not trusted)
    checkpoint = load() if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def _model_url(table: Dict[str, str], name: str, scheme: str) -> str:
    if name not in table:
        raise CheckpointError(f'{scheme}{name}: MMEngine knows no model named {name!r}')
    return table[name]


def _load_torchvision(filename: str, map_location=None) -> dict:
    from mmengine.runner.checkpoint import get_torchvision_models
    scheme, name = filename.split('://', 1)
    return load_url(_model_url(get_torchvision_models(), name, scheme + '://'), map_location)


def _load_openmmlab(filename: str, map_location=None) -> dict:
    from mmengine.runner.checkpoint import (_get_mmengine_home, get_deprecated_model_names,
                                            get_external_models)
    scheme, name = filename.split('://', 1)
    name = get_deprecated_model_names().get(name, name)
    target = _model_url(get_external_models(), name, scheme + '://')
    if target.startswith(('http://', 'https://')):
        return load_url(target, map_location)
    return safe_load(osp.join(_get_mmengine_home(), target), map_location)


def _load_mmcls(filename: str, map_location=None) -> dict:
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    name = filename[len('mmcls://'):]
    return _process_mmcls_checkpoint(load_url(_model_url(get_mmcls_models(), name, 'mmcls://'),
                                              map_location))


# named like MMEngine's loaders: its log prints ``__name__[10:]`` ('local', 'url')
def _load_from_local(filename, map_location=None):
    return safe_load(filename, map_location)


def _load_from_url(filename, map_location=None):
    return load_url(filename, map_location)


#: our loader for each of MMEngine's schemes that resolves to a file or a URL; any
#: other scheme (pavi, s3, ...) keeps MMEngine's loader inside :func:`safe_loading`
SAFE_SCHEMES = {
    '': _load_from_local,
    ('http://', 'https://'): _load_from_url,
    ('modelzoo://', 'torchvision://'): _load_torchvision,
    ('open-mmlab://', 'openmmlab://'): _load_openmmlab,
    'mmcls://': _load_mmcls,
}


def load_checkpoint(source: PathLike, map_location: Union[str, torch.device, None] = 'cpu'
                    ) -> dict:
    """A checkpoint from anywhere MMEngine resolves (local path, ``~``, URL,
    ``torchvision://``, ``open-mmlab://``, ``mmcls://``, ...), through MMEngine's
    model tables and torch's hub cache, loaded safely."""
    from mmengine.runner.checkpoint import CheckpointLoader
    source = os.fspath(source)
    return _safe_scheme(CheckpointLoader._get_checkpoint_loader(source))(source, map_location)


def _safe_scheme(loader: Callable) -> Callable:
    """MMEngine's loader for a scheme we do not resolve ourselves, run with the
    allow-list (torch >= 2.6 loads ``weights_only`` by default)."""
    if getattr(loader, 'mmbackbones_safe', False):
        return loader

    @functools.wraps(loader)
    def load(filename, map_location=None, *args, **kwargs):
        with _clear_errors(filename), safe_loading():
            return loader(filename, map_location, *args, **kwargs)
    load.mmbackbones_safe = True
    return load


for _loader in SAFE_SCHEMES.values():
    _loader.mmbackbones_safe = True


def install() -> None:
    """Make MMEngine's checkpoint loading safe for the whole process, since resume,
    ``load_from`` and ``init_cfg`` of other packages' modules load through it: our
    loaders for local files, URLs, ``torchvision://``, ``open-mmlab://`` and
    ``mmcls://`` (:data:`SAFE_SCHEMES`), and every other scheme registered so far
    under :func:`safe_loading`. What MMEngine resolves and writes is unchanged."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, 'mmbackbones_safe', False):
            CheckpointLoader.register_scheme(prefix, _safe_scheme(loader), force=True)


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
    """The file's network must be ``model``'s: same class, same :meth:`arch_args`
    (the architecture, activation and norm eps, not only the tensor shapes)."""
    from .api import build_backbone
    with torch.device('meta'):
        expected = build_backbone(converted.type, **converted.kwargs)
    ours = model.arch_args() if hasattr(model, 'arch_args') else {}
    differ = {k: ours.get(k) for k, v in expected.arch_args().items() if ours.get(k) != v}
    if type(model).__name__ != converted.type or differ:
        raise CheckpointError(
            f'{source} holds {converted.source} weights, whose network is '
            f'{converted.type}({_args(converted.kwargs)}); this model is '
            f'{type(model).__name__} with {_args(differ)}. '
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
