"""The ``mmbackbones`` registry scope.

Every backbone lives in ``MODELS`` (scope ``mmbackbones``), a child of MMEngine's
root ``MODELS``, so ``type='mmbackbones.VoVNet'`` resolves from any scope.
Names that no OpenMMLab package registers are also added to the root registry,
which every downstream scope (MMDetection, MMPretrain) falls back to, so
``type='VoVNet'`` works unscoped there after ``custom_imports``. Names another
package owns (``RESERVED_NAMES``) stay in our scope only: we never shadow them.
"""
from typing import TypeVar

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmbackbones',
                  locations=['mmbackbones.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmbackbones',
                 locations=['mmbackbones.engine'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmbackbones',
                      locations=['mmbackbones.datasets'])

# Model names registered by MMDetection, MMPretrain, MMYOLO or MMSegmentation;
# ours resolve only as ``mmbackbones.<Name>``. ``tests/test_registry.py`` checks
# this list against the installed MMDetection and MMPretrain.
RESERVED_NAMES = frozenset({
    'Darknet', 'CSPDarknet', 'ResNet', 'ResNeXt', 'MobileNetV2', 'MobileNetV3',
    'EfficientNet',
})

T = TypeVar('T', bound=type)


def register_backbone(cls: T) -> T:
    """Register ``cls`` in our scope, and unscoped where the name is free."""
    MODELS.register_module(module=cls)
    if cls.__name__ not in RESERVED_NAMES:
        MMENGINE_MODELS.register_module(module=cls)
    return cls
