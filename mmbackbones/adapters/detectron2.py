"""Any mmbackbones backbone as a ``detectron2.modeling.Backbone``.

Importing this module registers three builders in Detectron2's ``BACKBONE_REGISTRY``:

* ``build_mmbackbones_backbone``               the backbone alone;
* ``build_mmbackbones_fpn_backbone``           backbone + FPN (P2-P6), for Faster R-CNN;
* ``build_mmbackbones_retinanet_fpn_backbone`` backbone + FPN with P6/P7, for RetinaNet.

They read ``cfg.MODEL.MMBACKBONES`` (added by :func:`add_mmbackbones_config`):
``TYPE`` and ``ARGS`` (the backbone's constructor arguments), ``PRETRAINED`` (its
ImageNet file, loaded strictly at build), ``OUT_FEATURES``
(``res1``..``res5`` or ``c1``..``c5``, see :mod:`mmbackbones.adapters.naming`),
``NORM`` (``FrozenBN`` by default as for Detectron2's ResNet, ``BN``, ``SyncBN``,
``GN``); freezing follows ``cfg.MODEL.BACKBONE.FREEZE_AT``
(1 = stem, 2 = stem + res2, as for Detectron2's ResNet). For LazyConfig use
:class:`MMBackbone` directly (see configs/detectron2/).
"""
from collections.abc import Mapping
from typing import Dict, Optional, Sequence

try:
    from detectron2.checkpoint import DetectionCheckpointer
    from fvcore.common.checkpoint import _IncompatibleKeys
    from detectron2.config import CfgNode
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import BACKBONE_REGISTRY, Backbone
    from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
except ImportError as err:  # pragma: no cover - exercised where Detectron2 is absent
    raise ImportError(
        'mmbackbones.adapters.detectron2 needs Detectron2, which is not on PyPI: build it '
        'from its source (https://github.com/facebookresearch/detectron2, '
        '`pip install --no-build-isolation <clone>`). mmbackbones itself does not need it.'
    ) from err

import torch

from ..api import build_backbone
from ..checkpoint import PICKLE_SUFFIX, safe_load
from ..download import fetch
from ..engine.finetune import DETECTRON2_OPTION, fine_tune_keys
from ..errors import CheckpointError
from ..input_check import check_detectron2_config
from ..loader import LoadReport, Source, check_entry, load_source, load_weights
from ..weights.catalog import SCHEME, is_name, lookup, strip_scheme
from ..models.base import BaseBackbone
from .naming import (deepest_feature, feature_levels, freeze_at_to_frozen_stages,
                     norm_cfg_from_detectron2, output_shapes, size_divisibility)


class MMBackbone(Backbone):
    """Wraps ``body`` (an mmbackbones backbone, or the kwargs to build one) and
    returns ``{name: feature}`` for ``out_features``. A ``Pretrained`` entry in the
    body's ``init_cfg`` is loaded here, strictly (Detectron2 never calls
    ``init_weights()``); ``MODEL.WEIGHTS`` may still overwrite it later."""

    def __init__(self, body, out_features: Sequence[str] = ('res2', 'res3', 'res4', 'res5')):
        super().__init__()
        if isinstance(body, Mapping):  # a dict, or a LazyConfig's DictConfig
            body = build_backbone(**plain(body))
        if not isinstance(body, BaseBackbone):
            raise TypeError(f'body must be an mmbackbones backbone, got {type(body).__name__}')
        body.out_indices = feature_levels(out_features)
        if body.init_cfg:
            body.init_weights()
        self.body = body
        self._out_features = list(out_features)
        shapes = output_shapes(body.level_channels, self._out_features)
        self._out_feature_channels = {k: c for k, (c, _) in shapes.items()}
        self._out_feature_strides = {k: s for k, (_, s) in shapes.items()}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.body(x)))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name],
                                stride=self._out_feature_strides[name])
                for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return size_divisibility(self._out_features)

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {'size_divisibility': self.size_divisibility}


def plain(node):
    """A yacs CfgNode or an omegaconf DictConfig/ListConfig as plain dicts and lists."""
    if isinstance(node, Mapping):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [plain(value) for value in node]
    return node


def add_mmbackbones_config(cfg: CfgNode) -> CfgNode:
    """Add ``MODEL.MMBACKBONES`` with its defaults (VoVNet-39, res2..res5, FrozenBN:
    with ~2 images per GPU, BN statistics would train on too few samples)."""
    node = CfgNode(new_allowed=True)
    node.TYPE = 'VoVNet'
    # empty (VoVNet's own default is depth 39): a config's ARGS merge into this node,
    # so a default key would reach every other backbone (Timm takes no depth)
    node.ARGS = CfgNode(dict(), new_allowed=True)
    node.OUT_FEATURES = ['res2', 'res3', 'res4', 'res5']
    node.NORM = 'FrozenBN'
    node.GN_GROUPS = 32
    # ImageNet weights of the backbone, loaded strictly when the model is built:
    # a release of ours, or a public file (mmbackbones.weights); MODEL.WEIGHTS loads after
    node.PRETRAINED = ''
    node.PRETRAINED_PREFIX = 'backbone.'
    # PIXEL_MEAN/PIXEL_STD/INPUT.FORMAT against the input the weights were trained on:
    # '' ($MMBACKBONES_INPUT_CHECK, else 'warn'), 'warn', 'error' or 'off'
    node.INPUT_CHECK = ''
    # fine-tuning to another class count: the modules (or tensors) that MODEL.WEIGHTS
    # leaves at their initialisation, e.g. ['roi_heads.box_predictor.cls_score'];
    # every other tensor loads strictly (not applied when resuming our own checkpoint)
    node.WEIGHTS_REINIT = []

    cfg.MODEL.MMBACKBONES = node
    return cfg


def _mm_backbone(cfg: CfgNode, out_features: Optional[Sequence[str]] = None) -> MMBackbone:
    node = cfg.MODEL.MMBACKBONES
    check_detectron2_config(cfg)  # at every build: training, evaluation, export
    args = plain(node.ARGS)
    args.setdefault('norm_cfg', norm_cfg_from_detectron2(node.NORM, node.GN_GROUPS))
    if node.get('PRETRAINED'):
        args['init_cfg'] = dict(type='Pretrained', checkpoint=node.PRETRAINED,
                                prefix=node.PRETRAINED_PREFIX)
    args['frozen_stages'] = freeze_at_to_frozen_stages(cfg.MODEL.BACKBONE.FREEZE_AT)
    body = build_backbone(node.TYPE, **args)
    return MMBackbone(body, out_features or node.OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_mmbackbones_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> MMBackbone:
    return _mm_backbone(cfg)


def _fpn(cfg: CfgNode, top_block_for) -> FPN:
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    bottom_up = _mm_backbone(cfg, in_features)
    return FPN(bottom_up=bottom_up, in_features=in_features,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=top_block_for(bottom_up), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_mmbackbones_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    return _fpn(cfg, lambda bottom_up: LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_mmbackbones_retinanet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    def p6p7(bottom_up: MMBackbone):
        # P6 from the deepest input (C5), whatever its name (res5, c5, ...)
        deepest = deepest_feature(bottom_up._out_features)
        return LastLevelP6P7(bottom_up.output_shape()[deepest].channels,
                             cfg.MODEL.FPN.OUT_CHANNELS, in_feature=deepest)
    return _fpn(cfg, p6p7)


def deepest_channels(body: Mapping) -> int:
    """Channels of the deepest level of the backbone ``body`` describes (the
    kwargs of :class:`MMBackbone`), from metadata: built on the meta device."""
    with torch.device('meta'):
        return build_backbone(**plain(body)).level_channels[-1]


def find_mm_backbone(model: torch.nn.Module) -> MMBackbone:
    found = [m for m in model.modules() if isinstance(m, MMBackbone)]
    if len(found) != 1:
        raise ValueError(f'expected one MMBackbone in the model, found {len(found)}')
    return found[0]


def load_pretrained(model: torch.nn.Module, checkpoint: str,
                    prefix: Optional[str] = 'backbone.') -> LoadReport:
    """Load one of our published (or training) MMPretrain checkpoints into the
    mmbackbones backbone of a Detectron2 model, strictly: every backbone tensor
    must be loaded, or :class:`~mmbackbones.CheckpointError` says what did not match."""
    return load_weights(find_mm_backbone(model).body, checkpoint, prefix=prefix)


class StrictDetectionCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer (``MODEL.WEIGHTS``, ``--resume``, ``--eval-only``),
    except that

    * every tensor of the mmbackbones backbone must load. Detectron2 only logs the
      keys it could not load, so a file in another key layout (e.g.
      ``convert_to_detectron2.py --arch plain`` for an FPN model) would leave the
      backbone randomly initialised without an error. The heads of a file in our
      keys keep Detectron2's rule: a file with only a backbone (an ImageNet file)
      leaves them as built;
    * a whole detector whose backbone is in a public layout (Detectron2's and
      vovnet-detectron2's model zoo files: ``backbone.bottom_up.<their keys>``)
      loads through :func:`mmbackbones.load_weights`: the backbone's part
      converted (its network checked), every other tensor by name, strictly;
    * ``MODEL.WEIGHTS`` may name a public file (``mmbackbones://<name>``, or the
      name alone): downloaded once into the weights cache, checked, refused before
      the download when it holds another network;
    * files are read safely: ``.pth`` with ``weights_only`` and the allow-list,
      the model zoo's ``.pkl`` with an unpickler of numpy arrays only;
    * a tensor whose shape differs from the file's is an error naming it and
      ``MODEL.MMBACKBONES.WEIGHTS_REINIT``, instead of Detectron2's logged skip.
      ``reinit`` (that option's value; ``train.init_checkpoint_reinit`` in a
      LazyConfig) names the layers that keep their initialisation when
      fine-tuning to another class count; each is logged.
      Resuming the output folder's own checkpoint loads every tensor.
    """

    _entry = None  # the catalog entry of the named file being loaded
    _name = None
    _resuming = False

    def __init__(self, model, save_dir: str = '', *, reinit: Sequence[str] = (),
                 reinit_option: str = DETECTRON2_OPTION, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.reinit, self.reinit_option = list(reinit), reinit_option

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict:
        self._resuming = resume and self.has_checkpoint()
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = False

    def load(self, path, *args, **kwargs):
        self._entry, self._name = None, path
        try:
            if isinstance(path, str) and (path.startswith(SCHEME) or is_name(path)):
                self._entry = lookup(path)
                check_entry(_unwrap(self.model), self._entry, strip_scheme(path))  # before fetching
                path = fetch(self._entry.url, self._entry.cache_name(), self._entry.sha256)
            return super().load(path, *args, **kwargs)
        finally:
            self._entry = self._name = None

    def _load_file(self, filename: str) -> dict:
        if not filename.endswith(PICKLE_SUFFIX):
            return super()._load_file(filename)  # its query handling; reads by _torch_load
        data = safe_load(filename)
        if 'model' in data and '__author__' in data:  # Detectron2's model zoo format
            return data
        # Caffe2 / Detectron1 files, as Detectron2 reads them (name-matching heuristics)
        data = data.get('blobs', data)
        return {'model': {k: v for k, v in data.items() if not k.endswith('_momentum')},
                '__author__': 'Caffe2', 'matching_heuristics': True}

    def _torch_load(self, f: str) -> dict:
        return safe_load(f)

    def _load_model(self, checkpoint: dict):
        model = _unwrap(self.model)
        ours = _backbone_prefix(model)
        self._convert_ndarray_to_tensor(checkpoint['model'])
        keep = [] if self._resuming or checkpoint.get('matching_heuristics') else fine_tune_keys(
            model, checkpoint, self.reinit, self._name or '<checkpoint>',
            logger=self.logger, option=self.reinit_option)
        if ours is not None and not checkpoint.get('matching_heuristics') and (
                self._entry is not None or _foreign_backbone(checkpoint['model'], ours)):
            load_source(model, Source(
                self._name or '<checkpoint>', {'model': checkpoint.pop('model')},
                entry=self._entry), logger=self.logger, keep=keep)
            return _IncompatibleKeys(missing_keys=[], unexpected_keys=[], incorrect_shapes=[])
        for key in keep:  # left as initialised; Detectron2 then logs them as missing
            checkpoint['model'].pop(key, None)
        incompatible = super()._load_model(checkpoint)
        prefix = _backbone_prefix(self.model)
        if prefix is None:  # no mmbackbones backbone: Detectron2's own rules
            return incompatible
        missing = [k for k in incompatible.missing_keys if k.startswith(prefix)]
        shapes = [f'{k}: {tuple(got)} in the file, {tuple(want)} in the model'
                  for k, got, want in incompatible.incorrect_shapes if k.startswith(prefix)]
        if missing or shapes:
            unexpected = incompatible.unexpected_keys
            raise CheckpointError(
                'the checkpoint does not fit the mmbackbones backbone under '
                f'{prefix!r}: ' + '; '.join(filter(None, (
                    f'{len(missing)} of its tensors are not in the file '
                    f'({_preview(missing)})' if missing else '',
                    'shapes differ for ' + _preview(shapes) if shapes else '',
                    f'the file has {len(unexpected)} keys the model does not '
                    f'({_preview(unexpected)})' if unexpected else '')))
                + '. Convert a backbone file with tools/convert_to_detectron2.py '
                "--arch fpn (FPN builders) or --arch plain (build_mmbackbones_backbone).")
        return incompatible


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _foreign_backbone(state_dict: Dict[str, object], prefix: str) -> bool:
    """Whether a file holds the backbone under the FPN's ``bottom_up.`` in
    another layout than ours (``<prefix>`` = ``backbone.bottom_up.body.``)."""
    parent = prefix[:-len('body.')] if prefix.endswith('.body.') else None
    return bool(parent) and not any(k.startswith(prefix) for k in state_dict) and any(
        k.startswith(parent) for k in state_dict)


def _backbone_prefix(model: torch.nn.Module) -> Optional[str]:
    """Where the model's mmbackbones backbone sits in its state dict
    (``backbone.bottom_up.body.`` under an FPN), or None."""
    for name, module in model.named_modules():
        if isinstance(module, MMBackbone):
            return f'{name}.body.' if name else 'body.'
    return None


def _preview(items: Sequence[str], limit: int = 4) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f', ... ({len(items) - limit} more)' if len(items) > limit else '')
