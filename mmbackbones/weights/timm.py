"""timm's layouts (``timm.create_model(name)``): Darknet-53 and VoVNet V1/V2.

timm's VoVNets end the stem at stride 4 and pool stages 3-5 with ceil-mode max
pools (our ``stem_stride=4``); its ``ese_vovnet*b`` apply eSE only in the last
OSA module of each stage (``ese='last'``). timm's ``cspdarknet53`` is another
network than ours (26.62 M vs 26.24 M backbone parameters) and is not here.
"""
from .layout import UNIT, Layout, renamed, rules

HEAD = (r'head\..*', r'fc\..*')
LEAKY_001 = dict(type='LeakyReLU', negative_slope=0.01)

DARKNET_RULES = rules(
    (rf'stem\.conv1\.{UNIT}', renamed('stem.0.{unit}')),
    (rf'stages\.0\.conv_down\.{UNIT}', renamed('stem.1.{unit}')),
    (rf'stages\.0\.blocks\.(?P<b>\d+)\.(?P<c>conv[12])\.{UNIT}',
     renamed('stem.{b}.{c}.{unit}', b=2)),
    (rf'stages\.(?P<s>\d+)\.conv_down\.{UNIT}', renamed('stage{s}.0.{unit}', s=1)),
    (rf'stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.(?P<c>conv[12])\.{UNIT}',
     renamed('stage{s}.{b}.{c}.{unit}', s=1, b=1)),
)

VOVNET_RULES = rules(
    (rf'stem\.(?P<i>[01])\.{UNIT}', renamed('stem.{i}.{unit}')),
    (rf'stem\.2\.{UNIT}', renamed('stage2.0.{unit}')),
    (rf'stages\.(?P<s>\d+)\.blocks\.(?P<m>\d+)\.conv_mid\.(?P<l>\d+)\.{UNIT}',
     renamed('stage{s}.{m}.layers.{l}.{unit}', s=2, m=1)),
    (rf'stages\.(?P<s>\d+)\.blocks\.(?P<m>\d+)\.conv_concat\.{UNIT}',
     renamed('stage{s}.{m}.concat_conv.{unit}', s=2, m=1)),
    (r'stages\.(?P<s>\d+)\.blocks\.(?P<m>\d+)\.attn\.fc\.(?P<p>weight|bias)',
     renamed('stage{s}.{m}.ese.fc.{p}', s=2, m=1)),
)

LAYOUTS = (
    Layout('timm:darknet53', 'Darknet', dict(depth=53, act_cfg=LEAKY_001), DARKNET_RULES,
           HEAD, top1='80.54 at 288 px (darknet53.c2ns_in1k, timm results-imagenet.csv)'),
    Layout('timm:vovnet39a', 'VoVNet', dict(depth=39, stem_stride=4, residual=False,
                                            ese=False), VOVNET_RULES, HEAD,
           top1='no weights published by timm'),
    Layout('timm:vovnet57a', 'VoVNet', dict(depth=57, stem_stride=4, residual=False,
                                            ese=False), VOVNET_RULES, HEAD,
           top1='no weights published by timm'),
    Layout('timm:ese_vovnet39b', 'VoVNet', dict(depth=39, stem_stride=4, ese='last'),
           VOVNET_RULES, HEAD, top1='79.31 at 224 px (ese_vovnet39b.ra_in1k, timm results-imagenet.csv)'),
    Layout('timm:ese_vovnet57b', 'VoVNet', dict(depth=57, stem_stride=4, ese='last'),
           VOVNET_RULES, HEAD, top1='82.46 at 256 px (ese_vovnet57b.ra4_e3600_r256_in1k, timm results-imagenet.csv)'),
)
