"""Post-training int8 quantization of an exported detector graph, per runtime.

A precision is one more property of a deployment folder
(:func:`~mmbackbones.export.detector.write_deployment`), not a second exporter:
the fp32 ``end2end.onnx`` is written as always, and an int8 deployment adds its
quantized model beside it (:data:`INT8_FILES`), calibrated on images of the
config's training set (:func:`calibration_images`):

* OpenVINO: NNCF's post-training quantization (``nncf.quantize``), or its
  accuracy-controlled variant (``nncf.quantize_with_accuracy_control``) given a
  validation set, which returns to fp32 the layers that cost the most accuracy
  until the metric is within ``max_drop`` (relative) of the fp32 model's.
* ONNX Runtime: static QDQ quantization (``onnxruntime.quantization.quantize_static``)
  of the convolutions and matrix products but the network's last layers
  (:func:`last_layers`), with the same calibration images.

Both quantize only the network's layers (convolutions and what feeds them):
the post-processing -- box decoding, the sigmoid, NMS -- computes in fp32, so
the boxes and scores of a detection are as exact as the features they come from.

This module knows runtimes, not detectors: inputs come as ``(items, feed)``
(:class:`Inputs`), a sequence of anything and the function that turns one item
into the graph's inputs, so that 300 calibration images are read one at a time
rather than held in memory.
"""
import logging
import os.path as osp
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np

from .files import written_whole
from .runtime import BACKENDS, INSTALL, check_backend, require, save_openvino

PRECISIONS = ('fp32', 'bf16', 'int8')
#: the precisions each runtime runs on the CPU (ONNX Runtime's CPU provider has no
#: bf16 convolutions: it would fall back to fp32 casts around every layer)
RUNTIME_PRECISIONS = {'onnxruntime': ('fp32', 'int8'), 'openvino': ('fp32', 'bf16', 'int8')}
#: each runtime's int8 model in a deployment folder, beside the fp32 ``end2end.onnx``
INT8_FILES = {'onnxruntime': 'end2end_int8.onnx', 'openvino': 'end2end_int8.xml'}
#: calibration images by default (NNCF's default subset size); fewer when the set is smaller
DEFAULT_CALIB = 300
#: the accuracy an int8 deployment may lose by default: 1 % of the fp32 mAP (relative)
DEFAULT_MAX_DROP = 0.01
#: what ONNX Runtime quantizes: the layers that carry the compute. Elementwise ops
#: stay fp32 (QDQ around each would cost more than it saves), and so does the
#: post-processing, which has none of these ops
ORT_OP_TYPES = ('Conv', 'MatMul', 'Gemm')
INT8_INSTALL = 'pip install "mmbackbones[int8]" (or nncf)'
#: the post-processing's nodes, for NNCF to leave in fp32: the exporter names a
#: node by the modules it ran in ('/backbone/stage2/.../Conv'); the graph's own
#: code (box decoding, the RoI level of a two-stage detector, NMS) runs in none,
#: and the nodes OpenVINO adds have no scope. (Left to itself NNCF quantized a
#: Faster R-CNN's RoI areas and level masks.)
POSTPROCESSING_NODES = r'/?[^/]*$'
#: a two-stage detector's classifier and box regressor (ConvFCBBoxHead's last two
#: layers), left in fp32 by NNCF: OpenVINO 2026.4 fails to compile a Faster R-CNN
#: whose box regressor is int8 (its low-precision transformations move the
#: dequantization scale into the reshape to per-class boxes, and the shapes clash),
#: and they are two matrix products of a thousand rows
ROI_OUTPUT_LAYERS = r'/bbox_head/fc_(cls|reg)/'

Feed = Dict[str, np.ndarray]


class Inputs(NamedTuple):
    """Data for a quantizer: ``feed(item)`` is the graph's inputs for each of ``items``."""
    items: Sequence[Any]
    feed: Callable[[Any], Feed]

    def feeds(self) -> Iterator[Feed]:
        return (self.feed(item) for item in self.items)

    def taking(self, names: Sequence[str]) -> 'Inputs':
        """The same, with only the inputs ``names``: an exporter drops an input
        the graph does not use (YOLOv3's boxes need no ``image_shape``), and the
        quantizers feed what they are given."""
        return Inputs(self.items, lambda item: {k: v for k, v in self.feed(item).items()
                                                if k in names})


class Validation(NamedTuple):
    """A validation set for accuracy control: ``score(run, items)`` is the metric
    (higher is better, e.g. COCO mAP) of ``run`` -- a function from the graph's
    inputs to its outputs -- over ``items``, a part of ``inputs.items``."""
    inputs: Inputs
    score: Callable[[Callable[[Feed], List[np.ndarray]], Sequence[Any]], float]


def check_precision(precision: str, backends: Sequence[str]) -> str:
    """``precision`` if every runtime of ``backends`` runs it and, for int8, its
    quantizer is installed: else a ValueError (or ImportError) saying what to choose."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: choose one of {", ".join(PRECISIONS)}')
    for backend in backends:
        check_backend(backend)
        if precision not in RUNTIME_PRECISIONS[backend]:
            others = [b for b in BACKENDS if precision in RUNTIME_PRECISIONS[b]]
            raise ValueError(f'precision={precision!r} with {backend}: it runs '
                             f'{", ".join(RUNTIME_PRECISIONS[backend])} on the CPU; for '
                             f'{precision}, choose {" or ".join(others)}')
        if precision == 'int8':
            require_quantizer(backend)
    return precision


def require_quantizer(backend: str):
    """The module that quantizes for ``backend``, or an ImportError naming what to install."""
    require(backend)
    try:
        if backend == 'onnxruntime':
            from onnxruntime import quantization
            return quantization
        import nncf
        return nncf
    except ImportError:
        what = INT8_INSTALL if backend == 'openvino' else INSTALL[backend]
        raise ImportError(f'int8 for {backend} needs its quantizer '
                          f'({"nncf" if backend == "openvino" else "onnxruntime.quantization"}),'
                          f' which is not installed: {what}') from None


def calibration_images(cfg, count: int = DEFAULT_CALIB) -> List[str]:
    """``count`` image files of the config's training set (``train_dataloader``),
    spread evenly over it (all of them when it has fewer); a ValueError that says
    why when there are none to take."""
    if count < 1:
        raise ValueError(f'calib={count}: int8 needs calibration images (at least 1; '
                         f'default {DEFAULT_CALIB}, fewer are taken when the training set '
                         f'is smaller)')
    dataset_cfg = (cfg.get('train_dataloader') or {}).get('dataset')
    if not dataset_cfg:
        raise ValueError('int8 needs calibration images: the config has no '
                         'train_dataloader.dataset to take them from')
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope
    try:
        with DefaultScope.overwrite_default_scope('mmdet'):
            dataset = DATASETS.build(dataset_cfg)
        while hasattr(dataset, 'dataset'):  # RepeatDataset and friends: each image once
            dataset = dataset.dataset
        size = len(dataset)
    except Exception as error:  # a missing annotation file, a data root not there
        raise ValueError(f'int8 needs calibration images from the config\'s training set '
                         f'(train_dataloader.dataset, {_describe(dataset_cfg)}), which cannot '
                         f'be read: {error}. Point the config at the data (e.g. --cfg-options '
                         f'data_root=...)') from error
    if not size:
        raise ValueError(f'int8 needs calibration images: the config\'s training set '
                         f'({_describe(dataset_cfg)}) has no images')
    picked = np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))
    return [dataset.get_data_info(int(i))['img_path'] for i in picked]


def _describe(dataset_cfg) -> str:
    root, ann = dataset_cfg.get('data_root') or '', dataset_cfg.get('ann_file') or ''
    return osp.join(root, ann) if ann else dataset_cfg.get('type', 'a dataset')


def quantize_onnxruntime(onnx_path: str, out_path: str, calibration: Inputs) -> dict:
    """``onnx_path`` (fp32) quantized for ONNX Runtime into ``out_path``: QDQ
    (QuantizeLinear/DequantizeLinear pairs, which its CPU provider fuses into
    integer kernels), int8 weights per output channel in a 7-bit range, uint8
    activations (x86's u8 x s8 dot products), ranges from the calibration
    inputs' minima and maxima averaged over the images; the network's last
    layers stay fp32 (:func:`last_layers`). Returns what was done, for the
    deployment's metadata.

    Why these settings (the trained demo RetinaNet, 300 calibration images, COCO
    mAP 0.105 in fp32 over its 80 validation images, on an AVX2 CPU): full 8-bit
    weights and the extreme minima and maxima gave 0.101; the 7-bit weights,
    0.104 (without VNNI, x86 adds pairs of u8 x s8 products in int16, which a
    full range can overflow); averaging the ranges, 0.106; both, 0.108."""
    quantization = require_quantizer('onnxruntime')
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    calibration = calibration.taking([i.name for i in graph.input])

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self) -> Optional[Feed]:
            return next(self.feeds, None)

        def rewind(self) -> None:
            self.feeds = calibration.feeds()

    with written_whole(out_path, suffix='.onnx') as tmp:
        # ONNX Runtime's own clean-up first, as its quantizer asks: the exporter
        # passes weights a detector head shares across levels through Identity
        # nodes, and a bias behind one stays float, which keeps the convolution
        # out of the integer kernels (skipping the symbolic shape inference, which
        # a graph of data-dependent post-processing shapes does not need)
        quantization.quant_pre_process(onnx_path, tmp, skip_symbolic_shape=True)
        excluded = last_layers(onnx.load(tmp, load_external_data=False).graph)
        quantization.quantize_static(
            tmp, tmp, Reader(), quant_format=quantization.QuantFormat.QDQ,
            nodes_to_exclude=excluded,
            per_channel=True, reduce_range=True, weight_type=quantization.QuantType.QInt8,
            activation_type=quantization.QuantType.QUInt8,
            op_types_to_quantize=list(ORT_OP_TYPES),
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={'CalibMovingAverage': True})
    import onnxruntime
    return dict(quantizer=f'onnxruntime {onnxruntime.__version__} quantize_static',
                format='QDQ', weights='int8 per channel, 7-bit range',
                activations='uint8 per tensor', calibration='MinMax, averaged over the images',
                ops=list(ORT_OP_TYPES), fp32_layers=excluded)


def last_layers(graph) -> List[str]:
    """The network's last layers in an exported graph: the convolutions and
    matrix products (:data:`ORT_OP_TYPES`) from which no other one is reached
    within the network's modules (:data:`POSTPROCESSING_NODES` stops the walk):
    a head's classifier and box regressor, whose outputs the post-processing
    reads (a two-stage detector's RPN and RoI head; FCOS's through its scales).

    ONNX Runtime's QDQ quantizes the outputs of the layers it quantizes, so
    these must stay fp32 for the post-processing to read their values: in int8,
    a Faster R-CNN's RPN ranked its proposals by 256 levels of objectness, and
    lost 39 % of its mAP (NNCF quantizes layers' inputs only, and needs none of this)."""
    import re
    outside = re.compile(POSTPROCESSING_NODES)
    readers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def feeds_a_layer(node) -> bool:
        seen, todo = set(), list(node.output)
        while todo:
            for reader in readers.get(todo.pop(), []):
                if reader.name in seen or outside.match(reader.name):
                    continue
                if reader.op_type in ORT_OP_TYPES:
                    return True
                seen.add(reader.name)
                todo.extend(reader.output)
        return False
    return [node.name for node in graph.node if node.op_type in ORT_OP_TYPES
            and not outside.match(node.name) and not feeds_a_layer(node)]


def quantize_openvino(onnx_path: str, xml_path: str, calibration: Inputs,
                      validation: Optional[Validation] = None,
                      max_drop: float = DEFAULT_MAX_DROP) -> dict:
    """``onnx_path`` (fp32) quantized by NNCF into OpenVINO's IR ``xml_path``
    (+ ``.bin``): int8 convolutions (symmetric weights per channel), with fast
    bias correction. Given ``validation``, with accuracy control: layers go back
    to fp32, the costliest first, until ``validation.score`` is within
    ``max_drop`` (relative) of the fp32 model's. Returns what was done, with the
    validation metrics NNCF measured."""
    nncf = require_quantizer('openvino')
    openvino = require('openvino')
    # the ONNX frontend directly: in 0.1 s where convert_model takes seconds, more with
    # every call in a process (measured with OpenVINO 2026.4)
    model = openvino.Core().read_model(onnx_path)
    names = [i.get_any_name() for i in model.inputs]
    calibration = calibration.taking(names)
    dataset = nncf.Dataset(calibration.items, calibration.feed)
    common = dict(subset_size=len(calibration.items), target_device=nncf.TargetDevice.CPU,
                  preset=nncf.QuantizationPreset.PERFORMANCE,
                  ignored_scope=nncf.IgnoredScope(
                      patterns=[POSTPROCESSING_NODES, ROI_OUTPUT_LAYERS], validate=False))
    info = dict(quantizer=f'nncf {nncf.__version__} '
                          f'{"quantize_with_accuracy_control" if validation else "quantize"}',
                preset='performance', weights='int8 per channel',
                activations='int8 per tensor', bias_correction='fast')
    if validation is None:
        with _quiet_nncf():
            quantized = nncf.quantize(model, dataset, **common)
    else:
        full = len(validation.inputs.items)
        scores: List[float] = []  # the whole set's, in order: fp32 first, the result last

        def validate(compiled, items) -> tuple:
            def run(feed: Feed) -> List[np.ndarray]:
                result = compiled({k: v for k, v in feed.items() if k in names})
                return [np.asarray(result[output]) for output in compiled.outputs]
            seen = [0]

            def counted():  # read once, not held: a validation set can be large
                for item in items:
                    seen[0] += 1
                    yield item
            score = validation.score(run, counted())
            if seen[0] == full:
                scores.append(score)
            return score, None  # None: NNCF scores each item alone to rank the layers

        with _quiet_nncf():
            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, nncf.Dataset(validation.inputs.items,
                                             validation.inputs.taking(names).feed),
                validate, max_drop=max_drop, drop_type=nncf.DropType.RELATIVE, **common)
        info.update(max_drop=max_drop, drop_type='relative',
                    validation=dict(items=full, fp32=scores[0], int8=scores[-1]))
    if not _int8_convolutions(quantized):  # e.g. a dynamo export's unscoped node names
        raise ValueError(f'{onnx_path}: NNCF quantized no convolution: the network is found '
                         f'by its nodes\' module scopes (\'/backbone/...\'), which '
                         f'torch.onnx.export(..., dynamo=False) writes')
    save_openvino(quantized, xml_path)
    info['int8_convolutions'] = (f'{_int8_convolutions(quantized)} of '
                                 f'{_count(quantized, "Convolution")}')
    return info


@contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF's log without a line for each node left out of quantization: the
    post-processing's hundreds of nodes would bury its accuracy-control report."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith('Not adding activation input quantizer')
    logger = logging.getLogger('nncf')
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _count(model, op_type: str) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == op_type)


def _int8_convolutions(model) -> int:
    """Convolutions whose inputs NNCF quantized (a FakeQuantize on the activations)."""
    count = 0
    for op in model.get_ops():
        if op.get_type_name() == 'Convolution' and \
                op.input_value(0).get_node().get_type_name() == 'FakeQuantize':
            count += 1
    return count


def relative_drop(reference: float, value: float) -> float:
    """How much of ``reference`` ``value`` loses, as a fraction (negative: a gain);
    0 when the reference is 0 (nothing to lose)."""
    return (reference - value) / reference if reference > 0 else 0.0
