# Detectron2 LazyConfig: faster_rcnn + FPN with mmbackbones' vovnet57, COCO 1x (see _common.py).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/faster_rcnn_vovnet57_fpn.py
from ._common import faster_rcnn

model, dataloader, optimizer, lr_multiplier, train = faster_rcnn(
    dict(name='VoVNet', depth=57), pretrained='checkpoints/vovnet57_imagenet.pth')
