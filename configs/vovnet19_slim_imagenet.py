# VoVNet-19-slim on ImageNet with the seed's recipe (configs/_base_/imagenet_recipe.py).
_base_ = ['_base_/imagenet_recipe.py']
model = dict(backbone=dict(type='VoVNet', depth=19, slim=True), head=dict(in_channels=512))
