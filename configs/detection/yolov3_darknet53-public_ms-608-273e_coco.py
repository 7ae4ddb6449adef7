# YOLOv3 from MMDetection's own ImageNet Darknet-53 (open-mmlab://darknet53, LeakyReLU 0.1):
# the backbone MMDetection's YOLOv3 config starts from, with our Darknet.
_base_ = ['mmdet::yolo/yolov3_d53_8xb8-ms-608-273e_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.darknet53_yolo_public}},
             neck=dict(in_channels={{_base_.yolov3_neck_channels}}))
