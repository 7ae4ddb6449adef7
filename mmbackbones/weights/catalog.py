"""Public weights by name: where each file lives, which of our networks computes
it, what its source publishes of it and the input it expects. ImageNet backbone
files here; whole COCO detectors in :mod:`.detectors` (:class:`DetectorEntry`).

A name is ``'<source>/<file>'`` (``'vovnet-detectron2/V-39-eSE'``,
``'timm/ese_vovnet39b.ra_in1k'``, ``'torchvision/ResNet50_Weights.IMAGENET1K_V2'``)
and may be written ``'mmbackbones://<name>'`` wherever MMEngine takes a checkpoint
(the scheme is registered with its ``CheckpointLoader``). torchvision's entries
come from torchvision's own weight tables, with its addresses and hashes.
"""
from typing import Dict, List, Tuple

from ..errors import CheckpointError
from .detectors import DETECTORS
from .entry import DetectorEntry, WeightsEntry
from .input_format import (DARKNET_RGB, DETECTRON2_BGR, HALF_RGB, IMAGENET_RGB,
                           IMAGENET_RGB_255, InputFormat)

SCHEME = 'mmbackbones://'

#: OpenMMLab's caffe-style ResNets (stride on the first 1x1 conv, BGR input):
#: torchvision's keys and shapes, another network. Known by the hash their
#: published names carry, so a renamed copy is still recognised.
CAFFE_RESNET_HASHES = {
    '788b5fa3': 'open-mmlab://detectron/resnet50_caffe',
    '5891d200': 'open-mmlab://detectron2/resnet50_caffe',
    '3ad79236': 'open-mmlab://detectron/resnet101_caffe',
    '6cc46731': 'open-mmlab://detectron2/resnet101_caffe',
}


def _vovnet_detectron2() -> List[WeightsEntry]:
    files = {19: 'rptgw6stppbiw1u', 39: 'q98pypf96rhtd8y', 57: '8xl0cb3jj51f45a',
             99: '1mlv31coewx8trd'}
    return [WeightsEntry(
        f'vovnet-detectron2/V-{depth}-eSE',
        f'https://dl.dropbox.com/s/{key}/vovnet{depth}_ese_detectron2.pth',
        'VoVNet', dict(depth=depth, stem_stride=4), f'vovnet-detectron2:V-{depth}-eSE',
        'not published (vovnet-detectron2 README, "ImageNet Pretrained Models")', 224,
        DETECTRON2_BGR) for depth, key in files.items()]


def _hub(model: str) -> str:
    return f'https://huggingface.co/timm/{model}/resolve/main/model.safetensors'


TIMM = [
    WeightsEntry('timm/darknet53.c2ns_in1k', _hub('darknet53.c2ns_in1k'), 'Darknet',
                 dict(depth=53, act_cfg=dict(type='LeakyReLU', negative_slope=0.01)),
                 'timm:darknet53', '80.54 (timm results-imagenet.csv)', 288),
    WeightsEntry('timm/ese_vovnet39b.ra_in1k', _hub('ese_vovnet39b.ra_in1k'), 'VoVNet',
                 dict(depth=39, stem_stride=4, ese='last'), 'timm:ese_vovnet39b',
                 '79.31 (timm results-imagenet.csv)', 224),
    WeightsEntry('timm/ese_vovnet57b.ra4_e3600_r256_in1k',
                 _hub('ese_vovnet57b.ra4_e3600_r256_in1k'), 'VoVNet',
                 dict(depth=57, stem_stride=4, ese='last'), 'timm:ese_vovnet57b',
                 '82.46 (timm results-imagenet.csv)', 256, HALF_RGB),
]

OPENMMLAB = [
    WeightsEntry('mmdet/darknet53',
                 'https://download.openmmlab.com/pretrain/third_party/darknet53-a628ea1b.pth',
                 'Darknet', dict(depth=53, act_cfg=dict(type='LeakyReLU', negative_slope=0.1)),
                 'mmdet:darknet53', '77.2 (YOLOv3 paper, the original Darknet-53)', 256,
                 DARKNET_RGB),
    WeightsEntry('mmpretrain/resnet50_8xb32_in1k',
                 'https://download.openmmlab.com/mmclassification/v0/resnet/'
                 'resnet50_8xb32_in1k_20210831-ea4938fc.pth',
                 'ResNet', dict(depth=50), 'torchvision:resnet50',
                 '76.55 (MMPretrain metafile)', 224, IMAGENET_RGB_255, default=False),
]

#: torchvision builder -> our (type, kwargs)
TORCHVISION_PORTS: Dict[str, Tuple[str, Dict]] = {
    **{f'resnet{d}': ('ResNet', dict(depth=d)) for d in (18, 34, 50, 101, 152)},
    'resnext50_32x4d': ('ResNeXt', dict(depth=50)),
    'resnext101_32x8d': ('ResNeXt', dict(depth=101)),
    'wide_resnet50_2': ('WideResNet', dict(depth=50)),
    'wide_resnet101_2': ('WideResNet', dict(depth=101)),
    'mobilenet_v2': ('MobileNetV2', dict(widen_factor=1.0)),
    'mobilenet_v3_large': ('MobileNetV3', dict(arch='large')),
    'mobilenet_v3_small': ('MobileNetV3', dict(arch='small')),
    **{f'efficientnet_b{i}': ('EfficientNet', dict(arch=f'b{i}')) for i in range(8)},
}


def _torchvision_input(weights) -> InputFormat:
    """The input of torchvision's own preprocessing for ``weights`` (its
    ``transforms()``: RGB, ToTensor's 0-1, then mean/std)."""
    transform = weights.transforms()
    found = InputFormat('RGB', '0-1', transform.mean, transform.std,
                        source=f"torchvision's {weights}.transforms()")
    return IMAGENET_RGB if found.same_input(IMAGENET_RGB) else found


def _torchvision() -> List[WeightsEntry]:
    import torchvision.models
    entries = []
    for builder, (type_, kwargs) in TORCHVISION_PORTS.items():
        table = torchvision.models.get_model_weights(builder)
        for weights in table:
            keywords = getattr(weights.transforms, 'keywords', {})
            entries.append(WeightsEntry(
                f'torchvision/{weights}', weights.url, type_, dict(kwargs), None,
                f"{weights.meta['_metrics']['ImageNet-1K']['acc@1']} (torchvision "
                f'{weights} metadata)', keywords.get('crop_size', 224),
                _torchvision_input(weights), default=weights == table.DEFAULT))
    return entries


_CATALOG: Dict[str, WeightsEntry] = {}


def catalog() -> Dict[str, WeightsEntry]:
    """Every named file, by name."""
    if not _CATALOG:
        for entry in (*_vovnet_detectron2(), *TIMM, *OPENMMLAB, *_torchvision(), *DETECTORS):
            _CATALOG[entry.name] = entry
    return _CATALOG


def strip_scheme(name: str) -> str:
    return name[len(SCHEME):] if name.startswith(SCHEME) else name


def is_name(source: str) -> bool:
    """Whether ``source`` is a catalog name (with or without the scheme)."""
    return isinstance(source, str) and strip_scheme(source) in catalog()


def lookup(name: str) -> WeightsEntry:
    name = strip_scheme(name)
    if name not in catalog():
        raise CheckpointError(f'no public weights named {name!r}; known: {sorted(catalog())} '
                              f'(tools/convert_weights.py --list)')
    return catalog()[name]


def for_network(choice: str, type_: str, matches) -> WeightsEntry:
    """The entry ``choice`` names for a network: a full name, a source
    (``'vovnet-detectron2'``, ``'timm'``, ``'torchvision'``: its default file for
    this network) or a source's tag (``'IMAGENET1K_V1'``). ``matches(entry)``
    tells whether an entry's network is the model's."""
    choice = strip_scheme(choice)
    if choice in catalog():
        return catalog()[choice]
    backbones = [e for e in catalog().values() if not e.is_detector]
    fitting = [e for e in backbones if e.type == type_ and matches(e)]
    chosen = [e for e in fitting if choice in (e.source, e.tag)
              or e.tag.endswith('.' + choice)]
    if len(chosen) > 1:
        chosen = [e for e in chosen if e.default] or chosen
    if len(chosen) == 1:
        return chosen[0]
    others = [e.name for e in backbones if e.type == type_ and e not in fitting]
    raise CheckpointError(
        f'weights={choice!r}: ' + (
            f'several files fit {[e.name for e in chosen]}; name one' if chosen else
            f'no public file of that name is for this {type_}; files for it: '
            f'{[e.name for e in fitting] or "none"}; for other {type_} networks: {others} '
            f'(each entry names its network: tools/convert_weights.py --list)'))
