"""Does the config feed the loaded weights the input they were trained on?

At the start of training, testing and deployment (``tools/train.py``,
``tools/test.py``, ``tools/deploy.py``, Detectron2's builders and
``tools/train_detectron2.py``), the input the data preprocessor (MMEngine) or
``MODEL.PIXEL_MEAN``/``PIXEL_STD``/``INPUT.FORMAT`` (Detectron2) gives is
compared with the input the weights expect:

* a public file by name (``mmbackbones://vovnet-detectron2/V-39-eSE``, an address
  of the catalog, ``open-mmlab://darknet53``, ``torchvision://resnet50``): the
  catalog entry's :class:`~mmbackbones.weights.input_format.InputFormat`;
* timm's own files (``Timm(weights=True)``): timm's ``pretrained_cfg``;
* a file of this project: its ``meta.input`` (releases), or the data
  preprocessor of the config it was trained with (a Runner checkpoint's
  ``meta.cfg``).

Weights that replace the others count first (``load_from``, ``MODEL.WEIGHTS``),
then the backbone's. A difference is a warning naming both inputs and the
settings that fix it; ``input_check='error'`` in a config (or
``MODEL.MMBACKBONES.INPUT_CHECK error``, or ``MMBACKBONES_INPUT_CHECK=error`` for
every tool) makes it an error, ``'off'`` silences it. Unknown weights (a file
that records nothing, a URL outside the catalog) are not guessed at.
"""
import ast
import logging
import os
import os.path as osp
from typing import Any, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log

from .checkpoint import safe_loading
from .loader import NOT_ARCH_ARGS, network
from .weights.catalog import SCHEME, WeightsEntry, catalog, for_network, is_name, lookup
from .weights.input_format import (InputFormat, from_detectron2, from_preprocessor,
                                   from_record)

CHECK_ENV = 'MMBACKBONES_INPUT_CHECK'
CHECK_CHOICES = ('warn', 'error', 'off')
#: what the weights expect and where that comes from
Expected = Tuple[InputFormat, str]


def check_mode(value: Optional[str] = None, key: str = 'input_check') -> str:
    """``value`` (a config's ``key``), else ``$MMBACKBONES_INPUT_CHECK``, else
    ``'warn'``."""
    where, given = (key, value) if value else (CHECK_ENV, os.environ.get(CHECK_ENV))
    mode = str(given or 'warn').lower()
    if mode not in CHECK_CHOICES:
        raise ValueError(f'{where}={given!r} is not a choice; valid: {CHECK_CHOICES}')
    return mode


# -- what a weights file expects ---------------------------------------------------
def entry_for(checkpoint: str) -> Optional[WeightsEntry]:
    """The catalog entry ``checkpoint`` names: a name (with or without
    ``mmbackbones://``), an entry's address, or an MMEngine scheme
    (``open-mmlab://``, ``torchvision://``) that resolves to one."""
    if not isinstance(checkpoint, str):
        return None
    if checkpoint.startswith(SCHEME) or is_name(checkpoint):
        return lookup(checkpoint) if is_name(checkpoint) else None
    url = checkpoint
    if checkpoint.startswith(('open-mmlab://', 'openmmlab://', 'torchvision://')):
        from mmengine.runner.checkpoint import get_external_models, get_torchvision_models
        scheme, _, name = checkpoint.partition('://')
        url = (get_torchvision_models() if scheme == 'torchvision'
               else get_external_models()).get(name, checkpoint)
    by_url = [e for e in catalog().values() if e.url == url]
    return by_url[0] if by_url else None


def read_meta(path: str) -> Optional[dict]:
    """The ``meta`` of a local torch checkpoint, without reading its tensors
    (mmap), safely; None when there is none or the file does not read."""
    path = osp.expanduser(path)
    if not osp.isfile(path) or path.endswith('.safetensors'):
        return None
    try:
        with safe_loading():
            checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (the load itself says what is wrong, later)
        return None
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return meta if isinstance(meta, dict) else None


def recorded_input(meta: Optional[dict]) -> Optional[InputFormat]:
    """The input a checkpoint of this project records: a release's
    ``meta.input``, or a Runner checkpoint's training config (``meta.cfg``)."""
    if not isinstance(meta, dict):
        return None
    found = from_record(meta.get('input'))
    if found is not None or not isinstance(meta.get('cfg'), str):
        return found
    try:
        cfg = _assigned_dicts(meta['cfg'])
    except (SyntaxError, ValueError):  # a config we cannot read tells nothing
        return None
    return from_preprocessor(data_preprocessor(cfg)[0])


def _assigned_dicts(text: str) -> dict:
    """The top-level ``name = dict(...)`` of a config's text (MMEngine's
    ``pretty_text``), their literal arguments only: enough for the data
    preprocessor, read in milliseconds (``Config.fromstring`` imports and
    formats, seconds)."""
    def value(node):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
            found = {}
            for keyword in node.keywords:
                try:
                    found[keyword.arg] = value(keyword.value)
                except ValueError:  # not a literal (a call, a name): not needed here
                    continue
            return found
        return ast.literal_eval(node)

    found = {}
    for statement in ast.parse(text).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                isinstance(statement.targets[0], ast.Name):
            try:
                found[statement.targets[0].id] = value(statement.value)
            except ValueError:
                continue
    return found


def input_record(checkpoint: dict) -> Optional[dict]:
    """What a release keeps as ``meta.input`` from a training checkpoint (plain
    data), or None when it records nothing."""
    found = recorded_input(checkpoint.get('meta') if isinstance(checkpoint, dict) else None)
    return found.record() if found is not None else None


def expected_of(checkpoint: Any) -> Optional[InputFormat]:
    """The input the weights ``checkpoint`` (a name, address or local path)
    were trained on, or None when nothing says."""
    if not isinstance(checkpoint, (str, os.PathLike)):
        return None
    checkpoint = os.fspath(checkpoint)
    entry = entry_for(checkpoint)
    if entry is not None:
        return entry.normalization
    if '://' in checkpoint:
        return None  # not downloaded to be looked at
    return recorded_input(read_meta(checkpoint))


def _timm_input(backbone: Mapping) -> Optional[InputFormat]:
    """timm's own file for a ``Timm`` backbone with ``weights``: its
    ``pretrained_cfg`` states the input (RGB, 0-1)."""
    weights, model_name = backbone.get('weights'), backbone.get('model_name')
    if not weights or not isinstance(model_name, str):
        return None
    try:
        import timm
        base, _, tag = model_name.partition('.')
        if isinstance(weights, str) and weights not in ('timm', 'true', 'True'):
            tag = weights
        cfg = timm.models.get_pretrained_cfg(f'{base}.{tag}' if tag else base)
        return InputFormat('RGB', '0-1', cfg.mean, cfg.std,
                           source=f"timm's pretrained_cfg of {cfg.hf_hub_id or base}")
    except Exception:  # noqa: BLE001 (timm absent or no such tag: the build says so)
        return None


def _named_weights(backbone: Mapping) -> Optional[WeightsEntry]:
    """The catalog entry of a backbone's ``weights=`` (a name, a source or a
    tag: the catalog's file for this network)."""
    weights = backbone.get('weights')
    if not isinstance(weights, str):
        return None
    entry = entry_for(weights)
    if entry is not None:
        return entry
    type_ = _type_of(backbone)
    try:
        kwargs = {k: v for k, v in backbone.items() if k not in NOT_ARCH_ARGS}
        arch = network(type_, kwargs).arch_args()
        return for_network(weights, type_,
                           lambda e: network(e.type, e.kwargs).arch_args() == arch)
    except Exception:  # noqa: BLE001 (the build reports a bad name)
        return None


def _type_of(backbone: Mapping) -> str:
    """Its class name (``type``; ``name`` as :class:`MMBackbone`'s bodies write it)."""
    return str(backbone.get('type') or backbone.get('name') or '').split('.')[-1]


def _pretrained_checkpoint(init_cfg) -> Optional[str]:
    """The checkpoint of the last ``Pretrained`` entry of an ``init_cfg``."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    found = [c.get('checkpoint') for c in cfgs if isinstance(c, Mapping)
             and c.get('type') in ('Pretrained', 'PretrainedInit')]
    return found[-1] if found else None


def backbone_expects(backbone: Optional[Mapping], where: str) -> Optional[Expected]:
    """What a backbone config's weights expect: ``init_cfg``'s ``Pretrained``
    file, ``weights=`` (timm's file for ``Timm``)."""
    if not isinstance(backbone, Mapping):
        return None
    checkpoint = _pretrained_checkpoint(backbone.get('init_cfg'))
    found = expected_of(checkpoint)
    if found is not None:
        return found, f'{where}.init_cfg checkpoint {checkpoint!r}'
    if _type_of(backbone) == 'Timm':
        found = _timm_input(backbone)
        what = f"timm's file for {backbone.get('model_name')!r}"
    else:
        entry = _named_weights(backbone)
        found = entry.normalization if entry else None
        what = entry.name if entry else ''
    return (found, f'{where}.weights ({what})') if found is not None else None


# -- MMEngine configs ----------------------------------------------------------------
def data_preprocessor(cfg: Mapping) -> Tuple[Optional[dict], str]:
    """``(preprocessor dict, where)``: ``model.data_preprocessor``, else the
    top-level ``data_preprocessor`` the Runner gives the model, else the
    preprocessor's defaults (``'default'``: no normalization, no conversion)."""
    model = cfg.get('model') or {}
    if isinstance(model.get('data_preprocessor'), Mapping):
        return dict(model['data_preprocessor']), 'model.data_preprocessor'
    if isinstance(cfg.get('data_preprocessor'), Mapping):
        return dict(cfg['data_preprocessor']), 'data_preprocessor'
    return None, 'default'


def config_expects(cfg: Mapping, checkpoint: Optional[str] = None) -> Optional[Expected]:
    """What the weights an MMEngine config ends up with expect: ``checkpoint``
    (deployment) or ``load_from`` first (they replace every weight), then the
    backbone's, then the model's own ``init_cfg``."""
    checkpoint = checkpoint or cfg.get('load_from')
    found = expected_of(checkpoint)
    if found is not None:
        return found, f'the checkpoint {checkpoint!r}'
    model = cfg.get('model') or {}
    found = backbone_expects(model.get('backbone'), 'model.backbone')
    if found is not None:
        return found
    checkpoint = _pretrained_checkpoint(model.get('init_cfg'))
    found = expected_of(checkpoint)
    return (found, f'model.init_cfg checkpoint {checkpoint!r}') if found is not None else None


def check_config(cfg: Mapping, checkpoint: Optional[str] = None) -> Optional[str]:
    """Compare an MMEngine config's data preprocessor with the input its weights
    were trained on (``checkpoint``: the weights a deployment loads). Returns
    the warning given, or None; raises ``ValueError`` with
    ``input_check='error'``."""
    mode = check_mode(cfg.get('input_check'))
    if mode == 'off':
        return None
    expected = config_expects(cfg, checkpoint)
    if expected is None:
        return None
    preprocessor, where = data_preprocessor(cfg)
    given = from_preprocessor(preprocessor)
    flag = ('to_rgb' if 'to_rgb' in (preprocessor or {}) or 'Cls' in str(
        (preprocessor or {}).get('type', '')) else 'bgr_to_rgb')
    target = expected[0]
    fix = (f"{'model.data_preprocessor' if where == 'default' else where}="
           f'dict(mean={list(target.pixel_mean)}, std={list(target.pixel_std)}, '
           f"{flag}={target.order == 'RGB'})")
    return _report(expected, given, where if where != 'default' else
                   'the data preprocessor (no mean/std: none)', fix, mode,
                   "input_check='error'", "input_check='off'")


# -- Detectron2 ----------------------------------------------------------------------
def _get(node: Any, path: str, default=None):
    """``node.A.B`` of a yacs CfgNode, an omegaconf node or nested dicts."""
    for key in path.split('.'):
        if node is None:
            return default
        node = node.get(key) if isinstance(node, Mapping) else getattr(node, key, None)
    return default if node is None else node


def _weights_expect(checkpoint: Any, where: str) -> Optional[Expected]:
    found = expected_of(checkpoint) if checkpoint else None
    return (found, f'{where} {checkpoint!r}') if found is not None else None


def detectron2_expects(cfg: Any) -> Optional[Expected]:
    """What the weights of a Detectron2 yacs config expect (see
    :func:`check_detectron2_config`)."""
    return (_weights_expect(_get(cfg, 'MODEL.WEIGHTS'), 'MODEL.WEIGHTS')
            or _weights_expect(_get(cfg, 'MODEL.MMBACKBONES.PRETRAINED'),
                               'MODEL.MMBACKBONES.PRETRAINED')
            or backbone_expects(dict(_get(cfg, 'MODEL.MMBACKBONES.ARGS', {}),
                                     type=_get(cfg, 'MODEL.MMBACKBONES.TYPE', '')),
                                'MODEL.MMBACKBONES.ARGS'))


def check_detectron2_config(cfg: Any) -> Optional[str]:
    """Detectron2's ``MODEL.PIXEL_MEAN``, ``MODEL.PIXEL_STD`` and
    ``INPUT.FORMAT`` (its defaults where a key is absent) against the input of
    ``MODEL.WEIGHTS`` when known, else of ``MODEL.MMBACKBONES.PRETRAINED``, else
    of the backbone's own ``ARGS`` (``Timm``'s ``weights``, an ``init_cfg``).
    ``cfg``: a yacs CfgNode or the same as nested dicts."""
    key = 'MODEL.MMBACKBONES.INPUT_CHECK'
    mode = check_mode(_get(cfg, key), key)
    if mode == 'off':
        return None
    expected = detectron2_expects(cfg)
    if expected is None:
        return None
    given = from_detectron2(_get(cfg, 'MODEL.PIXEL_MEAN'), _get(cfg, 'MODEL.PIXEL_STD'),
                            _get(cfg, 'INPUT.FORMAT'))
    target = expected[0]
    fix = (f'MODEL.PIXEL_MEAN {list(target.pixel_mean)} MODEL.PIXEL_STD '
           f'{list(target.pixel_std)} INPUT.FORMAT {target.order}')
    return _report(expected, given, 'MODEL.PIXEL_MEAN/PIXEL_STD and INPUT.FORMAT', fix, mode,
                   'MODEL.MMBACKBONES.INPUT_CHECK error', 'MODEL.MMBACKBONES.INPUT_CHECK off')


def check_lazy_config(cfg: Any) -> Optional[str]:
    """A Detectron2 LazyConfig: ``model.pixel_mean``, ``model.pixel_std`` and
    ``model.input_format`` against ``train.init_checkpoint`` when known, else
    the ``Pretrained`` file of its mmbackbones backbone
    (``model.backbone[.bottom_up].body``)."""
    mode = check_mode()
    if mode == 'off':
        return None
    model = _get(cfg, 'model')
    body = _get(model, 'backbone.bottom_up.body') or _get(model, 'backbone.body')
    expected = _weights_expect(_get(cfg, 'train.init_checkpoint'), 'train.init_checkpoint')
    if expected is None and body is not None:
        expected = backbone_expects({k: body[k] for k in body}, 'the backbone body')
    if expected is None:
        return None
    given = from_detectron2(_get(model, 'pixel_mean'), _get(model, 'pixel_std'),
                            _get(model, 'input_format'))
    target = expected[0]
    fix = (f'model.pixel_mean={list(target.pixel_mean)}, model.pixel_std='
           f"{list(target.pixel_std)}, model.input_format='{target.order}' and the "
           f"mappers' image_format='{target.order}'")
    return _report(expected, given, 'model.pixel_mean/pixel_std/input_format', fix, mode,
                   f'{CHECK_ENV}=error', f'{CHECK_ENV}=off')


# -- the verdict -----------------------------------------------------------------------
def _report(expected: Expected, given: Optional[InputFormat], where: str, fix: str,
            mode: str, strict: str, silence: str) -> Optional[str]:
    target, origin = expected
    if given is not None and given.same_input(target):
        return None
    gives = given.describe_pixels() if given is not None else 'another input format'
    named = f' ({target.label})' if target.label != target.describe() else ''
    message = (
        f'input check: the weights of {origin} were trained on '
        f'{target.describe_pixels()}{named}, '
        f'but {where} gives {gives}: the network would see an input it was not '
        f'trained on. To feed it what it was trained on: {fix}. '
        + ('' if mode == 'error' else
           f'{strict}{"" if CHECK_ENV in strict else f" (or {CHECK_ENV}=error)"} makes '
           f'this an error; {silence} silences it.'))
    if mode == 'error':
        raise ValueError(message.strip())
    print_log(message.strip(), logger='current', level=logging.WARNING)
    return message.strip()
