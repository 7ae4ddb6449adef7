"""Feature names, shapes and freezing for Detectron2 -- plain Python, so it is
tested without Detectron2 installed.

Detectron2 names ResNet features by stage: ``res2`` (stride 4) .. ``res5``
(stride 32). Level ``i`` of an mmbackbones backbone (stride ``2**(i+1)``) is
``res{i+1}``; level 0 (stride 2) is ``res1``. The ``c`` style (``c1``..``c5``)
follows the FPN paper.
"""
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from ..models.base import LEVEL_STRIDES, NUM_LEVELS

FEATURE_STYLES = ('res', 'c')


def feature_name(level: int, style: str = 'res') -> str:
    if style not in FEATURE_STYLES:
        raise ValueError(f'unknown feature naming style {style!r}; valid: {FEATURE_STYLES}')
    return f'{style}{level + 1}'


def feature_levels(names: Sequence[str]) -> Tuple[int, ...]:
    """Levels of feature names (either style), shallowest first; bad names fail
    with the valid ones."""
    valid = [feature_name(i, s) for s in FEATURE_STYLES for i in range(NUM_LEVELS)]
    levels = []
    for name in names:
        if name not in valid:
            raise ValueError(f'unknown feature {name!r}; valid: {valid}')
        levels.append(int(name.lstrip('resc')) - 1)
    if not levels or len(set(levels)) != len(levels):
        raise ValueError(f'out features must name distinct levels, got {list(names)}')
    if levels != sorted(levels):
        raise ValueError(f'out features must be ordered shallowest first, got {list(names)}')
    return tuple(levels)


def output_shapes(level_channels: Sequence[int], names: Sequence[str]
                  ) -> Dict[str, Tuple[int, int]]:
    """``{name: (channels, stride)}`` from a backbone's metadata (no forward)."""
    return {name: (level_channels[level], LEVEL_STRIDES[level])
            for name, level in zip(names, feature_levels(names))}


def freeze_at_to_frozen_stages(freeze_at: int) -> int:
    """Detectron2's FREEZE_AT (0: nothing, 1: stem, 2: stem + res2, ...) as our
    ``frozen_stages`` (-1: nothing, 0: level 0, 1: levels 0-1, ...)."""
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= NUM_LEVELS:
        raise ValueError(f'FREEZE_AT={freeze_at!r} is out of range; valid: 0..{NUM_LEVELS}')
    return freeze_at - 1


def norm_cfg_from_detectron2(norm: str, num_groups: int = 32) -> dict:
    """Detectron2's ``NORM`` strings as our ``norm_cfg``."""
    table = {'BN': dict(type='BN'), 'SyncBN': dict(type='SyncBN'),
             'FrozenBN': dict(type='FrozenBN'), 'GN': dict(type='GN', num_groups=num_groups)}
    if norm not in table:
        raise ValueError(f'unknown NORM {norm!r}; valid: {sorted(table)}')
    return table[norm]


def deepest_feature(names: Sequence[str]) -> str:
    """The deepest of ``names`` (either style): what RetinaNet's P6/P7 are built on."""
    levels = feature_levels(names)
    return names[levels.index(max(levels))]


def size_divisibility(names: List[str]) -> int:
    """Inputs must be padded to the deepest stride used."""
    return max(LEVEL_STRIDES[level] for level in feature_levels(names))


def has_checkpoint(output_dir: str) -> bool:
    """Whether Detectron2's ``--resume`` would find a checkpoint in ``output_dir``
    (its ``last_checkpoint`` file naming one that exists)."""
    record = osp.join(output_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return False
    with open(record) as f:
        name = f.read().strip()
    return bool(name) and osp.isfile(osp.join(output_dir, name))
