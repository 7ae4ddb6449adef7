"""Building blocks shared by the backbone families."""
from typing import Optional

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

# Norm types a backbone accepts. ``FrozenBN`` is torchvision's FrozenBatchNorm2d
# (fixed statistics and affine), the norm Detectron2 and MMDetection call FrozenBN.
NORM_LAYERS = {
    'BN': nn.BatchNorm2d,
    'BN2d': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm,
    'GN': nn.GroupNorm,
    'FrozenBN': FrozenBatchNorm2d,
}
ACTIVATIONS = ('ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'ELU', 'SiLU', 'Swish',
               'GELU', 'HSwish', 'Sigmoid', 'Tanh')
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
              nn.modules.instancenorm._InstanceNorm, FrozenBatchNorm2d)


def check_norm_cfg(norm_cfg: dict) -> None:
    if not isinstance(norm_cfg, dict) or norm_cfg.get('type') not in NORM_LAYERS:
        got = norm_cfg.get('type') if isinstance(norm_cfg, dict) else norm_cfg
        raise ValueError(f'unknown norm type {got!r} in norm_cfg; '
                         f'valid types: {sorted(NORM_LAYERS)}')
    if norm_cfg['type'] == 'GN' and 'num_groups' not in norm_cfg:
        raise ValueError("norm_cfg of type 'GN' needs 'num_groups', "
                         "e.g. dict(type='GN', num_groups=32)")


def check_act_cfg(act_cfg: Optional[dict]) -> None:
    if act_cfg is None:
        return
    if not isinstance(act_cfg, dict) or act_cfg.get('type') not in ACTIVATIONS:
        got = act_cfg.get('type') if isinstance(act_cfg, dict) else act_cfg
        raise ValueError(f'unknown activation type {got!r} in act_cfg; '
                         f'valid types: {list(ACTIVATIONS)} (or None)')


def build_norm(norm_cfg: dict, channels: int) -> nn.Module:
    cfg = dict(norm_cfg)
    cfg['type'] = NORM_LAYERS[cfg['type']]
    if cfg['type'] is FrozenBatchNorm2d:
        cfg.pop('requires_grad', None)
        cfg.pop('momentum', None)
    return build_norm_layer(cfg, channels)[1]


#: activations that may overwrite their input: in a conv unit nothing else reads it
INPLACE_ACTIVATIONS = ('ReLU', 'ReLU6', 'LeakyReLU', 'ELU', 'SiLU')


def build_act(act_cfg: Optional[dict]) -> nn.Module:
    if act_cfg is None:
        return nn.Identity()
    cfg = dict(act_cfg)
    if cfg['type'] in INPLACE_ACTIVATIONS:
        cfg.setdefault('inplace', True)
    return build_activation_layer(cfg)


def add_residual(out: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``out + identity``; in place when autograd is off, where ``out`` is the
    block's fresh output that nothing else holds. That saves an allocation and a
    pass over memory per block (4 % of Darknet-53's CPU inference); with autograd
    on, the in-place activation before it must keep its output for backward."""
    if torch.is_grad_enabled():
        return out + identity
    return out.add_(identity)


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> activation, the unit of every family here. A
    Sequential, so that :func:`mmbackbones.deploy.fuse` folds it like any other."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, *, norm_cfg: dict, act_cfg: Optional[dict]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = build_norm(norm_cfg, out_channels)
        self.act = build_act(act_cfg)


class EffectiveSE(nn.Module):
    """eSE of VoVNetV2: channel attention from one 1x1 conv and a hard sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))
