"""The one backbone contract every family implements (docs/backbones.md#the-contract).

A backbone is five levels; level ``i`` has stride ``2 ** (i + 1)``. A family only
describes its architecture in :meth:`BaseBackbone.build_levels`; selecting
outputs, freezing, ``norm_eval``, gradient checkpointing, input checks and the
channel/stride metadata live here, once.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.fx
from mmengine.model import BaseModule
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..loader import load_pretrained_cfg, plain_record, split_pretrained
from .layers import (NORM_TYPES, ConvNormAct, check_act_cfg, check_norm_cfg,
                     normalize_act_cfg, normalize_norm_cfg)

NUM_LEVELS = 5
LEVEL_STRIDES = tuple(2 ** (i + 1) for i in range(NUM_LEVELS))


class Level(NamedTuple):
    """One level as a family builds it: registered as ``name``; ``module`` maps
    the previous level's output (or the image) to ``channels`` channels.

    ``channels=None`` marks an absent level: the network has no feature at that
    stride (a ConvNeXt's stem ends at stride 4, so it has no level 0); asking for
    it is an error. ``module=None`` for a present level means the family computes
    its levels in one network of its own (a wrapped timm model): it then provides
    ``forward`` and :meth:`BaseBackbone.frozen_modules` itself."""
    name: str
    module: Optional[nn.Module]
    channels: Optional[int]


def normalize_out_indices(out_indices: Union[int, Sequence[int]],
                          num_levels: int = NUM_LEVELS, absent: Sequence[int] = (),
                          owner: str = 'this backbone') -> Tuple[int, ...]:
    """Resolve negative indices; reject empty, out-of-range or repeated ones, and
    levels ``owner`` does not have (``absent``)."""
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    valid = f'valid: {-num_levels}..{num_levels - 1}'
    if not isinstance(out_indices, Sequence) or not out_indices or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in out_indices):
        raise ValueError(f'out_indices must be a non-empty sequence of ints '
                         f'({valid}), got {out_indices!r}')
    resolved = []
    for index in out_indices:
        if not -num_levels <= index < num_levels:
            raise ValueError(f'out_indices {tuple(out_indices)} has {index}, out of '
                             f'range for {num_levels} levels ({valid})')
        resolved.append(index % num_levels)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f'out_indices {tuple(out_indices)} names a level more than '
                         f'once (resolved to {tuple(resolved)})')
    missing = [i for i in resolved if i in absent]
    if missing:
        present = [i for i in range(num_levels) if i not in absent]
        raise ValueError(f'out_indices {tuple(out_indices)} asks for level {missing[0]} '
                         f'(stride {LEVEL_STRIDES[missing[0]]}), which {owner} does not have; '
                         f'its levels: {present}')
    return tuple(sorted(resolved))


def select_variant(table: Dict, key, family: str, arg: str = 'depth'):
    """``table[key]``, or a ValueError naming the valid keys."""
    try:
        return table[key]
    except (KeyError, TypeError):
        raise ValueError(f'unknown {family} {arg} {key!r}; valid: '
                         f'{sorted(table, key=str)}') from None


def keep_foreign_activations(kwargs: dict, owner: str, source: str, hint: str = '') -> None:
    """A wrapped foreign model (torchvision's, timm's) computes with its own
    activations: ``act_cfg`` other than None is refused, then set to None."""
    if kwargs.get('act_cfg') is not None:
        raise ValueError(f'{owner} keeps {source} activations; act_cfg={kwargs["act_cfg"]!r} '
                         f'is not supported{hint}')
    kwargs['act_cfg'] = None


@torch.fx.wrap
def check_input(x: torch.Tensor, in_channels: int, name: str) -> torch.Tensor:
    """The input must be ``(N, in_channels, H, W)``. A leaf for ``torch.fx``: the
    check stays in a traced graph instead of breaking the trace."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f'{name} expects an (N, {in_channels}, H, W) input, got shape '
                         f'{tuple(x.shape)}')
    return x


DROP_PATH_FAMILIES = ('Darknet, CSPDarknet, VoVNet V2 (residual=True, depth >= 39), '
                      'EfficientNet, Timm')


class BaseBackbone(BaseModule):
    """Five-level backbone with the contract of docs/backbones.md#the-contract.

    Args:
        out_indices: levels ``forward`` returns, shallowest first; negative
            indices count from the deepest level.
        frozen_stages: ``-1`` freezes nothing; ``k`` freezes levels ``0..k``
            (no gradients, norms in eval mode), re-applied on every ``train()``.
        norm_eval: keep every norm layer in eval mode while training.
        norm_cfg: ``BN``, ``SyncBN``, ``GN`` (with ``num_groups``) or ``FrozenBN``.
        act_cfg: activation of every conv unit (``None`` for none).
        in_channels: channels of the input image.
        with_cp: gradient checkpointing of every block (saves memory, costs a
            second forward during backward).
        drop_path_rate: stochastic depth on residual branches, rising linearly
            from 0 to this rate over the blocks; only families with residual blocks.
        init_cfg: MMEngine initialisation config, e.g. ``dict(type='Pretrained',
            checkpoint=PATH, prefix='backbone.')``.
    """

    #: whether the family has residual blocks that ``drop_path_rate`` can act on
    supports_drop_path = False
    #: constructor arguments (stored as attributes) that change what it computes
    arch_arg_names: Tuple[str, ...] = ()
    #: whether its norms are a wrapped model's (torchvision's, timm's), which keep
    #: their own eps unless ``norm_cfg`` sets one
    keeps_model_norms = False

    def __init__(self,
                 *,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 in_channels: int = 3,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.0,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg)
        name = type(self).__name__
        # checked again against the absent levels once the levels are built
        normalize_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < NUM_LEVELS:
            raise ValueError(f'frozen_stages={frozen_stages!r} is out of range; valid: '
                             f'-1 (nothing) .. {NUM_LEVELS - 1} (every level)')
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        if drop_path_rate > 0 and not self.supports_drop_path:
            raise ValueError(f'drop_path_rate={drop_path_rate}: {self.no_drop_path_reason()}; '
                             f'use 0 (backbones with stochastic depth: {DROP_PATH_FAMILIES})')
        self.norm_cfg = dict(type='BN') if norm_cfg is None else dict(norm_cfg)
        self.act_cfg = None if act_cfg is None else dict(act_cfg)
        check_norm_cfg(self.norm_cfg)
        check_act_cfg(self.act_cfg)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.in_channels = in_channels
        self.with_cp = with_cp
        self.drop_path_rate = drop_path_rate

        levels = self.build_levels()
        if len(levels) != NUM_LEVELS:
            raise RuntimeError(f'{name}.build_levels() returned {len(levels)} '
                               f'levels, the contract needs {NUM_LEVELS}')
        for level in levels:
            if level.module is not None:
                self.add_module(level.name, level.module)
        self.level_names = tuple(level.name for level in levels)
        self.level_channels = tuple(level.channels for level in levels)
        self._absent_levels = tuple(i for i, c in enumerate(self.level_channels) if c is None)
        self.out_indices = out_indices
        if frozen_stages in self.absent_levels:
            raise ValueError(
                f'frozen_stages={frozen_stages} names level {frozen_stages} (stride '
                f'{LEVEL_STRIDES[frozen_stages]}), which {self.describe()} does not have; '
                f'valid: -1 (nothing) or one of its levels {self.present_levels}')
        self._freeze_stages()

    # -- what a family provides ------------------------------------------------
    def no_drop_path_reason(self) -> str:
        """Why ``drop_path_rate`` cannot apply (when ``supports_drop_path`` is False)."""
        return f'{type(self).__name__} does not implement stochastic depth'

    def build_levels(self) -> List[Level]:
        """Build the five levels, shallowest first."""
        raise NotImplementedError

    # -- helpers for families --------------------------------------------------
    def conv(self, in_channels: int, out_channels: int, kernel_size: int,
             stride: int = 1) -> ConvNormAct:
        """A conv unit with this backbone's norm and activation."""
        return ConvNormAct(in_channels, out_channels, kernel_size, stride,
                           norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    def drop_path_rates(self, num_blocks: int) -> List[float]:
        """Stochastic-depth rate of each residual block, rising linearly."""
        if num_blocks <= 1:
            return [self.drop_path_rate] * num_blocks
        return [self.drop_path_rate * i / (num_blocks - 1) for i in range(num_blocks)]

    def arch_args(self) -> Dict[str, object]:
        """What the network computes, as arguments: backbones with equal
        ``arch_args()`` and equal weights give equal features in eval mode (the
        norm type may differ: BN, SyncBN and FrozenBN agree there). Normalised
        (:meth:`normalize_arch`): two configs of one network give equal dicts."""
        args = {name: getattr(self, name) for name in self.arch_arg_names}
        return self.normalize_arch(dict(args, act_cfg=self.act_cfg, norm_cfg=self.norm_cfg))

    @classmethod
    def normalize_arch(cls, arch: Dict[str, object]) -> Dict[str, object]:
        """``arch`` (an ``arch_args()``, or one a checkpoint recorded, of any
        version) in the form :meth:`arch_args` returns: activation and norm with
        their defaults filled in and what does not change the function dropped
        (``inplace``, ``momentum``), sequences as lists (a record is written as
        lists). Records written before norms were compared in full hold
        ``norm_eps`` alone: it becomes a partial ``norm_cfg`` (no type)."""
        arch = dict(arch)
        if 'norm_eps' in arch:
            norm_eps = arch.pop('norm_eps')
            arch.setdefault('norm_cfg', {'eps': norm_eps})
        if 'norm_cfg' in arch:
            arch['norm_cfg'] = normalize_norm_cfg(arch['norm_cfg'], cls.keeps_model_norms)
        if 'act_cfg' in arch:
            arch['act_cfg'] = normalize_act_cfg(arch['act_cfg'])
        return plain_record(arch)

    def frozen_modules(self) -> List[nn.Module]:
        """The modules that compute levels ``0..frozen_stages``: frozen (no
        gradients, in eval mode) on every ``train()``."""
        return [getattr(self, self.level_names[i]) for i in range(self.frozen_stages + 1)
                if i not in self.absent_levels]

    def describe(self) -> str:
        """How errors name this backbone."""
        return type(self).__name__

    # -- metadata (no forward pass) --------------------------------------------
    @property
    def out_indices(self) -> Tuple[int, ...]:
        """The levels ``forward`` returns, shallowest first. Assigning checks the
        value (the Detectron2 adapter selects levels this way)."""
        return self._out_indices

    @out_indices.setter
    def out_indices(self, value: Union[int, Sequence[int]]) -> None:
        self._out_indices = normalize_out_indices(value, absent=self.absent_levels,
                                                  owner=self.describe())

    @property
    def absent_levels(self) -> Tuple[int, ...]:
        """Levels the network has no feature for (``level_channels`` is None)."""
        return self._absent_levels

    @property
    def present_levels(self) -> Tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.level_channels) if c is not None)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output, in ``out_indices`` order."""
        return tuple(self.level_channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Stride of each output, in ``out_indices`` order."""
        return tuple(LEVEL_STRIDES[i] for i in self.out_indices)

    @property
    def feature_info(self) -> List[dict]:
        """timm-style description of the selected outputs."""
        return [dict(level=i, module=self.level_names[i], num_chs=self.level_channels[i],
                     reduction=LEVEL_STRIDES[i]) for i in self.out_indices]

    # -- running -----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = check_input(x, self.in_channels, type(self).__name__)  # used: FX keeps it
        outs = []
        for index, name in enumerate(self.level_names[:self.out_indices[-1] + 1]):
            if index in self.absent_levels:
                continue  # the next level starts from the same input
            x = self._run_level(getattr(self, name), x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _run_level(self, level: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not (self.with_cp and self.training and torch.is_grad_enabled()):
            return level(x)
        blocks = level.children() if isinstance(level, nn.Sequential) else [level]
        for block in blocks:
            x = checkpoint(block, x, use_reentrant=False)
        return x

    def _freeze_stages(self) -> None:
        for level in self.frozen_modules():
            level.eval()
            for param in level.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        """MMEngine initialisation, except that every ``Pretrained`` entry (in a
        dict or a list ``init_cfg``, and :meth:`pretrained_source`) loads through
        :func:`mmbackbones.load_weights`, strictly and after every other
        initialiser, whatever their order. Like MMEngine, loading happens here,
        not at construction."""
        pretrained, others = split_pretrained(self.init_cfg)
        implicit = self.pretrained_source()
        if implicit is not None:
            pretrained.append(implicit)
        if not pretrained:
            super().init_weights()
            return
        if others:
            init_cfg, self.init_cfg = self.init_cfg, others
            try:
                super().init_weights()
            finally:
                self.init_cfg = init_cfg
        for cfg in pretrained:
            load_pretrained_cfg(self, cfg)
        self._is_init = True

    def pretrained_source(self) -> Optional[dict]:
        """A ``Pretrained`` init_cfg the backbone's own arguments imply (Timm's
        ``pretrained_file``/``weights``), loaded last by :meth:`init_weights`."""
        return None

    def train(self, mode: bool = True) -> 'BaseBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, NORM_TYPES):
                    module.eval()
        return self
