# Detectron2 LazyConfig: retinanet + FPN with vovnet-detectron2's published VoVNetV2-39
# (V-39-eSE) by name, downloaded once (docs/weights.md); BGR input, Detectron2's default
# normalization, as the file was trained.
from ._common import retinanet

model, dataloader, optimizer, lr_multiplier, train = retinanet(
    dict(name='VoVNet', depth=39, stem_stride=4),
    pretrained='mmbackbones://vovnet-detectron2/V-39-eSE', prefix=None)
model.pixel_mean = [103.530, 116.280, 123.675]
model.pixel_std = [1.0, 1.0, 1.0]
model.input_format = 'BGR'
dataloader.train.mapper.image_format = dataloader.test.mapper.image_format = 'BGR'
