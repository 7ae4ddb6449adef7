"""Export to inference runtimes: a backbone (:func:`export_onnx`), a whole
MMDetection detector with its post-processing in the graph
(:mod:`~mmbackbones.export.detector`, its graph in
:mod:`~mmbackbones.export.detector_graph`), a Detectron2 model Detectron2's way
(:mod:`~mmbackbones.export.detectron2`), post-training int8 of an exported
detector (:mod:`~mmbackbones.export.quantize`), and running the result in ONNX
Runtime or OpenVINO (:mod:`~mmbackbones.export.runtime`)."""
from .backbone import SIZE_MULTIPLE, export_onnx, output_names
from .runtime import BACKENDS, Session, run_onnxruntime, run_openvino

__all__ = ['BACKENDS', 'SIZE_MULTIPLE', 'Session', 'export_onnx', 'output_names',
           'run_onnxruntime', 'run_openvino']
