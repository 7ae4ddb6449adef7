# RetinaNet + FPN from vovnet-detectron2's public ImageNet V-39-eSE (docs/weights.md).
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.vovnet39_public}}, neck=dict(in_channels={{_base_.vovnet_channels}}),
             data_preprocessor={{_base_.detectron2_preprocessor}})
