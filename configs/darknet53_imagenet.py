# Darknet-53 on ImageNet with the seed's recipe (configs/_base_/imagenet_recipe.py).
_base_ = ['_base_/imagenet_recipe.py']
model = dict(backbone=dict(type='mmbackbones.Darknet', depth=53), head=dict(in_channels=1024))
