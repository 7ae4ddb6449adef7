"""Listing and building backbones by name, with or without OpenMMLab configs."""
import os.path as osp
from typing import Dict, List, Optional, Tuple

from . import models  # noqa: F401  (registers the families)
from .loader import convert, load_weights, network
from .registry import MODELS
from .weights import ConvertedWeights
from .weights.catalog import SCHEME, catalog, for_network, is_name


FILE_SUFFIXES = ('.pth', '.pt', '.pkl', '.bin', '.safetensors')


def list_backbones() -> List[str]:
    """Registered backbone class names (``mmbackbones`` scope)."""
    return sorted(MODELS.module_dict)


def list_variants() -> Dict[str, Tuple[str, dict]]:
    """Every named variant, e.g. ``'VoVNet-39-V1': ('VoVNet', {...})``."""
    table = {}
    for name in list_backbones():
        for variant, kwargs in MODELS.get(name).variants().items():
            table[variant] = (name, kwargs)
    return table


def build_backbone(name: str, weights: Optional[str] = None, **kwargs):
    """Build a backbone by class name (``'VoVNet'``) or variant (``'VoVNet-39-V1'``);
    ``kwargs`` override the variant's arguments.

    ``weights`` loads published weights into it, strictly: a public file's name
    (``'vovnet-detectron2/V-39-eSE'``; ``tools/convert_weights.py --list``), a
    source (``'vovnet-detectron2'``, ``'timm'``, ``'torchvision'``: its file for
    this network), a torchvision tag (``'IMAGENET1K_V1'``), or a path/URL. A
    name whose network is not this one is an error naming both."""
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
    if weights is not None and name == 'Timm':
        return cls(weights=weights, **kwargs)
    model = cls(**kwargs)
    if weights is not None:
        load_weights(model, resolve_weights(model, weights))
    return model


def resolve_weights(model, weights: str) -> str:
    """What ``weights=`` names for ``model``: a catalog name, or the catalog's
    file of that source/tag for this network; anything else as given (a path
    or URL)."""
    if is_name(weights) or weights.startswith(SCHEME) or '://' in weights \
            or osp.exists(osp.expanduser(weights)) or weights.endswith(FILE_SUFFIXES):
        return weights
    arch = model.arch_args()
    entry = for_network(weights, type(model).__name__,
                        lambda e: network(e.type, e.kwargs).arch_args() == arch)
    return entry.name


def convert_weights(source, layout: Optional[str] = None) -> ConvertedWeights:
    """A public checkpoint (a path, URL, public file name or loaded dict, in any
    wrapper) in our keys, with the backbone type and arguments that compute
    exactly the source's network. ``layout`` skips the detection."""
    return convert(source, layout)


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
