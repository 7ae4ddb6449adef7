"""Vision backbones for detection: Darknet, CSPDarknet, VoVNet and multi-output
torchvision ports, under one contract and registered for OpenMMLab."""
from .api import build_backbone, list_backbones, list_variants
from .models import BaseBackbone, CSPDarknet, Darknet, VoVNet
from .version import __version__

__all__ = ['BaseBackbone', 'Darknet', 'CSPDarknet', 'VoVNet', 'build_backbone',
           'list_backbones', 'list_variants', '__version__']
