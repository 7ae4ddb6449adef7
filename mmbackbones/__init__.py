"""Vision backbones for detection: Darknet, CSPDarknet, VoVNet and multi-output
torchvision ports, under one contract and registered for OpenMMLab."""
from .api import build_backbone, convert_weights, list_backbones, list_variants
from .models import (BaseBackbone, CSPDarknet, Darknet, EfficientNet, MobileNetV2,
                     MobileNetV3, ResNet, ResNeXt, Timm, VoVNet, WideResNet)
from .errors import CheckpointError, ExportError
from .loader import load_weights
from .loader import install as _install_named_weights
from .deploy import deploy, fuse
from .weights import ConvertedWeights
from .checkpoint import install as _install_safe_loading
from .engine import install_atomic_local_backend as _install_atomic_writes
from .version import __version__

_install_safe_loading()
_install_named_weights()
_install_atomic_writes()

__all__ = ['BaseBackbone', 'Darknet', 'CSPDarknet', 'VoVNet', 'ResNet', 'ResNeXt', 'WideResNet',
           'MobileNetV2', 'MobileNetV3', 'EfficientNet', 'Timm', 'build_backbone', 'load_weights',
           'CheckpointError', 'ExportError', 'deploy', 'fuse',
           'convert_weights', 'ConvertedWeights',
           'list_backbones', 'list_variants', '__version__']
