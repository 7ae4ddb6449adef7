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

This is the bottom layer of loading: it reads files and knows no network.
:mod:`mmbackbones.loader` puts what it reads into models, strictly.
"""
import contextlib
import functools
import os
import os.path as osp
import pickle
import threading
import warnings
from typing import Callable, Dict, Iterator, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .download import fetch, remove_cached
from .errors import CheckpointError, UnsafeCheckpointError

PathLike = Union[str, 'os.PathLike[str]']
TRUSTED_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
_TRUE = ('1', 'y', 'yes', 'true')


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
        raise UnsafeCheckpointError(
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
    _check_torch_file(path)
    if path.endswith(PICKLE_SUFFIX):
        return _load_pickle(path)
    trusted = trusted_by_env()
    if trusted:
        _warn_trusted(path)
    with _clear_errors(path), safe_loading():
        return torch.load(path, map_location=map_location, weights_only=not trusted)


#: how a torch.save file starts: a zip archive (torch >= 1.6) or a pickle
TORCH_FILE_MAGIC = (b'PK\x03\x04', b'\x80')


def _check_torch_file(path: str) -> None:
    """A file that is not a torch checkpoint at all (random bytes, a config,
    a ``.py``) is said to be that, not taken for an unsafe pickle."""
    with open(path, 'rb') as f:
        head = f.read(8)
    if not head.startswith(TORCH_FILE_MAGIC):
        raise CheckpointError(
            f'{path} is not a checkpoint: torch.save writes a zip archive or a pickle, '
            f'and this file starts with {head!r}. Is it the right file (not a config, '
            f'a script or a partial download)?')


#: Detectron2's model zoo format: a plain pickle of numpy arrays (``model_final_*.pkl``)
PICKLE_SUFFIX = '.pkl'


def _pickle_globals() -> Dict[str, object]:
    """What a pickle of numpy arrays names, by its qualified name (NumPy 1 and 2)."""
    allowed = {'collections.OrderedDict': __import__('collections').OrderedDict}
    for item in _numpy_globals():
        obj, name = item if isinstance(item, tuple) else (
            item, f'{item.__module__}.{item.__qualname__}')
        allowed[name] = obj
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Plain containers and numpy arrays, nothing that could run code."""
    allowed = _pickle_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get(f'{module}.{name}')
        if found is None:
            raise pickle.UnpicklingError(f'{module}.{name} is not a numpy array type')
        return found


def _as_tensors(data):
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data if data.flags.writeable else data.copy())
    if isinstance(data, dict):
        return type(data)((k, _as_tensors(v)) for k, v in data.items())
    return data


def _load_pickle(path: str) -> dict:
    """A ``.pkl`` file of Detectron2's model zoo (``{'model': {name: array},
    '__author__': ...}``, pickled with Python's ``pickle``), read with an
    unpickler that builds numpy arrays and plain containers only (any pickle with
    :data:`TRUSTED_ENV` set); the arrays become tensors."""
    trusted = trusted_by_env()
    if trusted:
        _warn_trusted(path)
    with _clear_errors(path), open(path, 'rb') as f:
        try:
            data = (pickle.Unpickler if trusted else _ArrayUnpickler)(f, encoding='latin1').load()
        except (EOFError, ValueError, TypeError) as err:
            raise CheckpointError(f'cannot read checkpoint {path} (truncated, or not a '
                                  f'pickle of arrays?): {err}') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path} holds a {type(data).__name__}, not a dict of weights')
    return _as_tensors(data)


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


def load_url(url: str, map_location=None, filename: Optional[str] = None,
             sha256: Optional[str] = None) -> dict:
    """A checkpoint URL, downloaded once per machine into the weights cache
    (:mod:`mmbackbones.download`: atomic, one process downloads while the others
    wait, and on every use checked against ``sha256`` (a prefix is enough), the
    hash a torchvision/OpenMMLab file name publishes, or else the hash recorded at
    its first download; ``filename`` names it there), read like
    :func:`safe_load`; a downloaded file that does not read is removed.
    MMEngine's own URL loader passes ``weights_only=False``."""
    path = fetch(url, filename, sha256)
    try:
        return safe_load(path, map_location)
    except UnsafeCheckpointError:
        raise
    except CheckpointError as err:
        remove_cached(path)
        raise CheckpointError(f'{url} (downloaded to {path}) is not a readable checkpoint, '
                              f'corrupt or truncated; the file was removed. {err}') from None


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


__all__ = ['CheckpointError', 'SAFE_GLOBALS', 'safe_loading', 'safe_load', 'load_checkpoint',
           'install', 'extract_state_dict', 'normalize_prefix']
