"""Detectron2's own export path for a Detectron2 model with an ``MMBackbone``:
``detectron2.export.TracingAdapter`` flattens the model's inputs and outputs, and
the adapter is traced to TorchScript or exported to ONNX, as Detectron2's
``tools/deploy/export_model.py --export-method tracing`` does. Needs Detectron2."""
import warnings
from typing import Tuple

import torch
from torch import Tensor, nn

from .files import written_whole

FORMATS = ('torchscript', 'onnx')
D2_ONNX_OPSET = 16


def export_detectron2(model: nn.Module, image: Tensor, path: str,
                      format: str = 'torchscript') -> Tuple[str, nn.Module]:
    """Trace ``model`` (a Detectron2 meta-architecture, in eval mode) on one
    (C, H, W) ``image`` and write it to ``path`` as TorchScript or ONNX. Returns
    the path and the ``TracingAdapter``, whose ``outputs_schema`` turns the
    flat outputs back into Detectron2's ``[{'instances': ...}]``. R-CNNs are
    traced without post-processing (boxes in the input's pixels), as Detectron2
    exports them. The file appears only when the export succeeded."""
    if format not in FORMATS:
        raise ValueError(f'format={format!r}: choose one of {", ".join(FORMATS)}')
    from detectron2.export import TracingAdapter
    from detectron2.modeling import GeneralizedRCNN
    inference = None
    if isinstance(model, GeneralizedRCNN):
        def inference(model, inputs):
            return [{'instances': model.inference(inputs, do_postprocess=False)[0]}]
    adapter = TracingAdapter(model.eval(), [{'image': image}], inference)
    with written_whole(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        if format == 'torchscript':
            torch.jit.trace(adapter, (image, )).save(tmp)
        else:
            torch.onnx.export(adapter, (image, ), tmp, opset_version=D2_ONNX_OPSET, dynamo=False)
    return path, adapter
