# FCOS + FPN as MMDetection's
# configs/fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py, with
# this package's ResNet-50 with style='caffe' (the stride on the first 1x1 conv: the network
# of its R-50-caffe; FrozenBN), from the same caffe ImageNet file. MMDetection's COCO weights
# of it (docs/weights.md#public-detectors; the published figure, not re-measured here):
#   mmbackbones://mmdet/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco: box AP 38.7 (MMDetection's metafile),
#     https://download.openmmlab.com/mmdetection/v2.0/fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco-0a0d75a8.pth
# Evaluate:
#   python tools/test.py configs/detection/fcos_resnet50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py \
#       mmbackbones://mmdet/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco
_base_ = [
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
    '_base_/mmbackbones.py']
model = dict(backbone={{_base_.resnet50_caffe_d2_mmdet}})
