"""The one way weights enter a model.

Every door (``init_cfg=dict(type='Pretrained', ...)`` in any form,
:func:`load_weights`, ``Timm(pretrained_file=...)``, ``weights=`` names, the
Detectron2 node's ``PRETRAINED``, ``tools/test.py``, ``tools/train.py
--load-from``, ``tools/convert_to_detectron2.py``) ends in :func:`load_weights`,
which

* reads the file safely (:mod:`mmbackbones.checkpoint`), downloading a named
  public file first (:mod:`mmbackbones.download`, :mod:`mmbackbones.weights.catalog`);
* compares the network the file names (a release's ``meta.backbone``, a public
  layout's or a named file's network) with the model's, argument by argument
  (activation and slope, ``residual``, ``ese``, ``stem_stride``, depth, ...);
* converts a public key layout (:mod:`mmbackbones.weights`) where needed;
* loads strictly: a missing, unexpected (outside a known classifier head) or
  mis-shaped tensor is a :class:`~mmbackbones.CheckpointError` naming it.

Layers, bottom up, each importing only those below: ``checkpoint`` (reading,
safety) and ``download``; ``weights`` (layouts, catalog); this module; the
models; ``api``.
"""
import json
import logging
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import nn

from .checkpoint import (PathLike, extract_state_dict, load_checkpoint, load_url,
                         normalize_prefix)
from .download import expected_hash_prefix, file_sha256
from .errors import CheckpointError
from .registry import MODELS
from .weights import (ALL_CONSTANTS, LAYOUTS, WRAPPER_PREFIXES, ConvertedWeights, Layout,
                      match_layout)
from .weights.catalog import (CAFFE_RESNET_HASHES, SCHEME, WeightsEntry, is_name, lookup,
                              strip_scheme)

#: our torchvision ports whose keys are torchvision's ResNet keys, which
#: caffe-style ResNet files share
RESNET_TYPES = ('ResNet', 'ResNeXt', 'WideResNet')
#: ``layout=`` values for a ResNet file whose keys cannot tell the two styles apart
CAFFE_LAYOUT, PYTORCH_LAYOUT = 'caffe', 'pytorch'
PRETRAINED_TYPES = ('Pretrained', 'PretrainedInit')


@dataclass
class LoadReport:
    loaded: int
    source: str
    set_aside: List[str] = field(default_factory=list)
    layout: Optional[str] = None


@dataclass
class Source:
    """A read checkpoint and what is known of where it came from."""
    name: str
    checkpoint: dict
    path: Optional[str] = None
    entry: Optional[WeightsEntry] = None

    @property
    def recorded_network(self) -> Optional[dict]:
        meta = self.checkpoint.get('meta') if isinstance(self.checkpoint, dict) else None
        backbone = meta.get('backbone') if isinstance(meta, dict) else None
        return backbone if isinstance(backbone, dict) and backbone.get('type') else None


def read_source(checkpoint: Union[PathLike, dict], map_location='cpu') -> Source:
    """A checkpoint from a dict, a path or URL MMEngine resolves, or a public
    file's name (``'vovnet-detectron2/V-39-eSE'``, ``'mmbackbones://...'``),
    downloaded into the cache on first use."""
    if isinstance(checkpoint, dict):
        return Source('<state dict>', checkpoint)
    name = os.fspath(checkpoint)
    if name.startswith(SCHEME) or is_name(name):
        entry = lookup(name)
        return Source(strip_scheme(name), load_url(entry.url, map_location,
                                                   entry.cache_name(), entry.sha256),
                      entry=entry)
    local = osp.expanduser(name)
    return Source(name, load_checkpoint(name, map_location),
                  local if osp.isfile(local) else None)


def load_named(name: str, map_location='cpu') -> dict:
    """MMEngine's ``CheckpointLoader`` for ``mmbackbones://<name>``: the public
    file, downloaded once, read safely (as the raw checkpoint)."""
    return read_source(name, map_location).checkpoint


def install() -> None:
    """Register ``mmbackbones://`` with MMEngine's ``CheckpointLoader``, so the
    names work in any ``init_cfg``/``load_from``, not only in our backbones."""
    from mmengine.runner.checkpoint import CheckpointLoader
    load_named.mmbackbones_safe = True
    CheckpointLoader.register_scheme(SCHEME, load_named, force=True)


# -- which network a file holds ------------------------------------------------
_NETWORKS: Dict[str, nn.Module] = {}


def network(type_: str, kwargs: dict) -> nn.Module:
    """``type_(**kwargs)`` on the meta device (no memory, no init), cached."""
    type_ = type_[len('mmbackbones.'):] if type_.startswith('mmbackbones.') else type_
    key = json.dumps([type_, kwargs], sort_keys=True, default=repr)
    if key not in _NETWORKS:
        if type_ not in MODELS.module_dict:
            raise CheckpointError(f'the file names a {type_}, which is not an mmbackbones '
                                  f'backbone; known: {sorted(MODELS.module_dict)}')
        with torch.device('meta'):
            _NETWORKS[key] = MODELS.get(type_)(**kwargs)
    return _NETWORKS[key]


def layout_shapes(layout: Layout) -> Dict[str, torch.Size]:
    return {k: v.shape for k, v in network(layout.type, layout.kwargs).state_dict().items()}


def recorded_arch(record: dict) -> Tuple[str, dict]:
    """``(type, arch_args)`` of a ``meta.backbone`` record: ``{'type', 'arch'}``
    as training writes it, or ``{'type', **constructor arguments}``. An ``arch``
    written before norms were recorded in full (``norm_eps`` alone) takes the
    record's own ``norm_cfg`` argument where it has one."""
    type_ = record['type'].split('.')[-1]
    if isinstance(record.get('arch'), dict):
        arch = dict(record['arch'])
        if 'norm_cfg' not in arch and 'norm_cfg' in record:
            arch.pop('norm_eps', None)
            arch['norm_cfg'] = record['norm_cfg']
        return type_, arch
    kwargs = {k: v for k, v in record.items() if k != 'type'}
    return type_, network(type_, kwargs).arch_args()


def check_network(model: nn.Module, type_: str, arch: dict, what: str) -> None:
    """``model`` must compute ``type_`` with ``arch`` (its ``arch_args()``):
    else an error naming both and the config arguments that fix it. Both sides
    are compared normalised (defaults filled in, ``inplace`` and ``momentum``
    ignored, lists and tuples alike); an argument only one side records is not
    compared (records of earlier versions)."""
    ours = type(model).__name__
    if type_ != ours:
        wanted = _fix_args(arch)
        raise CheckpointError(
            f'{what} holds a {type_}({wanted}); this model is a {_describe(model)}. '
            f"Build backbone=dict(type='mmbackbones.{type_}', {wanted}) to load it.")
    if hasattr(model, 'normalize_arch'):
        arch = model.normalize_arch(arch)
    mine = model.arch_args() if hasattr(model, 'arch_args') else {}
    differ = [k for k, v in arch.items() if k in mine and not _agrees(k, mine[k], v)]
    if differ:
        have = _fix_args({k: mine[k] for k in differ})
        need = _fix_args({k: arch[k] for k in differ})
        raise CheckpointError(
            f'{what} holds a {type_} with {need}; this model has {have}, and would '
            f'compute something else with these weights. Set {need} in the config '
            f"(backbone=dict(type='mmbackbones.{type_}', {need}, ...)).")


def _agrees(key: str, mine, theirs) -> bool:
    if key == 'norm_cfg' and isinstance(theirs, dict) and 'type' not in theirs:
        # an earlier record's norm_eps alone: the eps is all it can be held to
        return isinstance(mine, dict) and mine.get('eps') == theirs.get('eps')
    return plain_record(mine) == plain_record(theirs)


def _fix_args(arch: dict) -> str:
    parts = []
    for key, value in arch.items():
        if key == 'norm_cfg' and isinstance(value, dict) and 'type' not in value:
            value = dict(type='BN', **value)  # an earlier record's norm_eps
        elif key == 'norm_eps':  # not normalised: an earlier record as read
            if value is None:
                continue
            key, value = 'norm_cfg', dict(type='BN', eps=value)
        parts.append(f'{key}={value!r}')
    return ', '.join(parts)


def _describe(model: nn.Module) -> str:
    if hasattr(model, 'arch_args'):
        return f'{type(model).__name__}({_fix_args(model.arch_args())})'
    return type(model).__name__


#: where a model keeps a backbone of ours: itself, a detector's/classifier's
#: ``backbone``, Detectron2's ``backbone.bottom_up.body`` (under an FPN) or ``backbone.body``
BACKBONE_PATHS = ('', 'backbone', 'backbone.bottom_up.body', 'backbone.body')


def backbone_path(model: nn.Module) -> Optional[str]:
    """The state-dict prefix of the backbone of ours in ``model`` (``''`` when
    ``model`` is one, ``'backbone.'``, ``'backbone.bottom_up.body.'``), or None."""
    for path in BACKBONE_PATHS:
        module = model
        for part in filter(None, path.split('.')):
            module = getattr(module, part, None)
        if module is not None and hasattr(module, 'arch_args'):
            return path + '.' if path else ''
    return None


def backbone_of(model: nn.Module) -> Optional[nn.Module]:
    """The backbone of ours in a model: itself, or a detector's/classifier's
    ``backbone`` (Detectron2's ``backbone.bottom_up.body`` too)."""
    path = backbone_path(model)
    return None if path is None else model.get_submodule(path.rstrip('.'))


def check_entry(model: nn.Module, entry: WeightsEntry, what: str) -> None:
    """A named file loads only into the network it holds: ``model``'s backbone
    (or ``model``, a backbone) must be ``entry``'s, argument by argument."""
    backbone = backbone_of(model)
    check_network(model if backbone is None else backbone, entry.type,
                  network(entry.type, entry.kwargs).arch_args(), what=f'{what} ({entry.url})')


# -- caffe- vs pytorch-style ResNet ---------------------------------------------
def caffe_origin(source: Source) -> Optional[str]:
    """Why ``source`` is a caffe-style ResNet, or None: its name says so
    (``open-mmlab://...caffe``, ``*_caffe*``, ``*_msra*``), or it is one of the
    published caffe files (by the hash in its name or of its content)."""
    name = osp.basename(source.name).lower()  # the file's name, not its folders
    if 'caffe' in name or '_msra' in name:
        return f'its name {source.name!r} says caffe-style'
    for digest in filter(None, (expected_hash_prefix(name),
                                file_sha256(source.path) if source.path else None)):
        for prefix, published in CAFFE_RESNET_HASHES.items():
            if digest.startswith(prefix):
                return f'it is {published} (SHA-256 {prefix}...)'
    return None


def refuse_caffe(model: nn.Module, source: Source, layout: Optional[str]) -> Optional[str]:
    """A ResNet file is caffe- or pytorch-style by what its source names; a
    caffe-style one loads only into a ``style='caffe'`` network. Returns the
    layout the file is taken as (None: its keys tell)."""
    if type(model).__name__ not in RESNET_TYPES or source.recorded_network or source.entry:
        return layout
    if layout == PYTORCH_LAYOUT:
        return None
    why = 'layout=\'caffe\' was given' if layout == CAFFE_LAYOUT else caffe_origin(source)
    if why and getattr(model, 'style', 'pytorch') != 'caffe':
        raise CheckpointError(
            f'{source.name} is a caffe-style ResNet ({why}): the stride sits on the first '
            f'1x1 conv of each downsampling block and the input is BGR 0-255, while this '
            f"{type(model).__name__} is torchvision's (pytorch-style) network, with the same "
            f'keys and shapes. Loading it would compute other features. Build '
            f"{type(model).__name__}(style='caffe') (or MMDetection's ResNet(style='caffe')) "
            f"for it; if the file is in fact pytorch-style, pass layout='pytorch'.")
    return None if layout == CAFFE_LAYOUT else layout


def _network_of(converted: ConvertedWeights, model: nn.Module,
                entry: Optional[WeightsEntry]) -> ConvertedWeights:
    """The network a converted file holds: a named file's, else its layout's; a
    ResNet layout with torchvision's keys does not tell the style, which
    :func:`refuse_caffe` settled: the model's."""
    if entry is not None:
        converted.type, converted.kwargs = entry.type, dict(entry.kwargs)
    elif (converted.type in RESNET_TYPES and 'style' not in converted.kwargs
          and getattr(model, 'style', 'pytorch') != 'pytorch'):
        converted.kwargs = dict(converted.kwargs, style=model.style)
    return converted


# -- loading ---------------------------------------------------------------------
def load_weights(model: nn.Module, checkpoint: Union[PathLike, dict],
                 prefix: Optional[str] = None, map_location='cpu',
                 layout: Optional[str] = None,
                 logger: Union[str, logging.Logger] = 'current') -> LoadReport:
    """Load ``checkpoint`` into ``model``, exactly, or raise a
    :class:`~mmbackbones.CheckpointError` that says why.

    ``checkpoint``: a loaded dict, a path or URL MMEngine resolves
    (``torchvision://``, ``open-mmlab://``, ...), or a public file's name
    (``'vovnet-detectron2/V-39-eSE'``, ``'mmbackbones://timm/ese_vovnet39b.ra_in1k'``;
    ``tools/convert_weights.py --list``). ``prefix`` (``'backbone.'`` or
    ``'backbone'``) selects one submodule's keys. ``layout`` names the file's key
    layout (``tools/convert_weights.py --list``), or for a ResNet file
    ``'pytorch'``/``'caffe'``, where its keys cannot tell.

    ``model`` may be a backbone or a whole detector/classifier; the network a
    file records (``meta.backbone``) or implies (a public layout) must be the
    model's backbone, argument by argument. A whole detector's file whose
    backbone is in a public layout (MMDetection's, Detectron2's or
    vovnet-detectron2's COCO detectors, :mod:`mmbackbones.weights.detectors`)
    loads into a detector of ours: the backbone's part converted, every other
    tensor by name, strictly.
    """
    if isinstance(checkpoint, str) and (checkpoint.startswith(SCHEME) or is_name(checkpoint)):
        # a named file for another network: refused before fetching
        check_entry(model, lookup(checkpoint), strip_scheme(checkpoint))
    return load_source(model, read_source(checkpoint, map_location), prefix, layout, logger)


def load_source(model: nn.Module, source: Source, prefix: Optional[str] = None,
                layout: Optional[str] = None,
                logger: Union[str, logging.Logger] = 'current',
                keep: Sequence[str] = ()) -> LoadReport:
    """:func:`load_weights` of a checkpoint already read (a Runner's). ``keep``:
    tensors of the model that keep their values, whatever the file holds for
    them (``load_from_reinit``, :mod:`mmbackbones.engine.finetune`)."""
    at = backbone_path(model)
    backbone = backbone_of(model)
    target = model if backbone is None else backbone  # what a file's network must be
    recorded = source.recorded_network
    if recorded and backbone is not None:
        check_network(backbone, *recorded_arch(recorded), what=source.name)
    entry = source.entry or (lookup(source.name) if is_name(source.name) else None)
    if entry is not None:  # a named file (load_from='mmbackbones://...' too)
        check_entry(model, entry, source.name)
        layout = layout or entry.layout
        prefix = None  # the entry knows its file: no prefix to select
    state_dict = _without_wrapper(_tensors(extract_state_dict(source.checkpoint)))
    prefix = normalize_prefix(prefix)
    layout = refuse_caffe(target, source, layout)
    if layout in (None, PYTORCH_LAYOUT):
        try:
            selected = _select_prefix(state_dict, prefix, source.name) if prefix else state_dict
            return _load_exactly(model, selected, source.name, prefix, logger, keep=keep)
        except CheckpointError as mismatch:
            converted = None if (entry or recorded) else _public_layout(
                model, state_dict, source.name)
            if converted is None:
                raise _with_prefix_hint(mismatch, state_dict, prefix) from None
    else:
        converted = match_layout(state_dict, layout_shapes, layout=layout, name=source.name)
    converted = _network_of(converted, target, entry)
    check_network(target, converted.type, network(converted.type, converted.kwargs).arch_args(),
                  what=f'{source.name} ({converted.source} layout)')
    if at:  # a whole detector or classifier of ours
        return _load_whole(model, at, converted, state_dict, source.name, logger, keep)
    return _load_exactly(model, converted.state_dict, source.name, None, logger,
                         note=f'converted from the {converted.source} layout',
                         set_aside=converted.set_aside, layout=converted.source)


def _load_whole(model: nn.Module, at: str, converted: ConvertedWeights,
                state_dict: Dict[str, torch.Tensor], source: str, logger,
                keep: Sequence[str]) -> LoadReport:
    """A whole model's file whose backbone is in a public layout: the backbone's
    part (converted, under ``at``) and every other tensor by its own name, all
    strictly; only the framework's constants (:data:`ALL_CONSTANTS`: Detectron2's
    pixel statistics and anchors) are set aside, as the framework does."""
    if not converted.outside:
        raise CheckpointError(
            f'{source} holds only a {converted.type} backbone ({converted.source} layout), '
            f'not a whole {type(model).__name__}: its other tensors would stay random. '
            f"Load it into the backbone (init_cfg=dict(type='Pretrained', checkpoint=...) of "
            f"the backbone's config, or load_weights(model.{at.rstrip('.')}, ...)).")
    ours = model.state_dict()
    constants = [k for k in converted.outside if k not in ours
                 and any(re.fullmatch(p, k) for p in ALL_CONSTANTS)]
    whole = {at + k: v for k, v in converted.state_dict.items()}
    whole.update({k: state_dict[k] for k in converted.outside if k not in constants})
    head = [k for k in converted.set_aside if k not in converted.outside]
    return _load_exactly(model, whole, source, None, logger, keep=keep,
                         note=f'its backbone converted from the {converted.source} layout',
                         set_aside=head + constants, layout=converted.source)


def _tensors(state_dict: dict) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def _without_wrapper(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for wrapper in WRAPPER_PREFIXES:  # DDP's and EMA's ``module.``
        if state_dict and all(k.startswith(wrapper) for k in state_dict):
            return {k[len(wrapper):]: v for k, v in state_dict.items()}
    return state_dict


def _public_layout(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                   name: str) -> Optional[ConvertedWeights]:
    """The public layout ``state_dict`` is exactly in, or None when it is in
    none (then the plain key mismatch is the clearer error)."""
    try:
        return match_layout(state_dict, layout_shapes, name=name)
    except CheckpointError:
        return None


def _with_prefix_hint(error: CheckpointError, state_dict: Dict[str, torch.Tensor],
                      prefix: Optional[str]) -> CheckpointError:
    roots = sorted({k.split('.', 1)[0] for k in state_dict})
    if prefix or 'backbone' not in roots:
        return error
    return CheckpointError(f"{error} The file's keys start with {roots}: it is a whole "
                           f"classifier or detector; pass prefix='backbone.' to load its "
                           f'backbone.')


def _select_prefix(state_dict: Dict[str, torch.Tensor], prefix: str,
                   source: str) -> Dict[str, torch.Tensor]:
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        roots = sorted({k.split('.', 1)[0] + '.' for k in state_dict})
        raise CheckpointError(f'prefix {prefix!r} matches none of the {len(state_dict)} '
                              f'keys of {source}; its keys start with {roots}')
    return selected


def _load_exactly(model: nn.Module, state_dict: Dict[str, torch.Tensor], source: str,
                  prefix: Optional[str], logger, note: str = '',
                  set_aside: Optional[List[str]] = None,
                  layout: Optional[str] = None, keep: Sequence[str] = ()) -> LoadReport:
    name = type(model).__name__
    model.__dict__.pop('dropped_head_keys', None)  # set again by a torchvision port's hook
    if keep:
        keep = set(keep)
        state_dict = {k: v for k, v in state_dict.items() if k not in keep}
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches, one line each
        lines = str(err).strip().splitlines()
        more = f'\n\t... and {len(lines) - 7} more' if len(lines) > 7 else ''
        raise CheckpointError(f'{source} does not fit {name} (another architecture?): '
                              + '\n'.join(lines[1:7]) + more) from None
    set_aside = list(set_aside or []) + list(getattr(model, 'dropped_head_keys', []))
    missing = [k for k in result.missing_keys if k not in keep]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f'{source} does not fit {name}'
            + (f' (prefix {prefix!r})' if prefix else '') + ': '
            f'{len(missing)} tensors of the model are missing from it '
            f'{_preview(missing)}, and {len(result.unexpected_keys)} of its '
            f'keys are not in the model {_preview(result.unexpected_keys)}. Is it a '
            f'checkpoint of another architecture?')
    loaded = len(model.state_dict()) - len(keep)
    print_log(f'loaded {loaded} tensors into {name} from {source}'
              + (f' (prefix {prefix!r})' if prefix else '')
              + (f' ({note})' if note else '')
              + (f'; set aside {_preview(set_aside)}' if set_aside else '')
              + (f'; {len(keep)} kept their initialisation' if keep else ''),
              logger=logger)
    return LoadReport(loaded=loaded, source=source, set_aside=set_aside, layout=layout)


def convert(source: Union[PathLike, dict], layout: Optional[str] = None) -> ConvertedWeights:
    """A public checkpoint (path, URL, name or dict) in our keys, with the network
    that computes it (``tools/convert_weights.py``)."""
    read = read_source(source, 'cpu')
    if read.entry is not None:
        layout = layout or read.entry.layout
        if layout is None:  # a torchvision file: the port's own keys
            model = network(read.entry.type, read.entry.kwargs)
            state_dict = {k: v for k, v in _tensors(extract_state_dict(read.checkpoint)).items()
                          if not k.startswith(('fc.', 'classifier.'))}
            return ConvertedWeights(read.name, read.entry.type, dict(read.entry.kwargs),
                                    state_dict, set_aside=sorted(set(extract_state_dict(
                                        read.checkpoint)) - set(state_dict)))
    return match_layout(_tensors(extract_state_dict(read.checkpoint)), layout_shapes,
                        layout=layout, name=read.name)


# -- init_cfg --------------------------------------------------------------------
def split_pretrained(init_cfg) -> tuple:
    """``(pretrained cfgs, other cfgs)`` of an ``init_cfg`` dict or list."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg] if init_cfg else []
    pretrained = [c for c in cfgs if isinstance(c, dict) and c.get('type') in PRETRAINED_TYPES]
    return pretrained, [c for c in cfgs if not any(c is p for p in pretrained)]


#: arguments of a backbone config that do not change what a network computes
NOT_ARCH_ARGS = ('type', 'init_cfg', 'out_indices', 'frozen_stages', 'norm_eval', 'with_cp',
                 'drop_path_rate', 'pretrained_file', 'weights')


def network_record(backbone: nn.Module, config: Optional[dict] = None) -> dict:
    """What a checkpoint records of its network (``meta.backbone``): the type,
    the config's arguments that shape it (to rebuild it) and ``arch_args()``
    (what :func:`load_weights` compares)."""
    args = {k: v for k, v in (config or {}).items() if k not in NOT_ARCH_ARGS}
    return dict(plain_record(args), type=type(backbone).__name__,
                arch=plain_record(backbone.arch_args()))


def plain_record(value: object) -> object:
    """Config values as plain dicts/lists, which a weights-only load accepts."""
    if isinstance(value, dict):
        return {str(k): plain_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_record(v) for v in value]
    return value


def recorded_kwargs(record: dict) -> Tuple[str, dict]:
    """``(type, constructor arguments)`` that rebuild a recorded network."""
    return (record['type'].split('.')[-1],
            {k: v for k, v in record.items() if k not in ('type', 'arch')})


#: backbone arguments that load weights when the backbone is built (Timm's)
WEIGHT_ARGS = ('pretrained_file', 'weights')


def without_weights(backbone_cfg: dict) -> dict:
    """A backbone config that builds the same network without reading any
    weights: sizing and timing (``tools/get_flops.py``, ``tools/benchmark.py``)
    need none, and must not need the file or the network."""
    cfg = {k: v for k, v in backbone_cfg.items() if k not in WEIGHT_ARGS}
    if cfg.get('init_cfg'):
        _, others = split_pretrained(cfg['init_cfg'])
        cfg['init_cfg'] = others or None
    return cfg


def load_pretrained_cfg(model: nn.Module, cfg: dict) -> LoadReport:
    """One ``dict(type='Pretrained', checkpoint=..., prefix=..., layout=...)``."""
    if not cfg.get('checkpoint'):
        raise CheckpointError(f"init_cfg {dict(cfg)} has no checkpoint=")
    return load_weights(model, cfg['checkpoint'], prefix=cfg.get('prefix'),
                        map_location=cfg.get('map_location', 'cpu'), layout=cfg.get('layout'))


def _preview(keys: List[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return f'[{shown}{", ..." if len(keys) > limit else ""}]'


__all__ = ['LoadReport', 'load_weights', 'read_source', 'check_network', 'check_entry', 'convert',
           'split_pretrained', 'load_pretrained_cfg', 'install', 'network']
