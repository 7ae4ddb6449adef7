from .base import LEVEL_STRIDES, NUM_LEVELS, BaseBackbone, Level
from .darknet import CSPDarknet, Darknet
from .vovnet import VoVNet

__all__ = ['BaseBackbone', 'Level', 'LEVEL_STRIDES', 'NUM_LEVELS', 'Darknet',
           'CSPDarknet', 'VoVNet']
