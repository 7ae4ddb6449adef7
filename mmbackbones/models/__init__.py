from .base import LEVEL_STRIDES, NUM_LEVELS, BaseBackbone, Level
from .darknet import CSPDarknet, Darknet
from .torchvision_ports import (EfficientNet, MobileNetV2, MobileNetV3, ResNet, ResNeXt,
                                TorchvisionPort, WideResNet)
from .timm_backbone import Timm
from .vovnet import VoVNet

__all__ = ['BaseBackbone', 'Level', 'LEVEL_STRIDES', 'NUM_LEVELS', 'Darknet',
           'CSPDarknet', 'VoVNet', 'TorchvisionPort', 'ResNet', 'ResNeXt', 'WideResNet',
           'MobileNetV2', 'MobileNetV3', 'EfficientNet', 'Timm']
