# retinanet + FPN with mmbackbones' vovnet39 (ImageNet-pretrained, see _base_/mmbackbones.py).
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.vovnet39}}, neck=dict(in_channels={{_base_.vovnet_channels}}),
             data_preprocessor={{_base_.imagenet_preprocessor}})
