"""Exporting a backbone to ONNX.

``export_onnx`` folds BatchNorm (:func:`~mmbackbones.deploy.fuse`), and exports
with torch's default exporter (``dynamo=True``, which needs ``onnxscript``) or
the TorchScript-based one (``dynamo=False``). With ``dynamic=True`` the batch and
the image size are free: any batch, and heights and widths that are multiples of
32, every backbone's deepest stride (detectors pad to it). The file appears only
when the export succeeded (written beside, then renamed).
"""
import copy
import warnings
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..deploy import fuse
from .files import written_whole

#: every backbone's deepest stride: a dynamic export takes sizes in multiples of it
SIZE_MULTIPLE = 32
DEFAULT_OPSET = {True: 18, False: 17}


def output_names(model: nn.Module) -> List[str]:
    indices = getattr(model, 'out_indices', None)
    return [f'level{i}' for i in indices] if indices else ['output']


def export_onnx(model: nn.Module, path: str, shape: Sequence[int] = (1, 3, 224, 224),
                dynamic: bool = True, dynamo: bool = True,
                opset: Optional[int] = None) -> str:
    """Write ``model`` (a backbone, in eval mode, BN folded) to ``path`` as ONNX.

    ``shape`` is the example input (N, C, H, W); with ``dynamic`` its H and W
    must be multiples of 32. Inputs are named ``image``, outputs ``level<i>`` by
    the backbone's ``out_indices``. Returns ``path``."""
    if dynamic and (shape[2] % SIZE_MULTIPLE or shape[3] % SIZE_MULTIPLE):
        raise ValueError(f'shape={tuple(shape)}: a dynamic export takes heights and widths in '
                         f'multiples of {SIZE_MULTIPLE} (the deepest stride); e.g. '
                         f'{_round_up(shape)}, or dynamic=False for exactly this size')
    if dynamo:
        try:
            import onnxscript  # noqa: F401  (torch's default exporter needs it)
        except ImportError:
            raise ImportError('torch.onnx.export(dynamo=True), torch\'s default exporter, '
                              'needs onnxscript: pip install "mmbackbones[onnx]" (or '
                              'onnxscript), or export with dynamo=False') from None
    model = fuse(copy.deepcopy(model).eval())
    # torch.export specializes dimensions of size 1: trace a dynamic batch with two
    x = torch.randn(max(2, shape[0]) if dynamic else shape[0], *shape[1:])
    names = output_names(model)
    kwargs = dict(input_names=['image'], output_names=names,
                  opset_version=opset or DEFAULT_OPSET[dynamo], dynamo=dynamo)
    if dynamic and dynamo:
        dim = torch.export.Dim
        kwargs['dynamic_shapes'] = ({0: dim('batch', min=1, max=1024),
                                     2: SIZE_MULTIPLE * dim('height32', min=1, max=256),
                                     3: SIZE_MULTIPLE * dim('width32', min=1, max=256)}, )
    elif dynamic:
        kwargs['dynamic_axes'] = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
    if dynamo:
        kwargs.update(external_data=False, verbose=False)
    with written_whole(path) as tmp, warnings.catch_warnings():
        # the tracer's notes on the input check's shape test
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        torch.onnx.export(model, (x, ), tmp, **kwargs)
    return path


def _round_up(shape: Sequence[int]) -> tuple:
    up = [-(-s // SIZE_MULTIPLE) * SIZE_MULTIPLE for s in shape[2:]]
    return (*shape[:2], *up)
