"""Public checkpoints of our networks, in their own key layouts: ImageNet
backbones, and the backbones of whole COCO detectors (:mod:`.detectors`).

:func:`match_layout` recognises a state dict's layout (or takes one by name)
and returns the backbone type and arguments that rebuild the source's network,
with the weights in our keys (a detector's other keys listed apart). Each source
is a table of rules in its own module; :mod:`.catalog` names the public files.
Nothing here builds a network: the loader above (:mod:`mmbackbones.loader`)
passes the shapes in.
"""
import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from ..errors import CheckpointError
from ..registry import MODELS
from . import detectron2, openmmlab, timm, vovnet_detectron2
from .detectors import ALL_CONSTANTS, DETECTORS
from .entry import DetectorEntry, WeightsEntry
from .layout import Layout

LAYOUTS: Dict[str, Layout] = {layout.name: layout for layout in (
    *timm.LAYOUTS, *openmmlab.LAYOUTS, *vovnet_detectron2.LAYOUTS, *detectron2.LAYOUTS)}

#: prefixes of whole-model wrappers, stripped when every key has one
WRAPPER_PREFIXES = ('module.', )
#: where a detector or classifier keeps its backbone, most specific first
BACKBONE_PREFIXES = ('backbone.bottom_up.body.', 'backbone.bottom_up.', 'img_backbone.',
                     'backbone.body.', 'backbone.')


@dataclass
class ConvertedWeights:
    """A foreign checkpoint in our terms: ``type(**kwargs)`` computes what the
    source's network did, with ``state_dict`` loaded."""
    source: str
    type: str
    kwargs: dict
    state_dict: Dict[str, torch.Tensor]
    set_aside: List[str] = field(default_factory=list)
    filled: List[str] = field(default_factory=list)
    #: keys of a whole model's file outside its backbone (a detector's neck and
    #: heads), in ``set_aside`` too: what a whole model loads by name
    outside: List[str] = field(default_factory=list)

    def build(self, **overrides) -> torch.nn.Module:
        """The backbone with these weights (``overrides``: e.g. ``out_indices``)."""
        model = MODELS.get(self.type)(**{**self.kwargs, **overrides})
        model.load_state_dict(self.state_dict)
        return model

    def config(self) -> str:
        """The ``backbone=dict(...)`` of this network, for a config file."""
        args = ', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())
        return f"backbone=dict(type='mmbackbones.{self.type}', {args})"


#: the tensor shapes of a layout's network, by layout (given by the caller, who
#: can build networks: this package sits below the models)
Shapes = Callable[[Layout], Dict[str, torch.Size]]


def select_backbone(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict, List[str]]:
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    for prefix in BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            aside = [k for k in state_dict if not k.startswith(prefix)]
            return {k[len(prefix):]: v for k, v in state_dict.items()
                    if k.startswith(prefix)}, aside
    return state_dict, []


def _try(layout: Layout, state_dict: Dict[str, torch.Tensor], shapes: Shapes):
    """``(ConvertedWeights, None)`` when ``state_dict`` is exactly ``layout``'s
    network, else ``(None, what did not match)``."""
    mapping, head, unknown = layout.rename(state_dict)
    if unknown:
        return None, f'{len(unknown)} keys no rule of it knows {_preview(unknown)}'
    ours = {new: state_dict[old] for old, new in mapping.items()}
    expected = shapes(layout)
    filled = [k for k in expected if k not in ours and k.endswith('num_batches_tracked')]
    for key in filled:  # Detectron2's FrozenBN keeps no counter
        ours[key] = torch.tensor(0, dtype=torch.long)
    missing = [k for k in expected if k not in ours]
    surplus = [k for k in ours if k not in expected]
    wrong = [f'{k} {tuple(ours[k].shape)} != {tuple(expected[k])}' for k in expected
             if k in ours and ours[k].shape != expected[k]]
    if missing or surplus or wrong:
        problems = [f'{len(missing)} tensors missing {_preview(missing)}' if missing else '',
                    f'{len(surplus)} surplus {_preview(surplus)}' if surplus else '',
                    f'{len(wrong)} of another shape {_preview(wrong)}' if wrong else '']
        return None, ', '.join(p for p in problems if p)
    return ConvertedWeights(layout.name, layout.type, copy.deepcopy(layout.kwargs), ours,
                            set_aside=head, filled=filled), None


def match_layout(state_dict: Dict[str, torch.Tensor], shapes: Shapes,
                 layout: Optional[str] = None, name: str = '<state dict>',
                 types: Optional[Tuple[str, ...]] = None) -> ConvertedWeights:
    """The one layout ``state_dict`` (any wrapper: ``module.``, ``backbone.``,
    ``backbone.bottom_up.``, ``img_backbone.``) is exactly in, converted to our
    keys. ``layout`` (a key of :data:`LAYOUTS`) skips the detection; ``types``
    limits it to layouts of these backbone classes. Raises
    :class:`~mmbackbones.CheckpointError` naming the known layouts and what did
    not match when no layout (or more than one) fits."""
    state_dict = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    state_dict, outside = select_backbone(state_dict)
    if layout is not None and layout not in LAYOUTS:
        raise CheckpointError(f'unknown layout {layout!r}; known: {sorted(LAYOUTS)}')
    candidates = ([LAYOUTS[layout]] if layout else
                  [c for c in LAYOUTS.values() if types is None or c.type in types])
    found, reasons = [], {}
    for candidate in candidates:
        converted, reason = _try(candidate, state_dict, shapes)
        if converted is not None:
            found.append(converted)
        else:
            reasons[candidate.name] = reason
    if len(found) > 1:
        raise CheckpointError(f'{name} fits several layouts {[c.source for c in found]}; '
                              f'pass layout=')
    if not found:
        ranked = sorted(reasons.items(), key=lambda item: len(item[1]))[:3]
        details = '; '.join(f'{n}: {r}' for n, r in ranked)
        raise CheckpointError(
            f'{name} matches no known layout exactly (known: {sorted(LAYOUTS)}). '
            f'Closest: {details}')
    converted = found[0]
    converted.set_aside = outside + converted.set_aside
    converted.outside = outside
    return converted


def _preview(items: List[str], limit: int = 4) -> str:
    return '[' + ', '.join(items[:limit]) + (', ...' if len(items) > limit else '') + ']'


__all__ = ['ConvertedWeights', 'LAYOUTS', 'Layout', 'match_layout', 'select_backbone',
           'DETECTORS', 'ALL_CONSTANTS', 'DetectorEntry', 'WeightsEntry']
