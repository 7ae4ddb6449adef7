# faster-rcnn + FPN with timm's RegNetY-1.6GF (mmbackbones.Timm, timm's published ImageNet
# weights, downloaded once: see _base_/mmbackbones.py).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.regnety_016}},
             neck=dict(in_channels={{_base_.regnety_016_channels}}),
             data_preprocessor={{_base_.imagenet_preprocessor}})
