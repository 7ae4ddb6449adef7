"""Darknet-19/53 (YOLOv2/v3) and their Cross-Stage-Partial versions.

The stride-1 stem conv plus stage 1 form level 0; stages 2..5 are levels 1..4.
Every stage opens with a 3x3 stride-2 conv.
"""
from typing import Dict, List, Tuple

import torch
from mmcv.cnn.bricks import DropPath
from torch import nn

from ..registry import register_backbone
from .base import BaseBackbone, Level, select_variant
from .layers import add_residual

STEM_CHANNELS = 32
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
#: residual blocks per stage, by depth (shared by Darknet and CSPDarknet)
BLOCKS_PER_STAGE: Dict[int, Tuple[int, ...]] = {
    19: (0, 1, 1, 2, 2),
    53: (1, 2, 8, 8, 4),
}


class DarknetBlock(nn.Module):
    """1x1 (channels -> hidden) -> 3x3 (-> channels), added to the input."""

    def __init__(self, backbone: BaseBackbone, channels: int, hidden: int,
                 drop_path: float):
        super().__init__()
        self.conv1 = backbone.conv(channels, hidden, 1)
        self.conv2 = backbone.conv(hidden, channels, 3)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_residual(self.drop_path(self.conv2(self.conv1(x))), x)


class CSPStage(nn.Module):
    """Downsample, split into two 1x1 branches, run blocks on one, merge."""

    def __init__(self, backbone: BaseBackbone, in_channels: int, out_channels: int,
                 drop_paths: List[float]):
        super().__init__()
        half = out_channels // 2
        self.downsample = backbone.conv(in_channels, out_channels, 3, stride=2)
        self.short_conv = backbone.conv(out_channels, half, 1)
        self.main_conv = backbone.conv(out_channels, half, 1)
        self.blocks = nn.Sequential(*(DarknetBlock(backbone, half, half, rate)
                                      for rate in drop_paths))
        self.final_conv = backbone.conv(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        return self.final_conv(
            torch.cat([self.short_conv(x), self.blocks(self.main_conv(x))], dim=1))


class _DarknetFamily(BaseBackbone):
    supports_drop_path = True
    arch_settings = BLOCKS_PER_STAGE
    arch_arg_names = ('depth', )

    def __init__(self, depth: int = 53, **kwargs):
        self.depth = depth
        self.blocks_per_stage = select_variant(self.arch_settings, depth,
                                               type(self).__name__)
        super().__init__(**kwargs)

    @classmethod
    def variants(cls) -> Dict[str, dict]:
        return {f'{cls.__name__}-{depth}': dict(depth=depth) for depth in cls.arch_settings}

    def build_levels(self) -> List[Level]:
        rates = iter(self.drop_path_rates(sum(self.blocks_per_stage)))
        stages = [self.build_stage(in_ch, out_ch, [next(rates) for _ in range(n)])
                  for in_ch, out_ch, n in zip((STEM_CHANNELS, ) + STAGE_CHANNELS[:-1],
                                               STAGE_CHANNELS, self.blocks_per_stage)]
        stem = nn.Sequential(self.conv(self.in_channels, STEM_CHANNELS, 3), *stages[0])
        return [Level('stem', stem, STAGE_CHANNELS[0])] + [
            Level(f'stage{i + 1}', stage, channels)
            for i, (stage, channels) in enumerate(zip(stages, STAGE_CHANNELS)) if i > 0
        ]

    def build_stage(self, in_channels: int, out_channels: int,
                    drop_paths: List[float]) -> nn.Sequential:
        raise NotImplementedError


@register_backbone
class Darknet(_DarknetFamily):
    """Darknet-19 / Darknet-53. Residual blocks halve then restore the channels."""

    @classmethod
    def variants(cls) -> Dict[str, dict]:
        # with the activations of the public weights (mmbackbones.weights)
        leaky = {f'Darknet-53-LeakyReLU-{slope}': dict(
            depth=53, act_cfg=dict(type='LeakyReLU', negative_slope=slope))
            for slope in (0.1, 0.01)}  # MMDetection's / timm's
        return {**super().variants(), **leaky}

    def build_stage(self, in_channels, out_channels, drop_paths):
        return nn.Sequential(
            self.conv(in_channels, out_channels, 3, stride=2),
            *(DarknetBlock(self, out_channels, out_channels // 2, rate)
              for rate in drop_paths))


@register_backbone
class CSPDarknet(_DarknetFamily):
    """CSPDarknet-19 / CSPDarknet-53: each stage is a :class:`CSPStage`."""

    def build_stage(self, in_channels, out_channels, drop_paths):
        return nn.Sequential(CSPStage(self, in_channels, out_channels, drop_paths))
