# YOLOv3 (608 px) as MMDetection's configs/yolo/yolov3_d53_8xb8-ms-608-273e_coco.py, with this
# package's Darknet-53 (LeakyReLU 0.1: the same network), trained from MMDetection's ImageNet
# Darknet-53 (open-mmlab://darknet53). MMDetection's COCO weights of it
# (docs/weights.md#public-detectors; published figures, not re-measured here):
#   mmbackbones://mmdet/yolov3_d53_608_coco: box AP 33.7 (MMDetection's metafile),
#     https://download.openmmlab.com/mmdetection/v2.0/yolo/yolov3_d53_mstrain-608_273e_coco/yolov3_d53_mstrain-608_273e_coco_20210518_115020-a2c3acb8.pth
#   mmbackbones://mmdet/yolov3_d53_amp_608_coco: box AP 33.8 (MMDetection's metafile),
#     https://download.openmmlab.com/mmdetection/v2.0/yolo/yolov3_d53_fp16_mstrain-608_273e_coco/yolov3_d53_fp16_mstrain-608_273e_coco_20210517_213542-4bc34944.pth
# Evaluate:
#   python tools/test.py configs/detection/yolov3_darknet53-public_ms-608-273e_coco.py \
#       mmbackbones://mmdet/yolov3_d53_608_coco
_base_ = ['mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.darknet53_yolo_public}},
             neck=dict(in_channels={{_base_.yolov3_neck_channels}}))
