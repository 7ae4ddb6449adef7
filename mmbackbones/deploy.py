"""Inference deployment: :func:`fuse` folds every BatchNorm (or frozen BN) that
directly follows a convolution into that convolution's weight and bias;
:func:`deploy` adds what else pays on the inference path (channels-last weights,
frozen parameters, optionally an Inductor compile that treats them as constants).

Pairs are found structurally, without a forward pass: adjacent ``(Conv2d, BN)``
children of a Sequential (our conv units, torchvision's Conv2dNormActivation and
ResNet downsample/stem), and ``convK``/``bnK`` attribute pairs (torchvision's
ResNet blocks).
"""
import copy
import re
from typing import Iterator, Tuple

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

FOLDABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _pairs(module: nn.Module) -> Iterator[Tuple[nn.Conv2d, nn.Module, str]]:
    """``(conv, norm, name of norm in module)`` for the direct children of ``module``."""
    children = list(module.named_children())
    if isinstance(module, nn.Sequential):
        for (_, a), (name, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, FOLDABLE_NORMS):
                yield a, b, name
    named = dict(children)
    order = getattr(module, 'order', None)  # mmcv's ConvModule: e.g. ('conv', 'norm', 'act')
    if isinstance(order, tuple) and {'conv', 'norm'} <= set(order) \
            and order.index('norm') < order.index('conv'):
        return  # the norm runs first: nothing to fold into the conv
    for name, norm in children:
        match = re.fullmatch(r'bn(\d*)', name)
        conv = named.get(f'conv{match.group(1)}') if match else None
        if isinstance(conv, nn.Conv2d) and isinstance(norm, FOLDABLE_NORMS):
            yield conv, norm, name


@torch.no_grad()
def fold_norm(conv: nn.Conv2d, norm: nn.Module) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a copy unless ``inplace``) in eval mode with every
    conv -> BN pair folded; outputs equal the unfused model's in eval mode."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for module in list(model.modules()):
        for conv, norm, name in list(_pairs(module)):
            fold_norm(conv, norm)
            setattr(module, name, nn.Identity())
    return model


class FrozenCompiled(nn.Module):
    """``module`` compiled by Inductor with its parameters frozen into the graph:
    weights prepacked for oneDNN, activations and adds fused into the convolutions.
    Compiles on the first call under ``torch.no_grad()``/``inference_mode()``;
    changes to the weights after that call are not seen."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        # a compiled bound method, not an OptimizedModule: the weights stay
        # registered once, under ``module.``
        self._compiled = torch.compile(module.forward, fullgraph=True)

    def forward(self, *args, **kwargs):
        # Dynamo reads Inductor's global ``freezing`` flag while tracing, so
        # ``torch.compile(options={'freezing': True})`` alone compiles unfrozen
        with torch._inductor.config.patch(freezing=True):
            return self._compiled(*args, **kwargs)


def deploy(model: nn.Module, channels_last: bool = True, compile: bool = False,
           inplace: bool = False) -> nn.Module:
    """The inference form of ``model``: BN folded (:func:`fuse`), parameters
    frozen, weights in channels-last (oneDNN's native layout on CPU, and the
    tensor-core layout on GPU: no reorders around each convolution), and with
    ``compile=True`` wrapped in :class:`FrozenCompiled`.

    Inputs may stay in the default layout; outputs are then channels-last
    tensors with equal values. Run the result under ``torch.no_grad()`` or
    ``torch.inference_mode()``.
    """
    model = fuse(model, inplace=inplace)
    model.requires_grad_(False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return FrozenCompiled(model) if compile else model
