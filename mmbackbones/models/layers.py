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


class NormActivation:
    """Mixin: a norm followed by a dropout and an activation, as timm's
    ``BatchNormAct2d`` fuses them. Replacing such a layer by another norm type
    (:func:`replace_batchnorms`) keeps its dropout and activation, and the norm's
    state-dict keys (``weight``, ``running_mean``, ...) stay where timm's files
    have them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class BatchNormAct2d(NormActivation, nn.BatchNorm2d):
    pass


class SyncBatchNormAct(NormActivation, nn.SyncBatchNorm):
    pass


class GroupNormAct(NormActivation, nn.GroupNorm):
    pass


class FrozenBatchNormAct2d(NormActivation, FrozenBatchNorm2d):
    pass


#: the norm-activation form of each norm a ``norm_cfg`` builds
WITH_ACTIVATION = {nn.BatchNorm2d: BatchNormAct2d, nn.SyncBatchNorm: SyncBatchNormAct,
                   nn.GroupNorm: GroupNormAct, FrozenBatchNorm2d: FrozenBatchNormAct2d}
#: the children a norm-activation layer may have besides the norm
NORM_ACT_CHILDREN = frozenset({'drop', 'act'})


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


def replace_batchnorms(model: nn.Module, norm_cfg: dict) -> int:
    """Replace every BatchNorm of ``model`` by ``norm_cfg``'s norm; return how
    many. The new norm keeps the old one's ``eps`` and ``momentum`` (torchvision's
    MobileNetV3 and EfficientNet-B5+, and many timm models, differ from the
    defaults) unless ``norm_cfg`` sets them, and its values (affine terms, and
    running statistics where both have them: timm zero-initialises some). A
    norm-activation layer (timm's ``BatchNormAct2d``) keeps its dropout and
    activation (:class:`NormActivation`)."""
    count = 0
    for name, child in model.named_children():
        if not isinstance(child, nn.modules.batchnorm._BatchNorm):
            count += replace_batchnorms(child, norm_cfg)
            continue
        kept = dict(eps=child.eps)
        if issubclass(NORM_LAYERS[norm_cfg['type']], nn.modules.batchnorm._BatchNorm):
            kept['momentum'] = child.momentum  # FrozenBN and GN have none
        new = build_norm({**kept, **norm_cfg}, child.num_features)
        with torch.no_grad():
            for attr in ('weight', 'bias', 'running_mean', 'running_var'):
                old, target = getattr(child, attr, None), getattr(new, attr, None)
                if old is not None and target is not None:
                    target.copy_(old)
        extras = dict(child.named_children())
        if extras:
            if set(extras) != NORM_ACT_CHILDREN or type(new) not in WITH_ACTIVATION:
                raise ValueError(f'cannot replace {name} ({type(child).__name__}, children '
                                 f'{sorted(extras)}) by norm_cfg={norm_cfg!r}: only a norm '
                                 f'followed by {sorted(NORM_ACT_CHILDREN)} is known')
            new.__class__ = WITH_ACTIVATION[type(new)]  # the same norm, then drop and act
            new.drop, new.act = extras['drop'], extras['act']
        setattr(model, name, new)
        count += 1
    return count


#: norm types that compute the same function in eval mode (fixed statistics), by
#: the name a normalised ``norm_cfg`` gives them
EVAL_EQUIVALENT_NORMS = {'BN': 'BN', 'BN2d': 'BN', 'SyncBN': 'BN', 'FrozenBN': 'BN', 'GN': 'GN'}
#: the eps every norm of ``NORM_LAYERS`` defaults to
DEFAULT_NORM_EPS = 1e-5
#: activation arguments that do not change the function: memory reuse, and
#: PReLU's initial slope (a parameter the weights replace)
NON_FUNCTIONAL_ACT_ARGS = frozenset({'inplace', 'device', 'dtype', 'init'})
#: activation types that compute the same function (mmcv's Swish is x * sigmoid(x))
ACT_ALIASES = {'Swish': 'SiLU'}


def act_defaults(act_type: str) -> dict:
    """Keyword defaults of the module ``act_type`` builds (``LeakyReLU``:
    ``negative_slope=0.01``), from its signature."""
    import inspect
    from mmengine.registry import MODELS as MMCV_MODELS  # where mmcv registers them
    cls = MMCV_MODELS.get(act_type)
    if cls is None:
        return {}
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def normalize_act_cfg(act_cfg: Optional[dict]) -> Optional[dict]:
    """``act_cfg`` as the function it computes: every default written out,
    arguments that change nothing (``inplace``) dropped, aliases resolved. Two
    configs of the same activation normalise to equal dicts."""
    if act_cfg is None:
        return None
    act_type = act_cfg.get('type')
    filled = {**act_defaults(act_type), **act_cfg} if isinstance(act_type, str) else act_cfg
    args = {k: filled[k] for k in sorted(filled)
            if k != 'type' and k not in NON_FUNCTIONAL_ACT_ARGS}
    return dict(type=ACT_ALIASES.get(act_type, act_type), **args)


def normalize_norm_cfg(norm_cfg: Optional[dict], keeps_model_eps: bool = False
                       ) -> Optional[dict]:
    """``norm_cfg`` as the function it computes in eval mode: the type up to
    eval equivalence (BN, SyncBN, FrozenBN: ``'BN'``), ``num_groups`` for GN and
    ``eps``; ``momentum`` and ``requires_grad`` (training only) dropped.

    ``keeps_model_eps``: a wrapped model's norms (torchvision's, timm's) keep
    their own eps unless ``norm_cfg`` sets one; then None stands for "the
    model's own norms", which a BN-type ``norm_cfg`` without eps keeps too.
    A dict without ``type`` (records that kept only the eps) stays partial."""
    if norm_cfg is None:
        norm_cfg = {} if keeps_model_eps else dict(type='BN')
    norm_type = norm_cfg.get('type')
    kind = EVAL_EQUIVALENT_NORMS.get(norm_type, norm_type)
    eps = norm_cfg.get('eps')
    if keeps_model_eps and kind in ('BN', None) and eps is None:
        return None
    normalized = {} if kind is None else dict(type=kind)
    if kind == 'GN':
        normalized['num_groups'] = norm_cfg.get('num_groups')
    if eps is not None or not keeps_model_eps:
        normalized['eps'] = DEFAULT_NORM_EPS if eps is None else eps
    return normalized


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
