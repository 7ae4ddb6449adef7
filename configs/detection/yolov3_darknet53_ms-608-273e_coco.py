# YOLOv3 with mmbackbones' Darknet-53 (ImageNet-pretrained, see _base_/mmbackbones.py).
_base_ = ['mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.darknet53_yolo}},
             neck=dict(in_channels={{_base_.yolov3_neck_channels}}),
             data_preprocessor={{_base_.imagenet_preprocessor}})
