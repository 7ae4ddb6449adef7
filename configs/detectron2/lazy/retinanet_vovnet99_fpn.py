# Detectron2 LazyConfig: retinanet + FPN with mmbackbones' vovnet99, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_vovnet99_fpn.py
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='VoVNet', depth=99), pretrained='checkpoints/vovnet99_imagenet.pth')
