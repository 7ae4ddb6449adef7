"""Helpers for tests of the Detectron2 adapter: Detectron2 is not on PyPI, so
these run where it was built from source and are skipped otherwise."""
import importlib.util

import pytest
import torch

HAS_D2 = importlib.util.find_spec('detectron2') is not None
needs_d2 = pytest.mark.skipif(not HAS_D2, reason='Detectron2 is not installed (not on PyPI)')


def d2_cfg(d2, meta: str, backbone: str, args: dict, norm='BN', freeze_at=2,
           features=('res2', 'res3', 'res4', 'res5')):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    cfg = get_cfg()
    d2.add_mmbackbones_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(
        {'retinanet': 'COCO-Detection/retinanet_R_50_FPN_1x.yaml',
         'rcnn': 'COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml'}[meta]))
    cfg.MODEL.BACKBONE.NAME = ('build_mmbackbones_retinanet_fpn_backbone' if meta == 'retinanet'
                               else 'build_mmbackbones_fpn_backbone')
    cfg.MODEL.MMBACKBONES.TYPE = backbone
    cfg.MODEL.MMBACKBONES.ARGS = type(cfg.MODEL.MMBACKBONES.ARGS)(args, new_allowed=True)
    if norm is not None:
        cfg.MODEL.MMBACKBONES.NORM = norm
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.FPN.IN_FEATURES = list(features)[1:] if meta == 'retinanet' else list(features)
    if meta == 'rcnn':
        top = [f'p{i + 2}' for i in range(len(features) + 1)]
        cfg.MODEL.RPN.IN_FEATURES, cfg.MODEL.ROI_HEADS.IN_FEATURES = top, top[:-1]
    cfg.MODEL.DEVICE = 'cpu'
    cfg.MODEL.WEIGHTS = ''
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    cfg.INPUT.FORMAT = 'RGB'
    if meta == 'retinanet':
        cfg.MODEL.RETINANET.NUM_CLASSES = 10
    else:
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = 10
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    return cfg


def demo_inputs():
    from detectron2.structures import Boxes, Instances
    torch.manual_seed(0)
    inputs = []
    for _ in range(2):
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(torch.tensor([[10., 12., 50., 60.], [60., 20., 110., 80.]]))
        inst.gt_classes = torch.tensor([3, 7])
        inputs.append(dict(image=torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
                           .float(), height=96, width=128, instances=inst))
    return inputs


def train_a_step(model) -> None:
    """One SGD step of a Detectron2 model on :func:`demo_inputs`; the loss must be finite."""
    from detectron2.utils.events import EventStorage
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with EventStorage(0):
        total = sum(model(demo_inputs()).values())
        assert torch.isfinite(total)
        total.backward()
        optimizer.step()
