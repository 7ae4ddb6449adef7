# Detectron2 LazyConfig: retinanet + FPN with mmbackbones' darknet53, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_darknet53_fpn.py
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='mmbackbones.Darknet', depth=53), pretrained='checkpoints/darknet53_imagenet.pth')
