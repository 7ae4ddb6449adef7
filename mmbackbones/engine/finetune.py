"""Fine-tuning a detector to other classes: ``load_from`` with ``load_from_reinit``
(MMDetection), ``MODEL.WEIGHTS`` with ``MODEL.MMBACKBONES.WEIGHTS_REINIT`` (Detectron2).

MMDetection's users start from a detector trained elsewhere (COCO's 80
classes) and change ``num_classes``. ``load_from`` is strict here
(:class:`~.hooks.CheckpointNetworkHook`), so the layers whose outputs are per
class no longer fit. The config names them::

    load_from = 'work_dirs/coco/epoch_12.pth'
    load_from_reinit = ['bbox_head.retina_cls']

and those tensors keep the new model's initialisation while every other one
loads strictly. Only the ``load_from`` of a training run does this: resuming
and ``tools/test.py`` load every tensor. Detectron2's checkpointer
(:class:`~mmbackbones.adapters.detectron2.StrictDetectionCheckpointer`) applies
the same rule to ``MODEL.WEIGHTS``, except when it resumes its own checkpoint.
"""
import difflib
import logging
from typing import Dict, List, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import nn

from ..checkpoint import extract_state_dict
from ..errors import CheckpointError
from ..loader import _tensors, _without_wrapper  # the keys load_source compares

OPTION = 'load_from_reinit'
DETECTRON2_OPTION = 'MODEL.MMBACKBONES.WEIGHTS_REINIT'

#: the layers of MMDetection's and Detectron2's heads (by class, subclasses
#: included) whose outputs are per class: what ``load_from_reinit`` (or
#: ``MODEL.MMBACKBONES.WEIGHTS_REINIT``) names to change the class count
CLASS_LAYERS = {
    'RetinaHead': ('retina_cls',),
    'FCOSHead': ('conv_cls',),
    # each anchor's box, objectness and class outputs come from one conv: the
    # whole conv is re-initialised, box and objectness outputs too
    'YOLOV3Head': ('convs_pred',),
    'BBoxHead': ('fc_cls', 'fc_reg'),  # fc_reg only when reg_class_agnostic=False
    # Detectron2
    'RetinaNetHead': ('cls_score',),
    'FastRCNNOutputLayers': ('cls_score', 'bbox_pred'),  # bbox_pred unless CLS_AGNOSTIC_BBOX_REG
    'MaskRCNNConvUpsampleHead': ('predictor',),  # unless CLS_AGNOSTIC_MASK
    'SemSegFPNHead': ('predictor',),
}


def _per_class(head: nn.Module, layer: str) -> bool:
    """Whether ``head.<layer>`` has outputs per class: box and mask layers may be
    shared by all classes, and then keep their shape when the class count changes."""
    if layer == 'fc_reg':  # MMDetection's BBoxHead
        return not getattr(head, 'reg_class_agnostic', True)
    if layer == 'bbox_pred' and hasattr(head, 'box2box_transform'):  # Detectron2's
        return head.bbox_pred.out_features != len(head.box2box_transform.weights)
    if layer == 'predictor':  # Detectron2's CLS_AGNOSTIC_MASK: one mask for all
        return getattr(head.predictor, 'out_channels', None) != 1
    return True


def class_layers(model: nn.Module) -> List[str]:
    """The modules of ``model`` whose outputs are per class (:data:`CLASS_LAYERS`)."""
    found = []
    for path, module in model.named_modules():
        for cls in type(module).__mro__:
            for layer in CLASS_LAYERS.get(cls.__name__, ()):
                if isinstance(getattr(module, layer, None), nn.Module) and _per_class(
                        module, layer):
                    found.append(f'{path}.{layer}' if path else layer)
    return found


def _names(names: Union[str, Sequence[str], None], option: str = OPTION) -> List[str]:
    if names is None:
        return []
    if isinstance(names, str):  # --cfg-options load_from_reinit=bbox_head.retina_cls
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'{option} must be a list of module or tensor names, e.g. '
                         f"['bbox_head.retina_cls']; got {names!r}")
    return [n.rstrip('.') for n in names]


def reinit_keys(model: nn.Module, names: Union[str, Sequence[str], None],
                option: str = OPTION) -> List[str]:
    """The tensors of ``model`` that ``names`` (modules or tensors) cover; a name
    that covers none is an error naming the valid ones."""
    keys = list(model.state_dict())
    chosen = []
    for name in _names(names, option):
        matched = [k for k in keys if k == name or k.startswith(name + '.')]
        if not matched:
            modules = sorted({k.rsplit('.', 1)[0] for k in keys})
            close = difflib.get_close_matches(name, modules + keys, n=3, cutoff=0.6)
            raise ValueError(
                f'{option}: {name!r} names no tensor of this {type(model).__name__}'
                + (f'; did you mean {close}?' if close else '.')
                + f' Its class-dependent layers: {class_layers(model)}; any module or '
                f"tensor name of model.state_dict() (e.g. 'bbox_head') is valid.")
        chosen += [k for k in matched if k not in chosen]
    return chosen


def shape_mismatches(model: nn.Module, state_dict: Dict[str, torch.Tensor]
                     ) -> List[Tuple[str, tuple, tuple]]:
    """``(key, the file's shape, the model's)`` of every tensor that both hold
    with different shapes."""
    ours = model.state_dict()
    return [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in state_dict.items()
            if k in ours and isinstance(v, torch.Tensor) and v.shape != ours[k].shape]


def _suggestion(model: nn.Module, keys: List[str]) -> List[str]:
    """The modules to name for ``keys``: a class-dependent layer that holds one
    of them, else its parent module."""
    known = class_layers(model)
    names = []
    for key in keys:
        name = next((m for m in known if key.startswith(m + '.')), key.rsplit('.', 1)[0])
        if name not in names:
            names.append(name)
    return names


def fine_tune_keys(model: nn.Module, checkpoint: dict,
                   names: Union[str, Sequence[str], None], source: str,
                   logger: Union[str, logging.Logger] = 'current',
                   option: str = OPTION) -> List[str]:
    """The tensors a training run's ``load_from`` leaves at their initialisation
    (``names``: the config's ``load_from_reinit``), each logged. A tensor that
    differs in shape from the file's and is not among them is an error that
    names it and the option, before anything loads."""
    keep = reinit_keys(model, names, option)
    state_dict = _without_wrapper(_tensors(extract_state_dict(checkpoint)))
    mismatched = [m for m in shape_mismatches(model, state_dict) if m[0] not in keep]
    # a backbone that differs is another network: load_source says which
    if mismatched and not any(k.startswith('backbone.') for k, _, _ in mismatched):
        shown = ', '.join(f'{k} (file {list(a)}, model {list(b)})' for k, a, b in mismatched)
        wanted = list(dict.fromkeys(_names(names, option)
                                    + _suggestion(model, [k for k, _, _ in mismatched])))
        raise CheckpointError(
            f'{source} does not fit this {type(model).__name__}: {len(mismatched)} '
            f'tensors differ in shape: {shown}. To fine-tune to another class count, '
            f'set {option}={wanted!r} in the config: the named layers keep their new '
            f'initialisation and every other tensor loads strictly.')
    ours = model.state_dict()
    for key in keep:
        theirs = state_dict.get(key)
        if theirs is None:
            whence, level = 'the file has none', logging.INFO
        elif theirs.shape != ours[key].shape:
            whence, level = f'the file\'s is {list(theirs.shape)}', logging.INFO
        else:  # it would load: the user asked for a fresh one all the same
            whence, level = 'the file\'s has that shape too and is not loaded', \
                logging.WARNING
        print_log(f'{option}: {key} {list(ours[key].shape)} is re-initialised ({whence})',
                  logger=logger, level=level)
    return keep


__all__ = ['CLASS_LAYERS', 'OPTION', 'DETECTRON2_OPTION', 'class_layers', 'reinit_keys',
           'shape_mismatches', 'fine_tune_keys']
