# Faster R-CNN + FPN from vovnet-detectron2's public ImageNet V-57-eSE (docs/weights.md).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.vovnet57_public}}, neck=dict(in_channels={{_base_.vovnet_channels}}),
             data_preprocessor={{_base_.detectron2_preprocessor}})
