# Detectron2 LazyConfig: retinanet + FPN with timm's ConvNeXt-T (mmbackbones.Timm), COCO 1x
# (see _common.py); timm's published ImageNet weights for the tag, downloaded once (docs/timm.md).
# norm_cfg=None keeps timm's norms (LayerNorms: nothing to freeze).
#   python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_convnext_tiny_fpn.py
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='Timm', model_name='convnext_tiny.in12k_ft_in1k', weights=True, norm_cfg=None))
