# RetinaNet + FPN as MMDetection's configs/retinanet/retinanet_r50_fpn_1x_coco.py, with this
# package's ResNet-50 (torchvision's: the network of its pytorch-style R-50), trained from
# torchvision's ImageNet file as MMDetection's config is. MMDetection's COCO weights of it
# (docs/weights.md#public-detectors; the published figure, not re-measured here):
#   mmbackbones://mmdet/retinanet_r50_fpn_1x_coco: box AP 36.5 (MMDetection's metafile),
#     https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r50_fpn_1x_coco/retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth
# Evaluate:
#   python tools/test.py configs/detection/retinanet_resnet50_fpn_1x_coco.py \
#       mmbackbones://mmdet/retinanet_r50_fpn_1x_coco
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.resnet50_mmdet}})
