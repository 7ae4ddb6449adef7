"""Whole detectors exported with their post-processing (mmbackbones.export):
the graph computes MMDetection's predictions, in PyTorch, ONNX Runtime and
OpenVINO, for each detector family of configs/detection."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from detection_utils import on_demo_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
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
    from mmbackbones.export.detector import preprocess, test_pipeline
    return preprocess(detector, test_pipeline(cfg), images)


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
