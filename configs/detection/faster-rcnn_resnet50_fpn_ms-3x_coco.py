# Faster R-CNN + FPN as MMDetection's configs/faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py,
# with this package's ResNet-50 (torchvision's: the network of its pytorch-style R-50),
# trained from torchvision's ImageNet file as MMDetection's config is. MMDetection's COCO
# weights of it (docs/weights.md#public-detectors; the published figure, not re-measured
# here):
#   mmbackbones://mmdet/faster-rcnn_r50_fpn_ms-3x_coco: box AP 40.3 (MMDetection's metafile),
#     https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_fpn_mstrain_3x_coco/faster_rcnn_r50_fpn_mstrain_3x_coco_20210524_110822-e10bd31c.pth
# Evaluate:
#   python tools/test.py configs/detection/faster-rcnn_resnet50_fpn_ms-3x_coco.py \
#       mmbackbones://mmdet/faster-rcnn_r50_fpn_ms-3x_coco
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.resnet50_mmdet}})
