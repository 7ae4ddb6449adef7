"""VoVNet V1/V2 (one-shot aggregation), with eSE in every OSA module for V2.

Two layouts of the same network:

* ``stem_stride=2`` (the seed's): the 3-conv stem is level 0 (stride 2);
  stages 2..5 are levels 1..4, each opening with a padded max pool (stage 2
  included, as in the paper).
* ``stem_stride=4`` (vovnet-detectron2's and timm's, whose public weights load):
  the stem's third conv has stride 2 and opens stage 2, which has no pool; the
  first two stem convs are level 0 (stride 2); stages 3..5 pool with
  ``MaxPool2d(3, 2, ceil_mode=True)``.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

import torch
from mmcv.cnn.bricks import DropPath
from torch import nn

from ..registry import register_backbone
from .base import BaseBackbone, Level, select_variant
from .layers import EffectiveSE, add_residual

STEM_CHANNELS = (64, 64, 128)


@dataclass(frozen=True)
class StageWidths:
    mid: Tuple[int, ...]
    out: Tuple[int, ...]


WIDTHS = StageWidths(mid=(128, 160, 192, 224), out=(256, 512, 768, 1024))
SLIM_WIDTHS = StageWidths(mid=(64, 80, 96, 112), out=(128, 256, 384, 512))


@dataclass(frozen=True)
class VoVNetArch:
    layers_per_module: int
    modules_per_stage: Tuple[int, ...]


ARCH_SETTINGS: Dict[int, VoVNetArch] = {
    19: VoVNetArch(3, (1, 1, 1, 1)),
    39: VoVNetArch(5, (1, 1, 2, 2)),
    57: VoVNetArch(5, (1, 1, 4, 3)),
    99: VoVNetArch(5, (1, 3, 9, 3)),
}


class OSAModule(nn.Module):
    """Chained 3x3 convs whose outputs (and the input) are concatenated once,
    projected by a 1x1 conv, gated by eSE, and added to the input when shapes allow."""

    def __init__(self, backbone: BaseBackbone, in_channels: int, mid_channels: int,
                 out_channels: int, num_layers: int, residual: bool, ese: bool,
                 drop_path: float):
        super().__init__()
        self.layers = nn.ModuleList(
            backbone.conv(in_channels if i == 0 else mid_channels, mid_channels, 3)
            for i in range(num_layers))
        self.concat_conv = backbone.conv(in_channels + num_layers * mid_channels,
                                         out_channels, 1)
        self.ese = EffectiveSE(out_channels) if ese else nn.Identity()
        self.residual = residual and in_channels == out_channels
        self.drop_path = (DropPath(drop_path) if self.residual and drop_path > 0
                          else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features[-1]))
        out = self.ese(self.concat_conv(torch.cat(features, dim=1)))
        return add_residual(self.drop_path(out), x) if self.residual else out


@register_backbone
class VoVNet(BaseBackbone):
    """VoVNet-19/39/57/99 (``slim=True`` for the narrow -19-slim).

    V2 (default): eSE in every OSA module, and a residual in those whose input and
    output channels match (none in VoVNet-19, 2 of 6 modules in -39). V1: ``residual=False,
    ese=False``. ``ese='last'``: eSE only in the last module of each stage (timm's
    ``ese_vovnet*b``). ``stem_stride=4``: the layout of vovnet-detectron2 and timm
    (see the module's docstring).
    """
    arch_settings = ARCH_SETTINGS
    arch_arg_names = ('depth', 'slim', 'residual', 'ese', 'stem_stride')
    ESE_CHOICES = (True, False, 'last')
    STEM_STRIDES = (2, 4)

    def __init__(self, depth: int = 39, slim: bool = False, residual: bool = True,
                 ese: Union[bool, str] = True, stem_stride: int = 2, **kwargs):
        self.depth = depth
        self.arch = select_variant(self.arch_settings, depth, 'VoVNet')
        if ese not in self.ESE_CHOICES or not isinstance(ese, (bool, str)):
            raise ValueError(f'unknown VoVNet ese {ese!r}; valid: {list(self.ESE_CHOICES)} '
                             f'(every module, none, the last module of each stage)')
        if stem_stride not in self.STEM_STRIDES:
            raise ValueError(f'unknown VoVNet stem_stride {stem_stride!r}; valid: '
                             f'{list(self.STEM_STRIDES)}')
        self.widths = SLIM_WIDTHS if slim else WIDTHS
        self.slim, self.residual, self.ese, self.stem_stride = slim, residual, ese, stem_stride
        super().__init__(**kwargs)

    @property
    def supports_drop_path(self) -> bool:
        # only modules after a stage's first have in == out channels
        return self.residual and any(n > 1 for n in self.arch.modules_per_stage)

    def no_drop_path_reason(self) -> str:
        if not self.residual:
            return 'VoVNet with residual=False (V1) has no residual connections to drop'
        return (f'VoVNet-{self.depth} has one OSA module per stage, and a stage\'s first '
                f'module has no residual connection')

    @classmethod
    def variants(cls) -> Dict[str, dict]:
        table = {'VoVNet-19-slim': dict(depth=19, slim=True)}
        table.update({f'VoVNet-{d}': dict(depth=d) for d in cls.arch_settings})
        table.update({f'VoVNet-{d}-V1': dict(depth=d, residual=False, ese=False)
                      for d in cls.arch_settings})
        # the layouts whose public ImageNet weights load (mmbackbones.weights)
        table.update({f'VoVNet-{d}-S4': dict(depth=d, stem_stride=4)
                      for d in cls.arch_settings})
        table.update({f'VoVNet-{d}-S4-lastESE': dict(depth=d, stem_stride=4, ese='last')
                      for d in (39, 57)})
        table.update({f'VoVNet-{d}-S4-V1': dict(depth=d, stem_stride=4, residual=False,
                                                ese=False) for d in (39, 57)})
        return table

    def build_levels(self) -> List[Level]:
        c1, c2, c3 = STEM_CHANNELS
        stem = [self.conv(self.in_channels, c1, 3, stride=2), self.conv(c1, c2, 3),
                self.conv(c2, c3, 3, stride=self.stem_stride // 2)]
        if self.stem_stride == 2:
            levels = [Level('stem', nn.Sequential(*stem), c3)]
            stage_openers = [nn.MaxPool2d(3, stride=2, padding=1) for _ in range(4)]
        else:
            levels = [Level('stem', nn.Sequential(*stem[:2]), c2)]
            stage_openers = [stem[2]] + [nn.MaxPool2d(3, stride=2, ceil_mode=True)
                                          for _ in range(3)]
        rates = iter(self.drop_path_rates(sum(self.arch.modules_per_stage)))
        in_channels = c3
        for i, (mid, out, num_modules, opener) in enumerate(zip(
                self.widths.mid, self.widths.out, self.arch.modules_per_stage,
                stage_openers)):
            stage = nn.Sequential(opener)
            for j in range(num_modules):
                ese = self.ese is True or (self.ese == 'last' and j == num_modules - 1)
                stage.append(OSAModule(self, in_channels if j == 0 else out, mid, out,
                                       self.arch.layers_per_module, self.residual,
                                       ese, next(rates)))
            levels.append(Level(f'stage{i + 2}', stage, out))
            in_channels = out
        return levels
