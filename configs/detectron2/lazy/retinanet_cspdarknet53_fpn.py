# Detectron2 LazyConfig: retinanet + FPN with mmbackbones' cspdarknet53, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_cspdarknet53_fpn.py
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='mmbackbones.CSPDarknet', depth=53), pretrained='checkpoints/cspdarknet53_imagenet.pth')
