"""Shared by the LazyConfig files here: Detectron2's own RetinaNet / Faster R-CNN
(model zoo ``common/``) with an mmbackbones backbone, COCO 1x, and the choices of
configs/detection/ (stem + res2 frozen, FrozenBN, RGB input with ImageNet statistics)."""
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from mmbackbones.adapters.detectron2 import MMBackbone, deepest_channels

IMAGENET_RGB = dict(pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
                    input_format='RGB')


def _body(backbone: dict, pretrained: str, prefix) -> dict:
    # FrozenBN unless the backbone says otherwise (a timm ConvNeXt has no BatchNorm)
    body = {'norm_cfg': dict(type='FrozenBN'), **backbone, 'frozen_stages': 1}
    if pretrained:  # prefix None: a file of the backbone alone (timm's own weights)
        body['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained, prefix=prefix)
    return body


def _training(model):
    """``(model, dataloader, optimizer, lr_multiplier, train)``: the model zoo's COCO
    data, SGD, 1x schedule and train settings around ``model``."""
    for key, value in IMAGENET_RGB.items():
        setattr(model, key, value)
    dataloader = get_config('common/data/coco.py').dataloader
    dataloader.train.mapper.image_format = dataloader.test.mapper.image_format = 'RGB'
    dataloader.train.mapper.use_instance_mask = False
    return (model, dataloader, get_config('common/optim.py').SGD,
            get_config('common/coco_schedule.py').lr_multiplier_1x,
            get_config('common/train.py').train)


def retinanet(backbone: dict, pretrained: str = '', prefix='backbone.') -> tuple:
    model = get_config('common/models/retinanet.py').model
    features = ['res3', 'res4', 'res5']
    model.backbone.bottom_up = L(MMBackbone)(body=_body(backbone, pretrained, prefix),
                                             out_features=features)
    model.backbone.in_features = features
    model.backbone.top_block.in_channels = deepest_channels(backbone)
    model.backbone.top_block.in_feature = features[-1]
    return _training(model)


def faster_rcnn(backbone: dict, pretrained: str = '', prefix='backbone.') -> tuple:
    model = get_config('common/models/mask_rcnn_fpn.py').model
    features = ['res2', 'res3', 'res4', 'res5']
    model.backbone.bottom_up = L(MMBackbone)(body=_body(backbone, pretrained, prefix),
                                             out_features=features)
    model.backbone.in_features = features
    for key in ('mask_in_features', 'mask_pooler', 'mask_head'):
        setattr(model.roi_heads, key, None)
    return _training(model)
