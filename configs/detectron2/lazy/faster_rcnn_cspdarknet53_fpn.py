# Detectron2 LazyConfig: faster_rcnn + FPN with mmbackbones' cspdarknet53, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/faster_rcnn_cspdarknet53_fpn.py
from ._common import faster_rcnn

model, dataloader, optimizer, lr_multiplier, train = faster_rcnn(
    dict(name='mmbackbones.CSPDarknet', depth=53), pretrained='checkpoints/cspdarknet53_imagenet.pth')
