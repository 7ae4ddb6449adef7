"""Whole detectors exported with their post-processing (mmbackbones.export):
the graph computes MMDetection's predictions, in PyTorch, ONNX Runtime and
OpenVINO, for each detector family of configs/detection."""
import os
import os.path as osp
import re
import sys

import onnx
import pytest
import torch
from mmengine.config import Config

from detection_utils import first_batch, on_demo_data, small_trainable, train

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
FAMILIES = {
    'retinanet': 'retinanet_vovnet39_fpn_1x_coco.py',
    'fcos': 'fcos_vovnet39_fpn_gn-head_1x_coco.py',
    'faster-rcnn': 'faster-rcnn_vovnet39_fpn_1x_coco.py',
    'yolov3': 'yolov3_darknet53_ms-608-273e_coco.py',
}


def family_config(family: str, det_root: str) -> Config:
    return on_demo_data(Config.fromfile(osp.join(ROOT, 'configs', 'detection',
                                                 FAMILIES[family])), det_root)


def random_detector(cfg: Config, seed: int = 0):
    """A detector with random weights and BN statistics: PyTorch's default
    initialisation (no prior-probability bias), so that scores spread over (0, 1)
    and NMS has work to do."""
    from mmbackbones.export.detector import build_detector
    torch.manual_seed(seed)
    detector, _ = build_detector(cfg)
    for m in detector.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return detector.eval()


def val_images(det_root: str, count: int):
    folder = osp.join(det_root, 'val')
    return [osp.join(folder, name) for name in sorted(os.listdir(folder))[:count]]


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Real photos: a random network gives their anchors distinct scores, where
    the digits' flat backgrounds give exact ties that any top-k may break either way."""
    from mmbackbones.datasets.photos import write_sample_photos
    return write_sample_photos(str(tmp_path_factory.mktemp('photos')), 4)


def prepared(detector, cfg, images):
    from mmbackbones.export.detector import inference_pipeline, preprocess
    return preprocess(detector, inference_pipeline(cfg), images)


def assert_same(expected, got):
    from mmbackbones.export.detector import compare_detections
    for i, (e, g) in enumerate(zip(expected, got)):
        problem = compare_detections(e, g)
        assert problem is None, f'image {i}: {problem}'


@pytest.mark.parametrize('family', list(FAMILIES))
def test_graph_computes_mmdetection_predictions(family, det_root, photos):
    """The exportable graph, run in PyTorch, gives predict()'s detections
    (labels, boxes 1e-3, scores 1e-4) on a batch of two photos of different sizes."""
    from mmbackbones.export.detector import predict_torch, to_instances
    from mmbackbones.export.detector_graph import DetectorGraph
    cfg = family_config(family, det_root)
    detector = random_detector(cfg)
    image, image_shape, samples = prepared(detector, cfg, photos[:2])
    expected = predict_torch(detector, image, samples)
    assert all(len(e['scores']) > 10 for e in expected)  # NMS and the cap both matter
    with torch.no_grad():
        dets, labels = DetectorGraph(detector)(image, image_shape)
    got = [to_instances(d.numpy(), l.numpy(), s) for d, l, s in zip(dets, labels, samples)]
    assert_same(expected, got)


def test_two_stage_graph_pools_each_roi_once_from_its_level(det_root, photos, monkeypatch):
    """Faster R-CNN's graph: each RoI goes through one RoIAlign, that of the level
    its scale maps to (MMDetection's rule), not every level for every RoI; the
    detections are predict()'s (test_graph_computes_mmdetection_predictions)."""
    from mmbackbones.export import detector_graph
    cfg = family_config('faster-rcnn', det_root)
    detector = random_detector(cfg)
    image, image_shape, _ = prepared(detector, cfg, photos[:2])
    pooled = []

    def recording(feat, rois, *args):
        pooled.append(rois.clone())
        return roi_align(feat, rois, *args)
    roi_align = detector_graph.roi_align
    monkeypatch.setattr(detector_graph, 'roi_align', recording)
    with torch.no_grad():
        detector_graph.DetectorGraph(detector)(image, image_shape)
    extractor = detector.roi_head.bbox_roi_extractor
    assert len(pooled) == len(extractor.roi_layers)
    proposals = detector.rpn_head.test_cfg.max_per_img
    assert sum(len(r) for r in pooled) == 2 * proposals  # each RoI of both images once
    for level, level_rois in enumerate(pooled):
        expected = extractor.map_roi_levels(level_rois, len(extractor.roi_layers))
        assert (expected == level).all(), (level, expected)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Each family's random detector, exported once (dynamic batch and size,
    traced at 128 x 128), as ONNX and as OpenVINO IR."""
    cache = {}

    def get(family, det_root):
        if family not in cache:
            from mmbackbones.export.detector import export_detector
            from mmbackbones.export.runtime import to_openvino_ir
            cfg = family_config(family, det_root)
            detector = random_detector(cfg)
            folder = tmp_path_factory.mktemp(family)
            onnx_path = export_detector(detector, str(folder / 'end2end.onnx'), (128, 128))
            assert not detector.training  # the exporter restores modes: eval stays eval
            cache[family] = (cfg, detector, dict(
                onnxruntime=onnx_path,
                openvino=to_openvino_ir(onnx_path, str(folder / 'end2end.xml'))))
        return cache[family]
    return get


@pytest.mark.parametrize('family', ['retinanet'] + [  # the others: `make test`, not test-fast
    pytest.param(family, marks=pytest.mark.slow) for family in FAMILIES if family != 'retinanet'])
def test_exported_detector_equals_pytorch_in_both_runtimes(family, det_root, photos, exported):
    """ONNX Runtime and OpenVINO give predict()'s detections at another batch and
    size than the traced ones (the axes are dynamic). The traced size: the trained
    detectors' tests and the static deployment's."""
    from mmbackbones.export import Session
    from mmbackbones.export.detector import predict_torch, to_instances
    cfg, detector, paths = exported(family, det_root)
    ops = {node.op_type for node in onnx.load(paths['onnxruntime']).graph.node}
    assert 'NonMaxSuppression' in ops and 'Sigmoid' not in ops  # the graph's own sigmoid
    sessions = {backend: Session(path, backend) for backend, path in paths.items()}
    scale, count = 200, 3
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (scale, scale)
    image, image_shape, samples = prepared(detector, cfg, photos[:count])
    expected = predict_torch(detector, image, samples)
    assert all(len(e['scores']) > 10 for e in expected)
    for backend, session in sessions.items():
        dets, labels = session(dict(image=image.numpy(), image_shape=image_shape.numpy()))
        assert dets.shape == (count, 100, 5) and labels.shape == (count, 100)
        got = [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)]
        assert_same(expected, got)


class Logistic(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_the_graphs_sigmoid_keeps_small_scores_in_order(backend, tmp_path):
    """The graph's sigmoid stays within 1e-6 of the exact logistic, relative, down
    to scores of 1e-7, and keeps their order in both runtimes: a trained RPN ranks
    thousands of such scores. ONNX's own Sigmoid, in ONNX Runtime, does not (this
    is why the graph has its own: it made trained Faster R-CNNs keep other
    proposals than PyTorch)."""
    from mmbackbones.export import Session
    from mmbackbones.export.detector_graph import sigmoid
    x = torch.linspace(-16, 16, 20001)
    exact = 1 / (1 + torch.exp(-x.double()))
    errors = {}
    for name, function in (('graph', sigmoid), ('onnx', torch.sigmoid)):
        path = str(tmp_path / f'{name}.onnx')
        torch.onnx.export(Logistic(function), (x,), path, dynamo=False, opset_version=17,
                          input_names=['x'], dynamic_axes={'x': {0: 'n'}})
        got = torch.from_numpy(Session(path, backend)(dict(x=x.numpy()))[0]).double()
        errors[name] = ((got - exact).abs() / exact).max().item()
        if name == 'graph':
            assert errors[name] < 1e-6, errors
            assert (got.diff() >= 0).all()
    if backend == 'onnxruntime':
        assert errors['onnx'] > 0.1, errors  # the approximation the graph avoids


def save_random_checkpoint(cfg, path):
    torch.save({'state_dict': random_detector(cfg).state_dict()}, path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('family', [  # the two-stage one in make test, the rest: make test-e2e
    pytest.param(f, marks=[] if f == 'faster-rcnn' else [pytest.mark.e2e])
    for f in FAMILIES if f != 'retinanet'])
def test_trained_detector_deploys_with_the_same_detections(family, det_root, tmp_path,
                                                             capsys):
    """With trained weights (RetinaNet's: the quick demo's test): each family,
    made small and trained 20 iterations on the demo set, deployed by
    tools/deploy.py to both runtimes at once, gives PyTorch's detections on every
    one of 32 validation images (the whole 80 for RetinaNet), and so the same mAP.
    Trained scores are what random weights do not give: thousands of RPN scores
    near zero, whose order ONNX Runtime's own Sigmoid did not keep (30 of 80
    images differed)."""
    import deploy as deploy_tool
    raw = Config.fromfile(osp.join(ROOT, 'configs', 'detection', FAMILIES[family]))
    cfg = small_trainable(raw, det_root, iters=20, work_dir=str(tmp_path / 'train'))
    checkpoint = train(cfg)
    cfg.dump(str(tmp_path / 'config.py'))
    status = deploy_tool.main([str(tmp_path / 'config.py'), checkpoint, '--backend',
                               'onnxruntime', 'openvino', '--eval', '--max-batches', '2',
                               '--work-dir', str(tmp_path / 'deploy')])
    out = capsys.readouterr().out
    for backend in ('onnxruntime', 'openvino'):
        assert f'{backend}: images whose detections differ: 0' in out, out
    # each side's printed (bbox_mAP, bbox_mAP_50): pytorch, onnxruntime, openvino
    pytorch, *runtimes = re.findall(r"bbox_mAP': ([0-9.]+), 'coco/bbox_mAP_50': ([0-9.]+)", out)
    assert status == 0 and float(pytorch[1]) >= 0.01 and runtimes == [pytorch, pytorch], out


def test_deploy_tool_static_file_equals_pytorch_and_refuses_other_sizes(det_root, tmp_path,
                                                                        capsys):
    """tools/deploy.py on the demo RetinaNet: a static OpenVINO deployment, checked
    on a demo image and on a batch of the test set (the tool said the metrics
    covered the whole test set); an input larger than the traced one is a clear
    error, not the runtime's."""
    import deploy as deploy_tool

    from mmbackbones.export.detector import DeployedDetector
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py'))
    checkpoint = save_random_checkpoint(on_demo_data(demo, det_root), tmp_path / 'det.pth')
    work = tmp_path / 'deploy'
    image = val_images(det_root, 1)[0]
    status = deploy_tool.main([
        osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py'), checkpoint,
        '--backend', 'openvino', '--static', '--shape', '128', '--work-dir', str(work),
        '--test-img', image, '--eval', '--max-batches', '1', '--cfg-options',
        f'data_root={det_root}/', 'model.backbone.init_cfg=None',
        'test_dataloader.num_workers=0', 'test_dataloader.batch_size=4'])
    out = capsys.readouterr().out
    assert status == 0 and 'equal to PyTorch' in out, out
    # a batch of 4 through the batch-1 file, and metrics over those 4 images only; each
    # image had detections, so each was compared (equal on no detections proves nothing)
    assert 'openvino: images whose detections differ: 0' in out, out
    assert 'openvino: images compared: 4 with detections, 0 without' in out, out
    assert 'metrics over the 4 of 80 test images that --max-batches 1 ran' in out, out
    assert sorted(os.listdir(work)) == ['deploy.json', 'end2end.bin', 'end2end.onnx',
                                        'end2end.xml', 'model_config.py']
    deployed = DeployedDetector(str(work))
    assert len(deployed([image])[0]['scores']) == len(deployed([image])[0]['labels'])
    with pytest.raises(ValueError, match=r'exported for \(batch, 3, 128, 128\) \(static'):
        deployed.run(torch.zeros(2, 3, 160, 128), torch.tensor([[160, 128]] * 2))


def test_what_cannot_be_exported_is_refused_by_name(det_root, tmp_path):
    from mmbackbones.errors import ExportError
    from mmbackbones.export.detector_graph import DetectorGraph
    cfg = family_config('retinanet', det_root)
    cfg.model.test_cfg.nms = dict(type='soft_nms', iou_threshold=0.5)
    with pytest.raises(ExportError, match=r"soft_nms.*Supported: RetinaNet-like"):
        DetectorGraph(random_detector(cfg))
    centernet = tmp_path / 'centernet.py'
    centernet.write_text("_base_ = ['mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py']")
    cfg = Config.fromfile(str(centernet))
    cfg.model.backbone.init_cfg = None
    with pytest.raises(ExportError, match=r'CenterNet with CenterNetHead: its post-processing'):
        DetectorGraph(random_detector(cfg))


@pytest.mark.parametrize('nms, message', [
    (dict(type='nms', iou_threshold=0.5, offset=1), r"test_cfg\.nms\.offset=1 \(only 0"),
    (dict(type='nms', iou_threshold=0.5, min_score=0.1),
     r"test_cfg\.nms: min_score=0\.1 \(the graph implements type, iou_threshold, "
     r"class_agnostic, max_num"),
    (dict(type='nms_match', iou_threshold=0.5), r"nms_match.*only type='nms'"),
])
def test_nms_settings_the_graph_cannot_compute_are_refused(det_root, nms, message):
    """Every key of the NMS settings is computed or refused: none is ignored."""
    from mmbackbones.errors import ExportError
    from mmbackbones.export.detector_graph import DetectorGraph
    cfg = small_family('retinanet', det_root)
    cfg.model.test_cfg.nms = nms
    with pytest.raises(ExportError, match=message):
        DetectorGraph(random_detector(cfg))


def test_mask_rcnn_is_refused_not_exported_without_its_masks(tmp_path):
    """Mask R-CNN's box branch is exportable, but the graph returns no masks:
    refused by name rather than deployed without them."""
    from mmbackbones.errors import ExportError
    from mmbackbones.export.detector_graph import DetectorGraph
    config = tmp_path / 'mask_rcnn.py'
    config.write_text("_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']\n"
                      "model = dict(backbone=dict(depth=18, init_cfg=None),\n"
                      "             neck=dict(in_channels=[64, 128, 256, 512]))")
    cfg = Config.fromfile(str(config))
    with pytest.raises(ExportError, match=r'MaskRCNN with masks \(roi_head\.with_mask\): '
                                          r'.*would drop the masks'):
        DetectorGraph(random_detector(cfg))


def small_family(family: str, det_root: str) -> Config:
    """A family of configs/detection with the demo's small backbone and heads
    (fast to build, trace and run), on the demo set's 10 classes."""
    raw = Config.fromfile(osp.join(ROOT, 'configs', 'detection', FAMILIES[family]))
    cfg = small_trainable(raw, det_root, iters=1, work_dir='unused')
    cfg.test_dataloader.dataset.indices = 2
    return cfg


@pytest.mark.parametrize('family, nms', [
    ('retinanet', dict(class_agnostic=True)),
    # mmcv's batched_nms runs per-class NMS for split_thr pairs or more, agnostic or not
    ('retinanet', dict(class_agnostic=True, split_thr=1, max_num=20, score_threshold=0.3)),
    ('faster-rcnn', dict(class_agnostic=True)),
])
def test_graph_computes_the_nms_settings_mmdetection_honours(family, nms, det_root, photos):
    """class_agnostic, max_num, score_threshold and split_thr in test_cfg.nms:
    the graph gives predict()'s detections. (The graph ignored them: with
    class_agnostic=True predict() kept no two overlapping boxes, the graph kept
    the overlapping boxes of different classes.)"""
    from mmbackbones.export.detector import compare_detections, predict_torch, to_instances
    from mmbackbones.export.detector_graph import DetectorGraph
    cfg = small_family(family, det_root)
    detector = random_detector(cfg)
    image, image_shape, samples = prepared(detector, cfg, photos[:2])
    per_class = predict_torch(detector, image, samples)
    head = detector.roi_head if family == 'faster-rcnn' else detector.bbox_head
    head.test_cfg.nms.update(nms)
    expected = predict_torch(detector, image, samples)
    # the settings change predict()'s result: the test has teeth
    assert any(compare_detections(p, e) for p, e in zip(per_class, expected))
    with torch.no_grad():
        dets, labels = DetectorGraph(detector)(image, image_shape)
    got = [to_instances(d.numpy(), l.numpy(), s) for d, l, s in zip(dets, labels, samples)]
    assert all(len(e) for e in expected)
    assert_same(expected, got)


def test_class_agnostic_nms_in_onnx_runtime(det_root, photos, tmp_path):
    """The class-agnostic NMS exports: ONNX Runtime gives predict()'s detections."""
    from mmbackbones.export import Session
    from mmbackbones.export.detector import export_detector, predict_torch, to_instances
    cfg = small_family('retinanet', det_root)
    cfg.model.test_cfg.nms.class_agnostic = True
    detector = random_detector(cfg)
    path = export_detector(detector, str(tmp_path / 'end2end.onnx'), (128, 128))
    image, image_shape, samples = prepared(detector, cfg, photos[:2])
    expected = predict_torch(detector, image, samples)
    assert all(len(e) for e in expected)  # equal on no detections would prove nothing
    dets, labels = Session(path)(dict(image=image.numpy(), image_shape=image_shape.numpy()))
    assert_same(expected, [to_instances(d, l, s) for d, l, s in zip(dets, labels, samples)])


def test_static_deployment_pads_smaller_inputs_to_its_size(det_root, photos, tmp_path):
    """A static deployment (batch 2, 160 x 160) takes three photos prepared at
    128 px: padded as the data_preprocessor pads (bottom and right, its
    pad_value) and run two by two, they give predict()'s detections on the same
    padded input. A larger input is refused by its size."""
    from mmbackbones.export.detector import DeployedDetector, predict_torch, write_deployment
    cfg = small_family('retinanet', det_root)
    checkpoint = save_random_checkpoint(cfg, tmp_path / 'det.pth')
    work = str(tmp_path / 'deploy')
    write_deployment(cfg, checkpoint, work, 'onnxruntime', shape=(160, 160), batch=2,
                     dynamic=False)
    deployed = DeployedDetector(work)
    detector = random_detector(cfg)
    image, image_shape, samples = prepared(detector, cfg, photos[:3])
    assert tuple(image.shape) == (3, 3, 128, 128)
    padded = torch.nn.functional.pad(image, (0, 32, 0, 32),
                                     value=detector.data_preprocessor.pad_value)
    expected = predict_torch(detector, padded, samples)
    assert_same(expected, deployed(photos[:3]))
    with pytest.raises(ValueError, match=r'input of shape \(1, 3, 192, 160\): this deployment '
                                         r'was exported for \(batch, 3, 160, 160\) \(static; '
                                         r'smaller images are padded to it\)'):
        deployed.run(torch.zeros(1, 3, 192, 160), torch.tensor([[192, 160]]))


def test_metrics_of_some_batches_cover_only_their_images(det_root):
    """deploy.py --eval --max-batches: the COCO metric restricted to the images
    that were run. Ground-truth boxes as predictions for the first 16 of the 80
    validation images give mAP 1.0 over those images (and, unrestricted, the 64
    unseen images count as missed)."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope

    from mmbackbones.export.detector import restrict_to_images
    cfg = family_config('retinanet', det_root)
    cfg.test_dataloader.update(batch_size=16)
    cfg.test_dataloader.dataset.indices = None
    batch = first_batch(cfg.test_dataloader)
    metrics = {}
    for restricted in (False, True):
        with DefaultScope.overwrite_default_scope('mmdet'):
            evaluator = Evaluator(dict(type='CocoMetric', metric='bbox',
                                       ann_file=f'{det_root}/annotations/val.json'))
        evaluator.dataset_meta = dict(classes=cfg.test_dataloader.dataset.metainfo.classes)
        predictions = []
        for sample in batch['data_samples']:
            scale_w, scale_h = sample.metainfo['scale_factor']
            boxes = sample.gt_instances.bboxes.tensor / torch.tensor(
                [scale_w, scale_h, scale_w, scale_h])
            predictions.append(dict(
                img_id=sample.metainfo['img_id'], ori_shape=sample.metainfo['ori_shape'],
                pred_instances=dict(bboxes=boxes, scores=torch.ones(len(boxes)),
                                    labels=sample.gt_instances.labels)))
        evaluator.process(predictions, batch)
        if restricted:
            restrict_to_images(evaluator, [p['img_id'] for p in predictions])
        metrics[restricted] = evaluator.evaluate(len(predictions))['coco/bbox_mAP']
    assert metrics[True] == 1.0 and metrics[False] < 0.5, metrics


def test_bad_input_leaves_no_file(det_root, tmp_path, monkeypatch):
    """A size the detector cannot take, a missing runtime, a checkpoint of another
    detector, a failing exporter: each a clear error, and no file behind."""
    from mmbackbones.errors import CheckpointError, ExportError
    from mmbackbones.export.detector import export_detector, write_deployment
    cfg = family_config('retinanet', det_root)
    detector = random_detector(cfg)
    target = tmp_path / 'out' / 'end2end.onnx'
    with pytest.raises(ValueError, match=r'multiples of 32.*e\.g\. \(128, 128\)'):
        export_detector(detector, str(target), (100, 128))
    monkeypatch.setitem(sys.modules, 'openvino', None)
    with pytest.raises(ImportError, match=r'pip install "mmbackbones\[openvino\]"'):
        write_deployment(cfg, None, str(tmp_path / 'out'), 'openvino')
    monkeypatch.undo()
    other = save_random_checkpoint(family_config('fcos', det_root), tmp_path / 'fcos.pth')
    with pytest.raises(CheckpointError, match='fcos|bbox_head'):
        write_deployment(cfg, other, str(tmp_path / 'out'), 'onnxruntime')

    def failing(*args, **kwargs):
        open(args[2], 'w').write('half a file')
        raise RuntimeError('exporter failed')
    monkeypatch.setattr(torch.onnx, 'export', failing)
    with pytest.raises(ExportError, match=r'exporting RetinaNet to ONNX \(opset 17\) failed: '
                                          r'exporter failed'):
        export_detector(detector, str(target), (128, 128))
    assert not osp.exists(tmp_path / 'out') or os.listdir(tmp_path / 'out') == []
