"""vovnet-detectron2 (youngwanLEE) ImageNet files ``V-19-eSE`` .. ``V-99-eSE``,
and DD3D's depth-pretrained ``V2-99`` (the same layout, keys under
``backbone.bottom_up.`` or ``img_backbone.``).

Their VoVNetV2: stem ends at stride 4 (our ``stem_stride=4``), eSE in every OSA
module, residual in every module after a stage's first. Detectron2's FrozenBN
has no ``num_batches_tracked``: the converter fills it. ``V-19-slim-eSE`` has a
112-channel stage 2 (ours: 128) and is not here.
"""
from .layout import Layout, renamed, rules

_PARAM = r'(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)'
_UNIT = rf'(?P<kind>conv|norm)\.{_PARAM}'


def _unit(template: str, **offsets: int):
    return renamed(template.replace('{unit}', '{kind}.{p}'), **offsets)


RULES = rules(
    (rf'stem\.stem_(?P<i>[12])/{_UNIT}', _unit('stem.{i}.{unit}', i=-1)),
    (rf'stem\.stem_3/{_UNIT}', _unit('stage2.0.{unit}')),
    (rf'stage(?P<s>[2-5])\.OSA(?P=s)_(?P<m>\d+)\.layers\.(?P<l>\d+)\.OSA(?P=s)_(?P=m)_(?P=l)/'
     rf'{_UNIT}', _unit('stage{s}.{m}.layers.{l}.{unit}')),
    (rf'stage(?P<s>[2-5])\.OSA(?P=s)_(?P<m>\d+)\.concat\.OSA(?P=s)_(?P=m)_concat/{_UNIT}',
     _unit('stage{s}.{m}.concat_conv.{unit}')),
    (r'stage(?P<s>[2-5])\.OSA(?P=s)_(?P<m>\d+)\.ese\.fc\.(?P<p>weight|bias)',
     renamed('stage{s}.{m}.ese.fc.{p}')),
)

LAYOUTS = tuple(
    Layout(f'vovnet-detectron2:V-{d}-eSE', 'VoVNet', dict(depth=d, stem_stride=4), RULES,
           top1='not published by vovnet-detectron2 (ImageNet backbone files only)',
           note="DD3D's V2-99 too" if d == 99 else '')
    for d in (19, 39, 57, 99)
)
