"""Any timm model as a backbone under the contract: ``Timm(model_name='convnext_tiny')``.

timm's own ``features_only`` model computes the features, whichever wrapper timm
picks for the family (``FeatureListNet``, ``EfficientNetFeatures``,
``FeatureGetterNet``, ...), so the numbers are timm's. What this module adds is
the contract (docs/backbones.md#the-contract) on top:

* **Levels** come from timm's ``feature_info``: level ``i`` is the deepest
  feature at stride ``2 ** (i + 1)``. A model without a feature at some stride
  (ConvNeXt and most transformers start at stride 4) has no such level: its
  ``level_channels`` say None there and asking for it is an error. Features at
  stride 1 (VGG, DLA) are before level 0 and not exposed. Models that are not
  hierarchical (a plain ViT) or have features beyond stride 32 are refused.
* **Freezing** needs to know which of timm's modules compute which level, and
  timm's wrappers differ (some keep the model whole and call
  ``forward_intermediates``). One forward on the meta device (no memory, no
  compute) gives the autograd graph of every level: the parameters a level
  depends on are exactly what ``frozen_stages`` freezes, for any family.
* **Weights**: timm's files (``.safetensors`` from the Hub or ``.pth``, timm's
  key layout) load from a local path with ``pretrained_file`` (nothing is ever
  downloaded) or ``init_cfg=Pretrained``: keys are renamed to ours, the head and
  what ``features_only`` drops are set aside, anything else must match.
"""
import difflib
import warnings
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from torch import nn

from ..loader import load_pretrained_cfg, split_pretrained
from ..registry import register_backbone
from .base import LEVEL_STRIDES, BaseBackbone, Level, check_input, keep_foreign_activations
from .layers import replace_batchnorms

#: keywords of ``timm.create_model`` that ``Timm`` sets itself, and what to use instead
OWN_KEYWORDS = {
    'in_chans': 'in_channels', 'drop_path_rate': 'drop_path_rate',
    'pretrained': "weights=True (timm's published file) or pretrained_file",
    'checkpoint_path': 'pretrained_file', 'features_only': 'nothing (always on)',
    'out_indices': 'out_indices (levels by stride)', 'feature_cls': 'nothing',
}


def import_timm():
    try:
        import timm
    except ImportError:
        raise ImportError('mmbackbones.Timm needs timm: pip install "mmbackbones[timm]" '
                          '(or pip install timm)') from None
    return timm


def check_model_name(model_name: str) -> str:
    """``model_name`` when timm knows its architecture (``'convnext_tiny'``, or
    with a pretrained tag, ``'convnext_tiny.in12k_ft_in1k'``); else an error
    listing timm's closest names."""
    timm = import_timm()
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f'model_name must be the name of a timm model, got {model_name!r}')
    architecture = model_name.split('.', 1)[0]
    if timm.is_model(architecture):
        return model_name
    close = difflib.get_close_matches(architecture, timm.list_models(), n=6, cutoff=0.6)
    hint = f'; close matches: {close}' if close else ''
    raise ValueError(f'unknown timm model {model_name!r}{hint} (timm.list_models() lists '
                     f'them all; Hub names such as hf-hub:... would download and are not '
                     f'supported)')


def timm_weights_url(model_name: str, weights: Union[str, bool]) -> str:
    """The address of timm's published weights for ``model_name``: ``weights``
    is True or ``'timm'`` (timm's default tag for the model, or the tag in
    ``model_name``) or a tag (``'ra_in1k'``). The file is timm's own
    (``model.safetensors`` on the Hugging Face Hub, else its ``url``)."""
    timm = import_timm()
    base, _, tag = model_name.partition('.')
    if isinstance(weights, str) and weights not in ('timm', 'true', 'True'):
        tag = weights
    name = f'{base}.{tag}' if tag else base
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None:
        tags = [n for n in timm.list_pretrained(f'{base}.*')]
        raise ValueError(f'timm publishes no weights named {name!r}; for {base}: '
                         f'{tags or "none"}')
    if cfg.hf_hub_id:
        return f'https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors'
    if cfg.url:
        return cfg.url
    raise ValueError(f'timm has no download address for {name!r} (hf_hub_id and url empty)')


def levels_from_feature_info(feature_info: Sequence[dict], model_name: str) -> Dict[int, int]:
    """``{level: index in feature_info}``: level ``i`` is the deepest feature at
    stride ``2 ** (i + 1)``. Models the level space cannot describe are refused."""
    reductions = [int(info['reduction']) for info in feature_info]
    beyond = sorted({r for r in reductions if r > LEVEL_STRIDES[-1]})
    if beyond:
        raise ValueError(f"timm's {model_name} has features at stride {beyond}, beyond the "
                         f'deepest level (stride {LEVEL_STRIDES[-1]}); its strides: {reductions}')
    strides = sorted({r for r in reductions if r > 1})  # stride 1 (VGG, DLA) is before level 0
    odd = [r for r in strides if r not in LEVEL_STRIDES]
    if odd:
        raise ValueError(f"timm's {model_name} has features at stride {odd}, which is no "
                         f'level (valid strides: {list(LEVEL_STRIDES)}); its strides: '
                         f'{reductions}')
    if len(strides) < 2:
        raise ValueError(f"timm's {model_name} is not hierarchical: every feature has stride "
                         f'{strides} (e.g. a plain ViT); a backbone needs features at several '
                         f'of the strides {list(LEVEL_STRIDES)}')
    levels = {}
    for index, reduction in enumerate(reductions):
        if reduction in LEVEL_STRIDES:
            levels[LEVEL_STRIDES.index(reduction)] = index  # a later one is deeper
    return levels


def _canonical(key: str) -> str:
    # timm's FeatureListNet flattens ``stages.0`` into ``stages_0``
    return key.replace('_', '.')


def timm_key_map(model_keys: Sequence[str], feature_keys: Sequence[str]) -> Dict[str, str]:
    """``{key of timm's model: key of its features_only model}`` for every tensor
    the features model keeps; FeatureGetterNet nests the model as ``model.``."""
    by_canonical: Dict[str, List[str]] = {}
    for key in model_keys:
        by_canonical.setdefault(_canonical(key), []).append(key)
    mapping = {}
    for key in feature_keys:
        for candidate in (key, key.partition('.')[2]):
            hits = by_canonical.get(_canonical(candidate), [])
            if len(hits) == 1:
                mapping[hits[0]] = key
                break
    return mapping


def graph_parameters(output: torch.Tensor, names: Dict[int, str]) -> Set[str]:
    """Names (from ``names``, keyed by tensor id) of the leaf tensors ``output``
    was computed from: the autograd graph, walked without a backward pass."""
    found, seen, stack = set(), set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, 'variable', None)  # AccumulateGrad: a leaf
        if variable is not None and id(variable) in names:
            found.add(names[id(variable)])
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def maximal_modules(module: nn.Module, names: Set[str], prefix: str = '') -> List[nn.Module]:
    """The largest submodules of ``module`` all of whose parameters are in
    ``names`` (parameter names relative to ``module``)."""
    own = [prefix + name for name, _ in module.named_parameters()]
    if own and all(name in names for name in own):
        return [module]
    found = []
    for child_name, child in module.named_children():
        found += maximal_modules(child, names, f'{prefix}{child_name}.')
    return found


@register_backbone
class Timm(BaseBackbone):
    """A timm model (``timm.create_model(model_name, features_only=True)``, random
    weights) cut into the five levels of the contract.

    Args:
        model_name: a timm model, e.g. ``'convnext_tiny'``, ``'resnet50d'``,
            ``'regnety_016'``, ``'efficientnetv2_rw_s'``; a pretrained tag may
            follow (``'convnext_tiny.in12k_ft_in1k'``: its input size is used).
        pretrained_file: timm's weights for this model, a local ``.safetensors``
            or ``.pth`` file in timm's layout, loaded strictly when the model is
            built (not on the meta device, where weights have nowhere to go) and
            again by ``init_weights()``, after every other initialiser.
        weights: timm's published weights, downloaded once into the weights
            cache and loaded like ``pretrained_file``: True or ``'timm'`` for
            the tag in ``model_name`` (or timm's default), or a tag
            (``'ra_in1k'``).
        model_kwargs: further keywords of ``timm.create_model`` (e.g.
            ``dict(ls_init_value=1e-6)``); unknown keywords of ``Timm`` go
            there too.
        norm_cfg: None keeps timm's norms; else every BatchNorm (timm's
            BatchNormAct2d too, with its activation) becomes ``BN``, ``SyncBN``,
            ``GN`` or ``FrozenBN``, keeping its eps, momentum and values. Other
            norms (LayerNorm, GroupNorm) stay timm's.
        act_cfg: must be None: activations are timm's (``act_layer`` in
            ``model_kwargs`` where timm's model takes it).
        with_cp: timm's gradient checkpointing.
        drop_path_rate: timm's stochastic depth rate.

    ``out_indices``, ``frozen_stages``, ``norm_eval``, ``in_channels`` and
    ``init_cfg`` are the contract's (see :class:`BaseBackbone`).
    """
    supports_drop_path = True  # timm refuses the keyword for models without it
    arch_arg_names = ('model_name', 'model_kwargs', 'in_channels')
    keeps_model_norms = True

    def __init__(self,
                 model_name: str,
                 *,
                 pretrained_file: Optional[str] = None,
                 weights: Union[str, bool, None] = None,
                 model_kwargs: Optional[dict] = None,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 in_channels: int = 3,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.0,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 **timm_kwargs):
        self.model_name = check_model_name(model_name)
        self.model_kwargs = {**(model_kwargs or {}), **timm_kwargs}
        for key in self.model_kwargs:
            if key in OWN_KEYWORDS:
                raise ValueError(f'{key!r} is set by Timm itself; use {OWN_KEYWORDS[key]}')
        keep_foreign_activations(dict(act_cfg=act_cfg), f"Timm('{model_name}')", "timm's",
                                 hint="; pass timm's act_layer in model_kwargs where the "
                                      'model takes one')
        if pretrained_file and weights:
            raise ValueError(f'{self.describe()}: give pretrained_file= or weights=, not both')
        given = 'pretrained_file' if pretrained_file else 'weights' if weights else None
        pretrained_cfgs, _ = split_pretrained(init_cfg)
        if given and pretrained_cfgs:
            # both would load, one over the other: which file the model holds is
            # then an accident of order
            raise ValueError(
                f'{self.describe()}: give {given}= or init_cfg=dict(type='
                f"'{pretrained_cfgs[0]['type']}', checkpoint="
                f"{pretrained_cfgs[0].get('checkpoint')!r}), not both: each loads the "
                f'whole backbone')
        self._replace_norm = norm_cfg is not None
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, norm_cfg=norm_cfg, act_cfg=None,
                         in_channels=in_channels, with_cp=with_cp,
                         drop_path_rate=drop_path_rate, init_cfg=init_cfg)
        # MMEngine's init_weights() calls init_weights() of children that have one
        # (some timm models do): that would re-initialise a loaded pretrained_file
        self.timm.is_init = True
        self._register_load_state_dict_pre_hook(self._rename_timm_keys)
        self.pretrained_file = pretrained_file
        self.weights = weights
        # loaded now, as timm's pretrained=True does, and again by init_weights()
        # after any other initialiser
        source = self.pretrained_source()
        if source and not any(p.is_meta for p in self.parameters()):
            load_pretrained_cfg(self, source)

    def pretrained_source(self) -> Optional[dict]:
        if self.pretrained_file:
            return dict(type='Pretrained', checkpoint=self.pretrained_file)
        if self.weights:
            return dict(type='Pretrained', checkpoint=timm_weights_url(self.model_name,
                                                                       self.weights))
        return None

    @classmethod
    def variants(cls) -> Dict[str, dict]:
        return {}  # every timm model, by model_name

    def describe(self) -> str:
        return f"Timm('{self.model_name}')"

    # -- building -------------------------------------------------------------------
    def _create(self, **kwargs) -> nn.Module:
        timm = import_timm()
        kwargs = dict(self.model_kwargs, in_chans=self.in_channels, **kwargs)
        if self.drop_path_rate > 0:  # models without stochastic depth reject the keyword
            kwargs['drop_path_rate'] = self.drop_path_rate
        try:
            return timm.create_model(self.model_name, pretrained=False, **kwargs)
        except TypeError as err:  # an unknown keyword, in timm's words
            raise ValueError(f"timm's {self.model_name} does not take these arguments "
                             f'({sorted(kwargs)}): {err}') from None

    def build_levels(self) -> List[Level]:
        with torch.device('meta'):  # the whole model, for its metadata and key names only
            model = self._create()
        feature_info = getattr(model, 'feature_info', None)
        if not feature_info:
            raise ValueError(f"timm's {self.model_name} has no feature_info: timm cannot "
                             f'extract its features')
        feature_info = [dict(info) for info in feature_info]
        levels = levels_from_feature_info(feature_info, self.model_name)
        indices = tuple(levels[level] for level in sorted(levels))
        self.timm = self._create(features_only=True, out_indices=indices)
        got = list(self.timm.feature_info.reduction())
        expected = [feature_info[i]['reduction'] for i in indices]
        if got != expected:  # a wrapper that indexes its features otherwise
            raise ValueError(f"timm's {self.model_name} features_only model gives strides "
                             f'{got} for out_indices {indices}, expected {expected}')
        self.timm_key_map = timm_key_map(list(model.state_dict()), list(self.timm.state_dict()))
        self.timm_dropped_keys = frozenset(model.state_dict()) - set(self.timm_key_map)
        self._nhwc = getattr(self.timm, 'output_fmt', 'NCHW') == 'NHWC'  # a str enum in timm
        self._slots = {level: slot for slot, level in enumerate(sorted(levels))}
        self._input_size = self._analysis_size(model)
        if self._replace_norm:
            replaced = replace_batchnorms(self.timm, self.norm_cfg)
            if not replaced and self.norm_cfg['type'] != 'BN':  # BN: what it has already
                warnings.warn(f"{self.describe()} has no BatchNorm, so norm_cfg={self.norm_cfg} "
                              f"changes nothing: its norms stay timm's", UserWarning)
        self.level_parameters = self._find_level_parameters()
        if self.with_cp:
            self._enable_checkpointing()
        channels = self.timm.feature_info.channels()
        names = self.timm.feature_info.module_name()
        return [Level(names[self._slots[i]], None, channels[self._slots[i]])
                if i in self._slots else Level('', None, None) for i in range(len(LEVEL_STRIDES))]

    def _analysis_size(self, model: nn.Module) -> Tuple[int, int]:
        size = self.model_kwargs.get('img_size') or \
            getattr(model, 'pretrained_cfg', {}).get('input_size', (3, 224, 224))[-2:]
        return (size, size) if isinstance(size, int) else tuple(size)

    def _enable_checkpointing(self) -> None:
        for owner in (self.timm, getattr(self.timm, 'model', None)):
            if hasattr(owner, 'set_grad_checkpointing'):
                owner.set_grad_checkpointing(True)
                return
        raise ValueError(f"{self.describe()}: timm's model has no gradient checkpointing, "
                         f'so with_cp=True cannot apply')

    def _find_level_parameters(self) -> Dict[int, Set[str]]:
        """``{level: names of the parameters of self.timm it depends on}``, from the
        autograd graph of one forward: on the meta device (free, any input size),
        or where an op has no meta kernel, on the model's own device."""
        was_training = self.timm.training
        self.timm.eval()  # no running statistics to update, no dropped paths
        x = torch.zeros(1, self.in_channels, *self._input_size)
        try:
            try:
                outputs, names = self._graph_forward(x, meta=True)
            except (NotImplementedError, RuntimeError):
                outputs, names = self._graph_forward(x, meta=False)
        finally:
            self.timm.train(was_training)
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        return {level: graph_parameters(outputs[slot], names)
                for level, slot in self._slots.items()}

    def _graph_forward(self, x: torch.Tensor, meta: bool):
        params = dict(self.timm.named_parameters())
        if not meta:
            with torch.enable_grad():
                leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
                device = next(iter(params.values())).device
                outputs = torch.func.functional_call(self.timm, leaves, (x.to(device), ))
            return outputs, {id(t): name for name, t in leaves.items()}
        leaves = {name: torch.empty_like(p, device='meta').requires_grad_()
                  for name, p in params.items()}
        buffers = {name: torch.empty_like(b, device='meta')
                   for name, b in self.timm.named_buffers()}
        with torch.enable_grad():
            outputs = torch.func.functional_call(self.timm, {**leaves, **buffers},
                                                 (x.to('meta'), ))
        return outputs, {id(t): name for name, t in leaves.items()}

    # -- the contract ---------------------------------------------------------------
    def frozen_parameter_names(self) -> Set[str]:
        """Parameters of ``self.timm`` that compute levels ``0..frozen_stages``."""
        return set().union(*(self.level_parameters.get(i, set())
                             for i in range(self.frozen_stages + 1)))

    def frozen_modules(self) -> List[nn.Module]:
        return maximal_modules(self.timm, self.frozen_parameter_names())

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        # parameters held by a module that also holds later ones (a position
        # embedding on the model itself): frozen one by one
        frozen = self.frozen_parameter_names()
        for name, param in self.timm.named_parameters():
            if name in frozen:
                param.requires_grad = False

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = check_input(x, self.in_channels, self.describe())
        features = self.timm(x)
        if isinstance(features, dict):
            features = list(features.values())
        outs = tuple(features[self._slots[i]] for i in self.out_indices)
        if self._nhwc:  # timm's transformers may return channels last
            outs = tuple(out.permute(0, 3, 1, 2) for out in outs)
        return outs

    # -- timm's files -----------------------------------------------------------------
    def _rename_timm_keys(self, state_dict, prefix, *args) -> None:
        """A state dict in timm's layout (its model's keys) loads as ours: keys
        renamed, what ``features_only`` drops (head, final norm, ...) set aside
        and reported; anything else is left for the strict loader to report."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        local = [k[len(prefix):] for k in keys]
        if any(k.startswith('timm.') for k in local) or \
                not any(k in self.timm_key_map for k in local):
            return  # ours, or not timm's either: the loader reports it
        self.dropped_head_keys = []
        for key, short in zip(keys, local):
            if short in self.timm_key_map:
                state_dict[f'{prefix}timm.{self.timm_key_map[short]}'] = state_dict.pop(key)
            elif short in self.timm_dropped_keys:
                self.dropped_head_keys.append(short)
                del state_dict[key]
