"""Multi-output ports of torchvision's ResNet, ResNeXt, Wide ResNet, MobileNetV2/V3
and EfficientNet: torchvision's own modules, cut into the five contract levels.

Each family is a table ``key -> (torchvision builder, level taps)``; a tap lists
the torchvision module paths that make one level. A torchvision state dict (the
format its ``weights`` download) loads directly: keys are renamed to ours on
load, the classifier head is set aside, and anything else must match.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torchvision.models as tvm
from torch import nn

from ..registry import register_backbone
from .base import BaseBackbone, Level, keep_foreign_activations, select_variant
from .layers import replace_batchnorms

RESNET_TAPS = (('conv1', 'bn1', 'relu'), ('maxpool', 'layer1'), ('layer2', ),
               ('layer3', ), ('layer4', ))


def feature_taps(*cuts: int) -> Tuple[Tuple[str, ...], ...]:
    """Taps over ``model.features``: level ``i`` is ``features[cuts[i]:cuts[i+1]]``."""
    return tuple(tuple(f'features.{j}' for j in range(a, b)) for a, b in zip(cuts, cuts[1:]))


@dataclass(frozen=True)
class TorchvisionArch:
    builder: str                           # function in torchvision.models
    taps: Tuple[Tuple[str, ...], ...]      # module paths of each level
    kwargs: Dict = field(default_factory=dict)


def _resnets(names: Dict[int, str]) -> Dict[int, TorchvisionArch]:
    return {depth: TorchvisionArch(builder, RESNET_TAPS) for depth, builder in names.items()}


class TorchvisionPort(BaseBackbone):
    """Thin adapter: torchvision model -> five levels under the contract.

    ``norm_cfg=None`` keeps torchvision's norms; any other ``norm_cfg`` replaces
    every BatchNorm, keeping its eps and momentum. Activations are torchvision's.
    """
    arch_settings: Dict = {}
    arch_arg = 'depth'
    variant_names: Dict = {}
    keeps_model_norms = True

    def __init__(self, key, norm_cfg: Optional[dict] = None, **kwargs):
        keep_foreign_activations(kwargs, type(self).__name__, "torchvision's")
        self.tv_arch = select_variant(self.arch_settings, key, type(self).__name__,
                                   self.arch_arg)
        setattr(self, self.arch_arg, key)
        self._replace_norm = norm_cfg is not None
        super().__init__(norm_cfg=norm_cfg, **kwargs)
        self._map_torchvision_names()
        self._register_load_state_dict_pre_hook(self._rename_torchvision_keys)

    @classmethod
    def variants(cls) -> Dict[str, dict]:
        return {name: {cls.arch_arg: key} for key, name in cls.variant_names.items()}

    @property
    def arch_arg_names(self) -> Tuple[str, ...]:
        return (self.arch_arg, )

    def torchvision_kwargs(self) -> dict:
        return dict(self.tv_arch.kwargs)

    def build_levels(self) -> List[Level]:
        tv_model = getattr(tvm, self.tv_arch.builder)(weights=None, **self.torchvision_kwargs())
        if self._replace_norm:
            replace_batchnorms(tv_model, self.norm_cfg)
        self._tv_model = [tv_model]  # a list keeps it out of our modules/state dict
        levels = []
        names = ['stem'] + [f'stage{i}' for i in range(2, 6)]
        for name, tap in zip(names, self.tv_arch.taps):
            blocks = []
            for path in tap:
                module = tv_model.get_submodule(path)
                # plain Sequentials (ResNet layers, EfficientNet stages) are flattened
                # so that with_cp checkpoints block by block
                blocks.extend(module.children() if type(module) is nn.Sequential else [module])
            level = nn.Sequential(*blocks)
            levels.append(Level(name, level, last_conv_channels(level)))
        return levels

    # -- torchvision state dicts ---------------------------------------------
    def _map_torchvision_names(self) -> None:
        tv_model = self._tv_model.pop()
        ours = {id(m): name for name, m in self.named_modules()}
        self._tv_to_ours = {name: ours[id(m)] for name, m in tv_model.named_modules()
                            if id(m) in ours and name}
        self.torchvision_head = tuple(
            name for name, child in tv_model.named_children()
            if not any(id(m) in ours for m in child.modules()))

    def torchvision_key(self, key: str) -> Tuple[str, Optional[str]]:
        """``('ours', new_key)``, ``('head', None)`` or ``('unknown', None)`` for a
        key of a torchvision state dict."""
        module, _, attr = key.rpartition('.')
        if module in self._tv_to_ours:
            return 'ours', f'{self._tv_to_ours[module]}.{attr}'
        if key.split('.', 1)[0] in self.torchvision_head:
            return 'head', None
        return 'unknown', None

    def _rename_torchvision_keys(self, state_dict, prefix, *args) -> None:
        keys = [k for k in state_dict if k.startswith(prefix)]
        local = [k[len(prefix):] for k in keys]
        if any(k.split('.', 1)[0] in self.level_names for k in local):
            return  # already in our layout
        if not any(self.torchvision_key(k)[0] == 'ours' for k in local):
            return  # not a torchvision state dict either: let the loader report it
        self.dropped_head_keys = []
        for key, short in zip(keys, local):
            kind, new = self.torchvision_key(short)
            if kind == 'ours':
                state_dict[prefix + new] = state_dict.pop(key)
            elif kind == 'head':
                self.dropped_head_keys.append(short)
                del state_dict[key]


def last_conv_channels(module: nn.Module) -> int:
    """Output channels of a torchvision level: its last conv in definition order
    (the projection of its last block). Checked against real outputs in tests."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


#: where a bottleneck block's stride sits: torchvision's (and MMDetection's
#: ``style='pytorch'``) 3x3 conv, or the first 1x1 conv of MSRA's original
#: networks (MMDetection's ``style='caffe'``, Detectron2's ``STRIDE_IN_1X1``)
RESNET_STYLES = ('pytorch', 'caffe')


class ResNetFamily(TorchvisionPort):
    """torchvision's ResNets, with the stride of a downsampling bottleneck on its
    3x3 conv (``style='pytorch'``) or on its first 1x1 conv (``style='caffe'``:
    the network of Detectron2's model zoo and MMDetection's ``*-caffe`` detectors;
    the same keys and shapes)."""

    def __init__(self, depth: int = 50, style: str = 'pytorch', **kwargs):
        if style not in RESNET_STYLES:
            raise ValueError(f'style={style!r} is not a ResNet style; valid: {RESNET_STYLES}')
        self.style = style
        super().__init__(depth, **kwargs)

    @property
    def arch_arg_names(self) -> Tuple[str, ...]:
        return (self.arch_arg, 'style')

    def build_levels(self) -> List[Level]:
        levels = super().build_levels()
        if self.style == 'caffe':
            blocks = [m for level in levels for m in level.module.modules()
                      if isinstance(m, tvm.resnet.Bottleneck)]
            if not blocks:
                raise ValueError(f"style='caffe' moves a bottleneck's stride to its first 1x1 "
                                 f'conv; {type(self).__name__}-{self.depth} has basic blocks '
                                 f"(no 1x1 conv): use style='pytorch'")
            for block in blocks:
                block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
        return levels


@register_backbone
class ResNet(ResNetFamily):
    """torchvision ResNet-18/34/50/101/152."""
    arch_settings = _resnets({d: f'resnet{d}' for d in (18, 34, 50, 101, 152)})
    variant_names = {d: f'ResNet-{d}' for d in arch_settings}


@register_backbone
class ResNeXt(ResNetFamily):
    """torchvision ResNeXt-50 (32x4d) / ResNeXt-101 (32x8d)."""
    arch_settings = _resnets({50: 'resnext50_32x4d', 101: 'resnext101_32x8d'})
    variant_names = {50: 'ResNeXt-50-32x4d', 101: 'ResNeXt-101-32x8d'}


@register_backbone
class WideResNet(ResNetFamily):
    """torchvision Wide ResNet-50-2 / Wide ResNet-101-2."""
    arch_settings = _resnets({50: 'wide_resnet50_2', 101: 'wide_resnet101_2'})
    variant_names = {50: 'WideResNet-50-2', 101: 'WideResNet-101-2'}


@register_backbone
class MobileNetV2(TorchvisionPort):
    """torchvision MobileNetV2 (width 1.0), up to its last 1x1 conv (1280)."""
    arch_settings = {1.0: TorchvisionArch('mobilenet_v2', feature_taps(0, 2, 4, 7, 14, 19))}
    arch_arg = 'widen_factor'
    variant_names = {1.0: 'MobileNetV2'}

    def __init__(self, widen_factor: float = 1.0, **kwargs):
        super().__init__(widen_factor, **kwargs)


@register_backbone
class MobileNetV3(TorchvisionPort):
    """torchvision MobileNetV3-large / -small. Small's first block already has
    stride 4, so its level 0 is the stem conv alone."""
    arch_settings = {
        'large': TorchvisionArch('mobilenet_v3_large', feature_taps(0, 2, 4, 7, 13, 17)),
        'small': TorchvisionArch('mobilenet_v3_small', feature_taps(0, 1, 2, 4, 9, 13)),
    }
    arch_arg = 'arch'
    variant_names = {'large': 'MobileNetV3-large', 'small': 'MobileNetV3-small'}

    def __init__(self, arch: str = 'large', **kwargs):
        super().__init__(arch, **kwargs)


@register_backbone
class EfficientNet(TorchvisionPort):
    """torchvision EfficientNet-B0..B7. ``drop_path_rate`` is torchvision's
    ``stochastic_depth_prob`` (default 0.2 as in torchvision)."""
    arch_settings = {f'b{i}': TorchvisionArch(f'efficientnet_b{i}',
                                              feature_taps(0, 2, 3, 4, 6, 9))
                     for i in range(8)}
    arch_arg = 'arch'
    variant_names = {f'b{i}': f'EfficientNet-B{i}' for i in range(8)}
    supports_drop_path = True

    def __init__(self, arch: str = 'b0', drop_path_rate: float = 0.2, **kwargs):
        super().__init__(arch, drop_path_rate=drop_path_rate, **kwargs)

    def torchvision_kwargs(self) -> dict:
        return dict(stochastic_depth_prob=self.drop_path_rate)
