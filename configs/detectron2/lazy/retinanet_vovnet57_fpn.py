# Detectron2 LazyConfig: retinanet + FPN with mmbackbones' vovnet57, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_vovnet57_fpn.py
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='VoVNet', depth=57), pretrained='checkpoints/vovnet57_imagenet.pth')
