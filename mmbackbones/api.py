"""Listing and building backbones by name, with or without OpenMMLab configs."""
from typing import Dict, List, Tuple

from .registry import MODELS


def list_backbones() -> List[str]:
    """Registered backbone class names (``mmbackbones`` scope)."""
    import mmbackbones.models  # noqa: F401  (registers the families)
    return sorted(MODELS.module_dict)


def list_variants() -> Dict[str, Tuple[str, dict]]:
    """Every named variant, e.g. ``'VoVNet-39-V1': ('VoVNet', {...})``."""
    table = {}
    for name in list_backbones():
        for variant, kwargs in MODELS.get(name).variants().items():
            table[variant] = (name, kwargs)
    return table


def build_backbone(name: str, **kwargs):
    """Build a backbone by class name (``'VoVNet'``) or variant (``'VoVNet-39-V1'``);
    ``kwargs`` override the variant's arguments."""
    variants = list_variants()
    if name in variants:
        name, base = variants[name]
        kwargs = {**base, **kwargs}
    if name.startswith('mmbackbones.'):
        name = name[len('mmbackbones.'):]
    cls = MODELS.get(name) if name in MODELS.module_dict else None
    if cls is None:
        raise ValueError(f'unknown backbone {name!r}; valid names: {list_backbones()} '
                         f'or variants: {sorted(variants)}')
    return cls(**kwargs)


def parse_kwargs(pairs) -> dict:
    """``['depth=39', "act_cfg={'type': 'SiLU'}"]`` -> keyword arguments; values are
    Python literals, or strings when they are not."""
    import ast
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise ValueError(f'expected key=value, got {pair!r}')
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs
