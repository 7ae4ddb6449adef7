"""Deploying an MMDetection detector: export it (:func:`export_detector`), run
the result on images (:class:`DeployedDetector`), and check it against the
PyTorch model (:func:`compare_detections`).

A deployment is a folder: ``end2end.onnx`` (and, for OpenVINO, its IR
``end2end.xml``/``.bin``), the model's config ``model_config.py`` (its test
pipeline and ``data_preprocessor`` prepare the images) and ``deploy.json``
(backend, input size, what the graph takes and returns).
"""
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ExportError
from .detector_graph import INPUT_NAMES, OUTPUT_NAMES, DetectorGraph
from .files import written_whole
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
                     dynamic: bool = True) -> str:
    """Export the detector of ``config`` + ``checkpoint`` into ``work_dir`` for
    ``backend`` (one runtime, or several sharing the folder: OpenVINO's IR is
    written beside the ONNX file that ONNX Runtime reads); the folder layout is in
    the module docstring. ``shape`` defaults to the test pipeline's resize scale,
    padded. Returns the (first) backend's model file's path."""
    backends = list(dict.fromkeys([backend] if isinstance(backend, str) else backend))
    for name in backends:
        require(name)  # a runtime is missing: say so before exporting
    detector, cfg = build_detector(config, checkpoint)
    shape = tuple(shape or default_shape(cfg, size_divisor(detector)))
    os.makedirs(work_dir, exist_ok=True)
    onnx_path = export_detector(detector, osp.join(work_dir, ONNX_FILE), shape, batch, dynamic)
    paths = {name: onnx_path for name in backends}
    if 'openvino' in backends:
        paths['openvino'] = to_openvino_ir(onnx_path, osp.join(work_dir, IR_FILE))
    cfg.dump(osp.join(work_dir, CONFIG_FILE))
    meta = dict(backend=backends[0], backends=backends, model=osp.basename(paths[backends[0]]),
                shape=list(shape), batch=None if dynamic else batch, dynamic=dynamic,
                inputs=list(INPUT_NAMES), outputs=list(OUTPUT_NAMES), checkpoint=checkpoint,
                classes=class_names(cfg))
    with open(osp.join(work_dir, META_FILE), 'w') as f:
        json.dump(meta, f, indent=2)
    return paths[backends[0]]


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


class DeployedDetector:
    """A deployment folder (:func:`write_deployment`) ready for images: the
    config's test pipeline and ``data_preprocessor`` prepare them, the runtime
    runs the graph, and boxes come back in each image's own pixels. A static
    deployment takes any batch of inputs up to its traced size: each is padded
    to it (:meth:`fit`) and the batch run in slices of the exported batch."""

    def __init__(self, work_dir: str, backend: Optional[str] = None,
                 threads: Optional[int] = None):
        with open(osp.join(work_dir, META_FILE)) as f:
            self.meta = json.load(f)
        self.backend = backend or self.meta['backend']
        model = IR_FILE if self.backend == 'openvino' and osp.exists(
            osp.join(work_dir, IR_FILE)) else ONNX_FILE
        self.session = Session(osp.join(work_dir, model), self.backend, threads)
        self.detector, self.cfg = build_detector(osp.join(work_dir, CONFIG_FILE))
        self.pipeline = inference_pipeline(self.cfg)
        self.array_pipeline = inference_pipeline(self.cfg, from_array=True)
        self.pad_value = float(getattr(self.detector.data_preprocessor, 'pad_value', 0) or 0)

    def fit(self, image: Tensor, samples=None) -> Tensor:
        """A prepared batch as this deployment takes it: for a static one,
        padded to the traced size (:func:`pad_to_static`; PyTorch given the
        result computes what the file computes), else unchanged."""
        return pad_to_static(self.meta, image, self.pad_value, samples)

    def run(self, image: Tensor, image_shape: Tensor) -> List[np.ndarray]:
        """The graph on a prepared batch: ``[dets, labels]``, a row per image."""
        image = self.fit(image)
        if self.meta.get('dynamic'):
            return self.session(dict(image=image.numpy(),
                                     image_shape=image_shape.numpy().astype(np.int64)))
        batch, count = self.meta['batch'], image.shape[0]
        outputs = []
        for start in range(0, count, batch):
            part, shapes = image[start:start + batch], image_shape[start:start + batch]
            missing = batch - part.shape[0]
            if missing:  # the exported batch filled with blank images, whose rows are dropped
                part = torch.cat([part, part.new_full((missing, *part.shape[1:]),
                                                      self.pad_value)])
                shapes = torch.cat([shapes, shapes[:1].expand(missing, -1)])
            dets, labels = self.session(dict(image=part.numpy(),
                                             image_shape=shapes.numpy().astype(np.int64)))
            outputs.append((dets[:batch - missing], labels[:batch - missing]))
        return [np.concatenate([out[i] for out in outputs]) for i in range(2)]

    def __call__(self, images: Sequence[Union[str, np.ndarray]]) -> List[Dict[str, Tensor]]:
        pipeline = self.array_pipeline if isinstance(images[0], np.ndarray) else self.pipeline
        image, image_shape, samples = preprocess(self.detector, pipeline, images)
        dets, labels = self.run(self.fit(image, samples), image_shape)
        return [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)]


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


def compare_detections(expected: Dict[str, Tensor], got: Dict[str, Tensor],
                       box_rtol: float = 1e-3, score_atol: float = 1e-4) -> Optional[str]:
    """None when ``got`` are ``expected``'s detections (same count and labels,
    boxes within ``box_rtol`` of the image's largest coordinate, scores within
    ``score_atol``), else what differs. Detections are matched best first."""
    if len(expected['scores']) != len(got['scores']):
        return f'{len(got["scores"])} detections, expected {len(expected["scores"])}'
    if not len(expected['scores']):
        return None
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


def evaluate(deployed: Mapping[str, 'DeployedDetector'], detector: nn.Module, cfg,
             max_batches: Optional[int] = None) -> dict:
    """The config's test set through ``detector`` (PyTorch) and each deployed
    model (by runtime name), the same prepared batches for all (padded to a
    static deployment's size, for PyTorch too): ``pytorch`` and
    ``runtimes[name]``, the test evaluator's metrics, ``differing[name]``, the
    images whose detections differ from PyTorch's (:func:`compare_detections`),
    and ``images``/``total``, how many of the test set's images were run.
    With ``max_batches``, the metrics cover only the images that were run
    (:func:`restrict_to_images`)."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('mmdet'):
        loader = Runner.build_dataloader(cfg.test_dataloader)
        evaluators = {side: Evaluator(cfg.test_evaluator) for side in ['pytorch', *deployed]}
    for evaluator in evaluators.values():
        evaluator.dataset_meta = loader.dataset.metainfo
    differing = {name: [] for name in deployed}
    seen: List[int] = []
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        data = detector.data_preprocessor(batch, False)
        image, samples = data['inputs'], data['data_samples']
        for model in deployed.values():  # one export: the same input for all
            image = model.fit(image, samples)
        seen.extend(s.metainfo['img_id'] for s in samples)
        shapes = image_shapes(samples)
        predictions = dict(pytorch=predict_torch(detector, image, samples))
        for name, model in deployed.items():
            dets, labels = model.run(image, shapes)
            predictions[name] = [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)]
            for sample, e, g in zip(samples, predictions['pytorch'], predictions[name]):
                problem = compare_detections(e, g)
                if problem:
                    differing[name].append(f'{sample.metainfo.get("img_path")}: {problem}')
        for side, results in predictions.items():
            evaluators[side].process(
                [dict(img_id=s.metainfo['img_id'], ori_shape=s.metainfo['ori_shape'],
                      pred_instances=p) for s, p in zip(samples, results)], batch)
    if len(seen) < len(loader.dataset):
        for evaluator in evaluators.values():
            restrict_to_images(evaluator, seen)
    return dict(pytorch=evaluators['pytorch'].evaluate(len(seen)),
                runtimes={name: evaluators[name].evaluate(len(seen)) for name in deployed},
                differing=differing, images=len(seen), total=len(loader.dataset))
