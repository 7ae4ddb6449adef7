"""Inference deployment: :func:`fuse` folds every BatchNorm (any variant with
running statistics, frozen BN too) that directly follows a convolution into that
convolution's weight and bias (a norm-activation layer keeps its activation);
:func:`deploy` adds what else pays on the inference path (channels-last weights,
frozen parameters, optionally an Inductor compile that treats them as constants).

Pairs are found without a forward pass, only where the order is known: adjacent
``(Conv2d, norm)`` children of a Sequential that runs its children in order (our
conv units, torchvision's Conv2dNormActivation and ResNet downsample/stem),
mmcv's ``ConvModule`` (conv before norm), the named pairs of timm's
EfficientNet/MobileNet blocks (:data:`TIMM_PAIRS`), and ``convK``/``bnK``
attribute pairs (torchvision's and timm's ResNet blocks, timm's ConvNormAct) once
``torch.fx`` shows, in the block's own ``forward``, that the norm reads the conv's
output and nothing else does: names do not say the order (timm's DPN runs BN,
ReLU, then conv). Every pair also needs the norm as wide as the conv's output.
"""
import copy
import re
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.fx
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .models.layers import NORM_ACT_CHILDREN, NORM_TYPES


class FuseWarning(UserWarning):
    """A conv -> norm pair that :func:`fuse` leaves unfolded."""


def foldable(norm: nn.Module) -> bool:
    """Every BatchNorm variant that normalizes with fixed statistics in eval mode:
    ``BatchNorm2d``, ``SyncBatchNorm``, MMEngine's ``_BatchNormXd`` (after
    ``revert_sync_batchnorm``), frozen BN. Not GN/LN/IN (per-sample statistics)
    nor a BN without running statistics."""
    if not set(dict(norm.named_children())) <= NORM_ACT_CHILDREN:
        return False  # something else runs inside the norm: it cannot become a bias
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and norm.running_mean is not None and norm.running_var is not None)


def after_fold(norm: nn.Module) -> nn.Module:
    """What replaces a folded norm: nothing, or the dropout and activation a
    norm-activation layer (timm's ``BatchNormAct2d``, ours after a ``norm_cfg``)
    runs after normalising."""
    extras = dict(norm.named_children())
    if not extras:
        return nn.Identity()
    return nn.Sequential(extras['drop'], extras['act'])


#: ``(conv, norm)`` attribute pairs, each norm right after its conv in ``forward``, of
#: timm's EfficientNet/MobileNet blocks, by class name (so deploy needs no timm)
TIMM_PAIRS = {
    'ConvBnAct': (('conv', 'bn1'), ),
    'DepthwiseSeparableConv': (('conv_s2d', 'bn_s2d'), ('conv_dw', 'bn1'), ('conv_pw', 'bn2')),
    'InvertedResidual': (('conv_s2d', 'bn_s2d'), ('conv_pw', 'bn1'), ('conv_dw', 'bn2'),
                         ('conv_pwl', 'bn3')),
    'EdgeResidual': (('conv_exp', 'bn1'), ('conv_pwl', 'bn2')),
    'EfficientNetFeatures': (('conv_stem', 'bn1'), ),
    'MobileNetV3Features': (('conv_stem', 'bn1'), ),
}


def _runs_children_in_order(module: nn.Module) -> bool:
    """A Sequential whose ``forward`` is Sequential's: each child reads the
    previous child's output, and nothing else does."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _width(norm: nn.Module) -> Optional[int]:
    for attr in ('num_features', 'num_channels'):  # BN variants; GN
        if isinstance(getattr(norm, attr, None), int):
            return getattr(norm, attr)
    weight = getattr(norm, 'weight', None)  # FrozenBatchNorm2d
    return weight.shape[0] if isinstance(weight, torch.Tensor) else None


def _pairs(module: nn.Module, unverified: List[str], prefix: str = ''
           ) -> Iterator[Tuple[nn.Conv2d, nn.Module, str]]:
    """``(conv, norm, name of norm in module)`` for the direct children of
    ``module``: every norm that reads a conv's output, and only that conv's,
    foldable or not. Pairs found by name in a module of unknown order whose
    order cannot be verified are added to ``unverified`` instead."""
    children = list(module.named_children())
    if isinstance(module, nn.Sequential) and _runs_children_in_order(module):
        for (_, a), (name, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, NORM_TYPES):
                yield a, b, name
        return
    order = getattr(module, 'order', None)  # mmcv's ConvModule: e.g. ('conv', 'norm', 'act')
    if isinstance(order, tuple) and {'conv', 'norm'} <= set(order):
        norm_name = getattr(module, 'norm_name', None)
        conv, norm = getattr(module, 'conv', None), getattr(module, norm_name or '', None)
        if order.index('norm') == order.index('conv') + 1 and isinstance(conv, nn.Conv2d) \
                and isinstance(norm, NORM_TYPES):
            yield conv, norm, norm_name
        return  # a norm before the conv, or after its activation, does not fold
    named = dict(children)
    if type(module).__module__.startswith('timm.') and type(module).__name__ in TIMM_PAIRS:
        for conv_name, norm_name in TIMM_PAIRS[type(module).__name__]:
            conv, norm = named.get(conv_name), named.get(norm_name)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, NORM_TYPES):
                yield conv, norm, norm_name
        return
    # convK/bnK by name (torchvision's and timm's ResNet blocks, timm's ConvNormAct),
    # but names do not say the order: timm's DPN runs BN, ReLU, then conv
    candidates = []
    for name, norm in children:
        match = re.fullmatch(r'bn(\d*)', name)
        conv_name = f'conv{match.group(1)}' if match else None
        if isinstance(named.get(conv_name), nn.Conv2d) and isinstance(norm, NORM_TYPES):
            candidates.append((conv_name, name))
    if not candidates:
        return
    calls = _child_calls(module)
    if calls is None:
        unverified += [f'{prefix}{conv} -> {prefix}{norm}' for conv, norm in candidates]
        return
    for conv_name, norm_name in candidates:
        convs, norms = calls.get(conv_name, []), calls.get(norm_name, [])
        if len(norms) != 1 or not any(norms[0].args[:1] == (c, ) for c in convs):
            continue  # the norm does not read the conv's output: no pair
        if len(convs) != 1 or len(convs[0].users) != 1 or norms[0].kwargs \
                or len(norms[0].args) != 1:
            # the conv's output also goes elsewhere, or either runs twice: folding
            # would change what the others read
            unverified.append(f'{prefix}{conv_name} -> {prefix}{norm_name}')
            continue
        yield named[conv_name], named[norm_name], norm_name


class _CallsOfSubmodules(torch.fx.Tracer):
    """Traces one module's own ``forward``: every submodule is one call."""

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return True


def _child_calls(module: nn.Module) -> Optional[Dict[str, List[torch.fx.Node]]]:
    """``{child name: its call nodes}`` in ``module.forward``'s graph, or None
    when ``torch.fx`` cannot trace it (control flow on values, ...)."""
    try:
        graph = _CallsOfSubmodules().trace(module)
    except Exception:  # noqa: BLE001  any error of arbitrary user code under tracing
        return None
    calls: Dict[str, List[torch.fx.Node]] = {}
    for node in graph.nodes:
        if node.op == 'call_module':
            calls.setdefault(node.target, []).append(node)
    return calls


@torch.no_grad()
def fold_norm(conv: nn.Conv2d, norm: nn.Module) -> None:
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    scale = weight / torch.sqrt(norm.running_var + norm.eps)
    bias = -norm.running_mean * scale
    if norm.bias is not None:  # affine=False: no weight and no bias
        bias = bias + norm.bias
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a copy unless ``inplace``) in eval mode with every
    conv -> BN pair folded (any BatchNorm variant, see :func:`foldable`); outputs
    equal the unfused model's in eval mode. Conv -> norm pairs that cannot fold
    (GroupNorm, a BN without running statistics) stay, and a :class:`FuseWarning`
    names them."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    unfolded, unverified = [], []
    for module_name, module in list(model.named_modules()):
        prefix = f'{module_name}.' if module_name else ''
        for conv, norm, name in list(_pairs(module, unverified, prefix)):
            if _width(norm) != conv.out_channels:
                unverified.append(f'{prefix}{name} ({_width(norm)} channels after a conv '
                                  f'of {conv.out_channels})')
            elif foldable(norm):
                fold_norm(conv, norm)
                setattr(module, name, after_fold(norm))
            else:
                unfolded.append(f'{module_name}.{name} ({type(norm).__name__})'
                                if module_name else f'{name} ({type(norm).__name__})')
    if unfolded:
        shown = ', '.join(unfolded[:5]) + (', ...' if len(unfolded) > 5 else '')
        warnings.warn(f'fuse(): {len(unfolded)} conv -> norm pairs cannot be folded and '
                      f'stay as they are: {shown}. Only BatchNorm variants with running '
                      f'statistics fold.', FuseWarning, stacklevel=2)
    if unverified:
        shown = ', '.join(unverified[:5]) + (', ...' if len(unverified) > 5 else '')
        warnings.warn(f'fuse(): {len(unverified)} conv/norm pairs stay unfolded because their '
                      f"order could not be verified (the norm must read the conv's output, "
                      f'and nothing else may): {shown}.', FuseWarning, stacklevel=2)
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


def _cast_inputs(dtype: torch.dtype):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a
                     for a in args)
    return hook


def deploy(model: nn.Module, channels_last: bool = True, compile: bool = False,
           inplace: bool = False, dtype: Optional[torch.dtype] = None) -> nn.Module:
    """The inference form of ``model``: BN folded (:func:`fuse`), parameters
    frozen, weights in channels-last (oneDNN's native layout on CPU, and the
    tensor-core layout on GPU: no reorders around each convolution), and with
    ``compile=True`` wrapped in :class:`FrozenCompiled`.

    ``dtype=torch.bfloat16`` (or ``float16`` on GPU) casts the folded weights,
    and every floating-point input on the way in; outputs come in that dtype.
    Folding happens in fp32 first, so the cast rounds each weight once.

    Inputs may stay in the default layout; outputs are then channels-last
    tensors with equal values. Run the result under ``torch.no_grad()`` or
    ``torch.inference_mode()``.
    """
    model = fuse(model, inplace=inplace)
    model.requires_grad_(False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if dtype is not None:
        if not dtype.is_floating_point:
            raise ValueError(f'deploy(dtype={dtype}): a floating-point dtype is needed, '
                             f'e.g. torch.bfloat16, torch.float16 or torch.float32')
        model.to(dtype)
    deployed = FrozenCompiled(model) if compile else model
    if dtype is not None:
        deployed.register_forward_pre_hook(_cast_inputs(dtype))
    return deployed
