"""Deploying an MMDetection detector: export it (:func:`export_detector`), run
the result on images (:class:`DeployedDetector`), and check it against the
PyTorch model (:func:`compare_detections`).

A deployment is a folder: ``end2end.onnx`` (and, for OpenVINO, its IR
``end2end.xml``/``.bin``), the model's config ``model_config.py`` (its test
pipeline and ``data_preprocessor`` prepare the images) and ``deploy.json``
(backend, precision, input size, what the graph takes and returns, each
runtime's model file). An int8 deployment adds each runtime's quantized model
(:mod:`~mmbackbones.export.quantize`) and records its calibration images and,
once measured (``tools/deploy.py --eval``), its accuracy.
"""
import itertools
import json
import os
import os.path as osp
import warnings
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ExportError
from .detector_graph import INPUT_NAMES, OUTPUT_NAMES, DetectorGraph, check_exportable
from .files import written_whole
from .quantize import (DEFAULT_CALIB, DEFAULT_MAX_DROP, INT8_FILES, Inputs, Validation,
                       calibration_images, check_precision, quantize_onnxruntime,
                       quantize_openvino)
from .runtime import Session, require, to_openvino_ir

ONNX_FILE, IR_FILE, CONFIG_FILE, META_FILE = ('end2end.onnx', 'end2end.xml',
                                              'model_config.py', 'deploy.json')
DETECTOR_OPSET = 17  # RoiAlign's half-pixel mode (aligned=True) needs 16


def size_divisor(detector: nn.Module) -> int:
    """What the detector's ``data_preprocessor`` pads the batch to (1: none)."""
    return int(getattr(detector.data_preprocessor, 'pad_size_divisor', 1) or 1)


def export_detector(detector: nn.Module, path: str, shape: Sequence[int] = (512, 512),
                    batch: int = 1, dynamic: bool = True) -> str:
    """Write ``detector`` (an MMDetection detector) with its post-processing to
    ``path`` as ONNX (torch's TorchScript-based exporter: NMS is a custom
    function with an ONNX symbolic). ``shape`` (H, W) is the traced input size,
    a multiple of the detector's pad size divisor; with ``dynamic`` the batch,
    height and width are free, otherwise the file takes exactly ``batch`` x
    ``shape``. The file appears only when the export succeeded."""
    # eval: the exporter puts the module back in the mode it found it in, and a
    # module left in training mode would take the detector with it
    graph = DetectorGraph(detector).eval()  # an ExportError for what cannot be exported
    divisor = size_divisor(detector)
    height, width = shape
    if height % divisor or width % divisor:
        up = tuple(-(-s // divisor) * divisor for s in shape)
        raise ValueError(f'shape={tuple(shape)}: the detector pads its inputs to multiples of '
                         f'{divisor} (data_preprocessor.pad_size_divisor); e.g. {up}')
    torch.manual_seed(0)
    image = torch.randn(batch, 3, height, width)
    image_shape = torch.tensor([[height, width]] * batch)
    axes = None
    if dynamic:
        axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}, 'image_shape': {0: 'batch'},
                'dets': {0: 'batch'}, 'labels': {0: 'batch'}}
    with written_whole(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on static dimensions (class counts, candidate counts)
        # and on the TorchScript-based exporter's deprecation: expected, not actionable
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        try:
            torch.onnx.export(graph, (image, image_shape), tmp,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              opset_version=DETECTOR_OPSET, dynamic_axes=axes, dynamo=False,
                              do_constant_folding=True)
        except Exception as error:  # an op ONNX cannot express, in the backbone or neck
            raise ExportError(
                f'exporting {type(detector).__name__} to ONNX (opset {DETECTOR_OPSET}) '
                f'failed: {error}. The post-processing is exportable; an operation in the '
                f'backbone or neck is not: replace it, or export the parts with '
                f'mmbackbones.export.export_onnx to find it') from error
    return path


def build_detector(config, checkpoint: Optional[str] = None) -> Tuple[nn.Module, object]:
    """The detector of ``config`` (a path or a Config) in eval mode, with
    ``checkpoint`` loaded through the strict loader (a file that does not fit the
    config is a :class:`~mmbackbones.CheckpointError`); no pretrained file is
    read. Returns ``(detector, cfg)``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmbackbones  # noqa: F401  (registers the backbones)
    from ..loader import load_weights, without_weights
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    cfg.model.backbone = without_weights(cfg.model.backbone)
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_weights(detector, checkpoint)
    return detector.eval(), cfg


def inference_pipeline(cfg, from_array: bool = False):
    """The config's test pipeline for inference: images in, no annotations."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.registry import DefaultScope
    steps = [dict(s) for s in get_test_pipeline_cfg(cfg)
             if s['type'] not in ('LoadAnnotations', 'mmdet.LoadAnnotations')]
    if from_array:
        steps[0] = dict(steps[0], type='mmdet.LoadImageFromNDArray')
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Compose(steps)


def preprocess(detector: nn.Module, pipeline, images: Sequence[Union[str, np.ndarray]]):
    """``images`` (paths, or BGR arrays with a ``from_array`` pipeline) as the
    graph takes them: ``(image, image_shape, data_samples)``."""
    from mmengine.dataset import pseudo_collate
    batch = [pipeline(dict(img=im, img_id=i) if isinstance(im, np.ndarray)
                      else dict(img_path=im, img_id=i)) for i, im in enumerate(images)]
    data = detector.data_preprocessor(pseudo_collate(batch), False)
    samples = data['data_samples']
    return data['inputs'], image_shapes(samples), samples


def image_shapes(samples) -> Tensor:
    """The graph's ``image_shape``: each image's (height, width) before padding."""
    return torch.tensor([s.metainfo['img_shape'][:2] for s in samples])


def to_instances(dets: np.ndarray, labels: np.ndarray, sample=None) -> Dict[str, Tensor]:
    """One image's rows of the graph's outputs as MMDetection's prediction
    (``bboxes``, ``scores``, ``labels``), the padding dropped and, given its
    data sample, the boxes in the original image's pixels."""
    keep = labels >= 0
    boxes = torch.from_numpy(np.ascontiguousarray(dets[keep, :4]))
    if sample is not None and 'scale_factor' in sample.metainfo:
        scale_w, scale_h = sample.metainfo['scale_factor']
        boxes = boxes * boxes.new_tensor([1 / scale_w, 1 / scale_h, 1 / scale_w, 1 / scale_h])
    return dict(bboxes=boxes, scores=torch.from_numpy(np.ascontiguousarray(dets[keep, 4])),
                labels=torch.from_numpy(labels[keep].astype(np.int64)))


def write_deployment(config, checkpoint: Optional[str], work_dir: str,
                     backend: Union[str, Sequence[str]] = 'onnxruntime',
                     shape: Optional[Sequence[int]] = None, batch: int = 1,
                     dynamic: bool = True, precision: str = 'fp32',
                     calib: int = DEFAULT_CALIB, max_drop: float = DEFAULT_MAX_DROP,
                     max_batches: Optional[int] = None) -> str:
    """Export the detector of ``config`` + ``checkpoint`` into ``work_dir`` for
    ``backend`` (one runtime, or several sharing the folder: OpenVINO's IR is
    written beside the ONNX file that ONNX Runtime reads); the folder layout is in
    the module docstring. ``shape`` defaults to the test pipeline's resize scale,
    padded. Returns the (first) backend's model file's path.

    ``precision`` is ``'fp32'``, ``'bf16'`` (OpenVINO computing in bf16: the
    same files) or ``'int8'``: each runtime's model quantized after training,
    calibrated on ``calib`` images of the config's training set (all of them when
    it has fewer); for OpenVINO with accuracy control when the config has a
    validation set (``val_dataloader`` and ``val_evaluator``; its first
    ``max_batches`` batches), keeping its metric within ``max_drop`` (relative)
    of the fp32 model's."""
    backends = list(dict.fromkeys([backend] if isinstance(backend, str) else backend))
    for name in backends:
        require(name)  # a runtime is missing: say so before exporting
    check_precision(precision, backends)  # and its quantizer
    detector, cfg = build_detector(config, checkpoint)
    # refused before anything is read or written (every graph that exports quantizes)
    check_exportable(detector)
    if precision == 'int8':
        images = calibration_images(cfg, calib)  # none to take: say so before exporting
    shape = tuple(shape or default_shape(cfg, size_divisor(detector)))
    os.makedirs(work_dir, exist_ok=True)
    onnx_path = export_detector(detector, osp.join(work_dir, ONNX_FILE), shape, batch, dynamic)
    meta = dict(backend=backends[0], backends=backends, precision=precision,
                shape=list(shape), batch=None if dynamic else batch, dynamic=dynamic,
                inputs=list(INPUT_NAMES), outputs=list(OUTPUT_NAMES), checkpoint=checkpoint,
                classes=class_names(cfg))
    models = {name: ONNX_FILE for name in backends}
    if precision == 'int8':
        runner, pipeline = GraphRunner(meta, None, pad_value(detector)), inference_pipeline(cfg)
        calibration = Inputs(_groups(images, 1 if dynamic else batch),
                             lambda group: runner.feed(*preprocess(detector, pipeline, group)))
        meta['calibration'] = dict(count=len(images), images=images)
        meta['quantization'] = {}
        for name in backends:
            models[name] = INT8_FILES[name]
            target = osp.join(work_dir, models[name])
            if name == 'onnxruntime':
                meta['quantization'][name] = quantize_onnxruntime(onnx_path, target, calibration)
            else:
                validation = validation_set(detector, cfg, runner, max_batches)
                meta['quantization'][name] = quantize_openvino(
                    onnx_path, target, calibration, validation, max_drop)
                if validation is None:
                    meta['quantization'][name]['accuracy_control'] = (
                        'off: the config has no readable validation set (val_dataloader, '
                        'val_evaluator)')
    elif 'openvino' in backends:
        models['openvino'] = osp.basename(to_openvino_ir(onnx_path, osp.join(work_dir, IR_FILE)))
    cfg.dump(osp.join(work_dir, CONFIG_FILE))
    meta.update(model=models[backends[0]], models=models)
    write_meta(work_dir, meta)
    return osp.join(work_dir, models[backends[0]])


def write_meta(work_dir: str, meta: dict) -> None:
    """``deploy.json``, whole or not at all (the tool rewrites it with the accuracy)."""
    with written_whole(osp.join(work_dir, META_FILE)) as tmp, open(tmp, 'w') as f:
        json.dump(meta, f, indent=2)


def _groups(items: Sequence[Any], size: int) -> List[List[Any]]:
    """``items`` in lists of ``size`` (a static batch), the last filled up with
    copies of its first: a copy adds nothing new to the calibration statistics."""
    groups = [list(items[i:i + size]) for i in range(0, len(items), size)]
    groups[-1] += groups[-1][:1] * (size - len(groups[-1]))
    return groups


def pad_value(detector: nn.Module) -> float:
    """What the ``data_preprocessor`` pads a batch with."""
    return float(getattr(detector.data_preprocessor, 'pad_value', 0) or 0)


def class_names(cfg) -> List[str]:
    """The test set's class names, where the config names them."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    return list((dataset.get('metainfo') or {}).get('classes') or [])


def default_shape(cfg, divisor: int) -> Tuple[int, int]:
    """The test pipeline's resize scale (w, h), as (H, W) padded to ``divisor``."""
    from mmdet.utils import get_test_pipeline_cfg
    for step in get_test_pipeline_cfg(cfg):
        if 'Resize' in step['type'] and 'scale' in step:
            width, height = step['scale']
            if step.get('keep_ratio'):
                height = width = max(width, height)
            return tuple(-(-s // divisor) * divisor for s in (height, width))
    raise ExportError('the test pipeline has no Resize with a scale: pass shape=(H, W)')


class GraphRunner:
    """The exported graph behind a runtime's ``session`` (a function from its
    inputs to ``[dets, labels]``), on batches prepared by the ``data_preprocessor``:
    a static deployment (``meta``: :func:`write_deployment`'s) takes any batch of
    inputs up to its traced size, each padded to it (:meth:`fit`, with
    ``pad_value``) and the batch run in slices of the exported batch."""

    def __init__(self, meta: dict, session: Optional[Callable[[Dict[str, np.ndarray]],
                                                              List[np.ndarray]]],
                 pad_value: float = 0.0):
        self.meta, self.session, self.pad_value = meta, session, pad_value

    def fit(self, image: Tensor, samples=None) -> Tensor:
        """A prepared batch as this deployment takes it: for a static one,
        padded to the traced size (:func:`pad_to_static`; PyTorch given the
        result computes what the file computes), else unchanged."""
        return pad_to_static(self.meta, image, self.pad_value, samples)

    def feed(self, image: Tensor, image_shape: Tensor, samples=None) -> Dict[str, np.ndarray]:
        """The graph's inputs for one call: a prepared batch (of the exported
        batch, for a static deployment) and its images' sizes."""
        return dict(image=self.fit(image, samples).numpy(),
                    image_shape=image_shape.numpy().astype(np.int64))

    def run(self, image: Tensor, image_shape: Tensor) -> List[np.ndarray]:
        """The graph on a prepared batch: ``[dets, labels]``, a row per image."""
        image = self.fit(image)
        if self.meta.get('dynamic'):
            return self.session(self.feed(image, image_shape))
        batch, count = self.meta['batch'], image.shape[0]
        outputs = []
        for start in range(0, count, batch):
            part, shapes = image[start:start + batch], image_shape[start:start + batch]
            missing = batch - part.shape[0]
            if missing:  # the exported batch filled with blank images, whose rows are dropped
                part = torch.cat([part, part.new_full((missing, *part.shape[1:]),
                                                      self.pad_value)])
                shapes = torch.cat([shapes, shapes[:1].expand(missing, -1)])
            dets, labels = self.session(self.feed(part, shapes))
            outputs.append((dets[:batch - missing], labels[:batch - missing]))
        return [np.concatenate([out[i] for out in outputs]) for i in range(2)]


class DeployedDetector(GraphRunner):
    """A deployment folder (:func:`write_deployment`) ready for images: the
    config's test pipeline and ``data_preprocessor`` prepare them, the runtime
    runs the graph (:class:`GraphRunner`), and boxes come back in each image's
    own pixels. ``backend`` defaults to the folder's first and ``precision`` to
    the folder's (``'fp32'`` runs an int8 folder's fp32 ``end2end.onnx``)."""

    def __init__(self, work_dir: str, backend: Optional[str] = None,
                 threads: Optional[int] = None, precision: Optional[str] = None):
        with open(osp.join(work_dir, META_FILE)) as f:
            meta = json.load(f)
        self.backend = backend or meta['backend']
        self.precision = precision or meta.get('precision', 'fp32')
        check_precision(self.precision, [self.backend])
        model = model_file(work_dir, meta, self.backend, self.precision)
        session = Session(osp.join(work_dir, model), self.backend, threads,
                          precision='bf16' if self.precision == 'bf16' else 'fp32')
        self.detector, self.cfg = build_detector(osp.join(work_dir, CONFIG_FILE))
        super().__init__(meta, session, pad_value(self.detector))
        self.pipeline = inference_pipeline(self.cfg)
        self.array_pipeline = inference_pipeline(self.cfg, from_array=True)

    def __call__(self, images: Sequence[Union[str, np.ndarray]]) -> List[Dict[str, Tensor]]:
        pipeline = self.array_pipeline if isinstance(images[0], np.ndarray) else self.pipeline
        image, image_shape, samples = preprocess(self.detector, pipeline, images)
        dets, labels = self.run(self.fit(image, samples), image_shape)
        return [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)]


def model_file(work_dir: str, meta: dict, backend: str, precision: str) -> str:
    """The file ``backend`` runs in ``precision`` from a deployment folder, or a
    ValueError naming what the folder holds."""
    if precision == 'int8':
        found = (meta.get('models') or {}).get(backend) if meta.get('precision') == 'int8' \
            else None
        if not found:
            raise ValueError(f'{work_dir}: no int8 model for {backend} (precision '
                             f'{meta.get("precision", "fp32")}, backends '
                             f'{", ".join(meta.get("backends", [meta["backend"]]))}); export one '
                             f'with tools/deploy.py --precision int8 --backend {backend}')
        return found
    if backend == 'openvino' and osp.exists(osp.join(work_dir, IR_FILE)):
        return IR_FILE
    return ONNX_FILE


def pad_to_static(meta: dict, image: Tensor, pad_value: float = 0.0, samples=None) -> Tensor:
    """``image`` (N, 3, h, w), a batch as the ``data_preprocessor`` makes it,
    padded at the bottom and right with its ``pad_value`` to a static
    deployment's traced (H, W), as the preprocessor pads a batch to its largest
    image (``samples``' ``batch_input_shape`` and ``pad_shape`` follow); unchanged
    for a dynamic deployment. An input larger than the traced size is a
    ValueError: the file cannot take it, and shrinking it would change the boxes."""
    if meta.get('dynamic'):
        return image
    height, width = meta['shape']
    if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] > height \
            or image.shape[3] > width:
        raise ValueError(f'input of shape {tuple(image.shape)}: this deployment was exported '
                         f'for (batch, 3, {height}, {width}) (static; smaller images are '
                         f'padded to it); resize the images to fit, or export with a larger '
                         f'--shape or with dynamic shapes (tools/deploy.py without --static)')
    if image.shape[2:] != (height, width):
        image = torch.nn.functional.pad(image, (0, width - image.shape[3],
                                                0, height - image.shape[2]), value=pad_value)
    for sample in samples or ():
        sample.set_metainfo(dict(batch_input_shape=(height, width), pad_shape=(height, width)))
    return image


def predict_torch(detector: nn.Module, image: Tensor, samples) -> List[Dict[str, Tensor]]:
    """MMDetection's own predictions on a prepared batch, in original pixels."""
    with torch.no_grad():
        results = detector.predict(image, samples, rescale=True)
    return [dict(bboxes=r.pred_instances.bboxes, scores=r.pred_instances.scores,
                 labels=r.pred_instances.labels) for r in results]


#: :func:`compare_detections` on two empty lists: equal, but nothing was checked
NOTHING_COMPARED = 'no detections on either side: nothing was compared'


def compare_detections(expected: Dict[str, Tensor], got: Dict[str, Tensor],
                       box_rtol: float = 1e-3, score_atol: float = 1e-4,
                       allow_empty: bool = False) -> Optional[str]:
    """None when ``got`` are ``expected``'s detections (same count and labels,
    boxes within ``box_rtol`` of the image's largest coordinate, scores within
    ``score_atol``), else what differs. Detections are matched best first.
    No detections on both sides is :data:`NOTHING_COMPARED`, not equality (an
    untrained detector would pass any check), unless ``allow_empty``."""
    if len(expected['scores']) != len(got['scores']):
        return f'{len(got["scores"])} detections, expected {len(expected["scores"])}'
    if not len(expected['scores']):
        return None if allow_empty else NOTHING_COMPARED
    order_e = torch.argsort(expected['scores'], descending=True, stable=True)
    order_g = torch.argsort(got['scores'], descending=True, stable=True)
    scores_e, scores_g = expected['scores'][order_e], got['scores'][order_g]
    score_err = (scores_e - scores_g).abs().max().item()
    if score_err > score_atol:
        return f'scores differ by {score_err:.2e} (> {score_atol})'
    # equal scores may come in either order: compare within groups of ties
    labels_e, labels_g = expected['labels'][order_e], got['labels'][order_g]
    boxes_e, boxes_g = expected['bboxes'][order_e].float(), got['bboxes'][order_g].float()
    scale = max(boxes_e.abs().max().item(), 1.0)
    for i in range(len(scores_e)):
        ties = (scores_e - scores_e[i]).abs() <= score_atol
        candidates = [j for j in torch.nonzero(ties).flatten().tolist()
                      if labels_g[j] == labels_e[i]
                      and (boxes_g[j] - boxes_e[i]).abs().max() <= box_rtol * scale]
        if not candidates:
            return (f'detection {i} (label {labels_e[i].item()}, score '
                    f'{scores_e[i].item():.4f}, box {boxes_e[i].tolist()}) has no match')
    return None


def restrict_to_images(evaluator, img_ids: Sequence[int]) -> None:
    """Make ``evaluator``'s metrics score only the images ``img_ids``: a COCO
    metric otherwise evaluates every image of its annotation file, and counts
    each image it got no prediction for as missed. Metrics without an
    ``img_ids`` setting (VOC's) score only the predictions they were given."""
    for metric in evaluator.metrics:
        if hasattr(metric, 'img_ids'):
            metric.img_ids = list(img_ids)


class Agreement:
    """How closely one model's detections follow another's, over many images
    (a low-precision deployment's against PyTorch's, where equality is not
    expected): each expected detection, best first, is matched to the unmatched
    detection of the same label that overlaps it most, if by ``iou`` or more;
    :meth:`summary` gives the counts, the matched boxes' IoU and the matched
    scores' differences."""

    def __init__(self, iou: float = 0.5):
        self.iou, self.expected, self.got = iou, 0, 0
        self.ious: List[float] = []
        self.score_diffs: List[float] = []

    def add(self, expected: Dict[str, Tensor], got: Dict[str, Tensor]) -> None:
        from torchvision.ops import box_iou
        self.expected += len(expected['scores'])
        self.got += len(got['scores'])
        if not len(expected['scores']) or not len(got['scores']):
            return
        ious = box_iou(expected['bboxes'].float(), got['bboxes'].float())
        ious[expected['labels'][:, None] != got['labels'][None, :]] = -1
        for i in torch.argsort(expected['scores'], descending=True, stable=True).tolist():
            best, j = ious[i].max(0)
            if best >= self.iou:
                self.ious.append(best.item())
                self.score_diffs.append(abs(expected['scores'][i] - got['scores'][j]).item())
                ious[:, j] = -1  # each detection matches once

    def summary(self) -> dict:
        matched = len(self.ious)
        return dict(iou_threshold=self.iou, expected=self.expected, got=self.got,
                    matched=matched, matched_fraction=matched / self.expected
                    if self.expected else None,
                    iou_mean=float(np.mean(self.ious)) if matched else None,
                    iou_min=min(self.ious) if matched else None,
                    score_diff_mean=float(np.mean(self.score_diffs)) if matched else None,
                    score_diff_max=max(self.score_diffs) if matched else None)


def main_metric(metrics: Mapping[str, Any]) -> Tuple[str, float]:
    """The headline of an evaluator's metrics: COCO's ``bbox_mAP``, else the first mAP."""
    if not metrics:  # MMDetection's CocoMetric reports nothing when no image has a detection
        return 'mAP', 0.0
    keys = [k for k, v in metrics.items() if isinstance(v, float) and k.endswith('mAP')]
    if not keys:
        raise ValueError(f'no mAP among the metrics {sorted(metrics)}: the evaluator must '
                         f'report one to judge a low-precision deployment by')
    key = next((k for k in keys if k.endswith('bbox_mAP')), keys[0])
    return key, float(metrics[key])


def build_loader(cfg, split: str = 'test'):
    """The config's ``{split}_dataloader``."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Runner.build_dataloader(cfg[f'{split}_dataloader'])


class Batches:
    """A loader's first ``count`` batches (all: None), re-iterable and sized, as
    NNCF's datasets want them; read again on every pass, not held in memory."""

    def __init__(self, loader, count: Optional[int] = None):
        self.loader, self.count = loader, count

    def __len__(self) -> int:
        return len(self.loader) if self.count is None else min(self.count, len(self.loader))

    def __iter__(self):
        return itertools.islice(self.loader, len(self))


def validation_set(detector: nn.Module, cfg, runner: GraphRunner,
                   max_batches: Optional[int] = None) -> Optional[Validation]:
    """The config's validation set (its first ``max_batches`` batches) for
    accuracy control: each batch as the graph's inputs, and the validation
    evaluator's main metric (:func:`main_metric`) of a runtime on some batches.
    None when the config has none, or it cannot be read."""
    if not cfg.get('val_dataloader') or not cfg.get('val_evaluator'):
        return None
    try:
        loader = build_loader(cfg, 'val')
    except Exception as error:  # its data is not there: quantize without it
        warnings.warn(f'int8 without accuracy control: the validation set cannot be read '
                      f'({error})')
        return None

    def feed(batch) -> Dict[str, np.ndarray]:
        data = detector.data_preprocessor(batch, False)
        return runner.feed(data['inputs'], image_shapes(data['data_samples']),
                           data['data_samples'])

    def score(run, batches: Iterable) -> float:
        result = evaluate_batches({'int8': GraphRunner(runner.meta, run, runner.pad_value)},
                                  detector, cfg.val_evaluator, loader.dataset, batches,
                                  pytorch=False)
        return main_metric(result['runtimes']['int8'])[1]
    return Validation(Inputs(Batches(loader, max_batches), feed), score)


def evaluate(deployed: Mapping[str, GraphRunner], detector: nn.Module, cfg,
             max_batches: Optional[int] = None) -> dict:
    """The config's test set through ``detector`` (PyTorch) and each deployed
    model (by runtime name), the same prepared batches for all (padded to a
    static deployment's size, for PyTorch too): ``pytorch`` and
    ``runtimes[name]``, the test evaluator's metrics; ``differing[name]``, the
    images whose detections differ from PyTorch's (:func:`compare_detections`);
    ``compared[name]`` and ``empty[name]``, how many images had detections on
    either side and how many on neither (not compared); ``agreement[name]``,
    how closely they follow PyTorch's (:class:`Agreement`); and
    ``images``/``total``, how many of the test set's images were run. With
    ``max_batches``, the metrics cover only the images that were run
    (:func:`restrict_to_images`)."""
    loader = build_loader(cfg, 'test')
    return evaluate_batches(deployed, detector, cfg.test_evaluator, loader.dataset,
                            Batches(loader, max_batches))


def evaluate_batches(deployed: Mapping[str, GraphRunner], detector: nn.Module,
                     evaluator_cfg, dataset, batches: Iterable, pytorch: bool = True) -> dict:
    """:func:`evaluate` on ``batches`` of ``dataset``, scored by ``evaluator_cfg``;
    without ``pytorch``, the deployed models only (no comparison)."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    sides = ['pytorch', *deployed] if pytorch else list(deployed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        evaluators = {side: Evaluator(evaluator_cfg) for side in sides}
    for evaluator in evaluators.values():
        evaluator.dataset_meta = dataset.metainfo
    differing: Dict[str, List[str]] = {name: [] for name in deployed}
    empty = {name: 0 for name in deployed}
    agreement = {name: Agreement() for name in deployed}
    seen: List[int] = []
    for batch in batches:
        data = detector.data_preprocessor(batch, False)
        image, samples = data['inputs'], data['data_samples']
        for model in deployed.values():  # one export: the same input for all
            image = model.fit(image, samples)
        seen.extend(s.metainfo['img_id'] for s in samples)
        shapes = image_shapes(samples)
        predictions = dict(pytorch=predict_torch(detector, image, samples)) if pytorch else {}
        for name, model in deployed.items():
            dets, labels = model.run(image, shapes)
            predictions[name] = [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)]
            if not pytorch:
                continue
            for sample, e, g in zip(samples, predictions['pytorch'], predictions[name]):
                agreement[name].add(e, g)
                problem = compare_detections(e, g)
                if problem == NOTHING_COMPARED:
                    empty[name] += 1
                elif problem:
                    differing[name].append(f'{sample.metainfo.get("img_path")}: {problem}')
        for side, results in predictions.items():
            evaluators[side].process(
                [dict(img_id=s.metainfo['img_id'], ori_shape=s.metainfo['ori_shape'],
                      pred_instances=p) for s, p in zip(samples, results)], batch)
    if len(seen) < len(dataset):
        for evaluator in evaluators.values():
            restrict_to_images(evaluator, seen)
    result = dict(runtimes={name: evaluators[name].evaluate(len(seen)) for name in deployed},
                  images=len(seen), total=len(dataset))
    if pytorch:
        result.update(pytorch=evaluators['pytorch'].evaluate(len(seen)), differing=differing,
                      empty=empty, compared={name: len(seen) - empty[name] for name in deployed},
                      agreement={name: a.summary() for name, a in agreement.items()})
    return result
