# Detectron2 LazyConfig: RetinaNet with mmbackbones' VoVNet-39 (FPN with P6/P7).
#   from detectron2.config import LazyConfig, instantiate
#   model = instantiate(LazyConfig.load('configs/detectron2/retinanet_vovnet39_fpn_lazy.py').model)
#   mmbackbones.adapters.detectron2.load_pretrained(model, 'checkpoints/vovnet39_imagenet.pth')
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from mmbackbones.adapters.detectron2 import MMBackbone

model = get_config('common/models/retinanet.py').model
model.backbone.bottom_up = L(MMBackbone)(
    # FREEZE_AT=2 of Detectron2's ResNet = frozen_stages=1 (stem + res2)
    body=dict(name='VoVNet', depth=39, frozen_stages=1, norm_eval=True),
    out_features=['res3', 'res4', 'res5'],
)
model.backbone.in_features = ['res3', 'res4', 'res5']
model.backbone.top_block.in_channels = 1024  # VoVNet's res5
# the backbone was pretrained on RGB images with ImageNet's statistics
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
model.input_format = 'RGB'
