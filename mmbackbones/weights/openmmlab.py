"""MMDetection's Darknet-53 (``open-mmlab://darknet53``), and torchvision's ResNet
keys, which MMPretrain's ResNets share (under ``backbone.``)."""
from .layout import UNIT, Layout, renamed, rules

LEAKY_01 = dict(type='LeakyReLU', negative_slope=0.1)

DARKNET_RULES = rules(
    (rf'conv1\.{UNIT}', renamed('stem.0.{unit}')),
    (rf'conv_res_block1\.conv\.{UNIT}', renamed('stem.1.{unit}')),
    (rf'conv_res_block1\.res(?P<b>\d+)\.(?P<c>conv[12])\.{UNIT}',
     renamed('stem.{b}.{c}.{unit}', b=2)),
    (rf'conv_res_block(?P<s>[2-5])\.conv\.{UNIT}', renamed('stage{s}.0.{unit}')),
    (rf'conv_res_block(?P<s>[2-5])\.res(?P<b>\d+)\.(?P<c>conv[12])\.{UNIT}',
     renamed('stage{s}.{b}.{c}.{unit}', b=1)),
)

#: torchvision's ResNet keys, which MMPretrain's ResNet (style 'pytorch') shares;
#: our stage 2 opens with the stem's max pool, so layer1's blocks move up by one
_BN = r'(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)'
#: torchvision's published top-1 (``ResNet*_Weights.IMAGENET1K_V1.meta``)
TOP1 = {18: '69.76', 34: '73.31', 50: '76.13', 101: '77.37', 152: '78.31'}
RESNET_RULES = rules(
    (r'conv1\.weight', 'stem.0.weight'),
    (rf'bn1\.{_BN}', renamed('stem.1.{p}')),
    (r'layer1\.(?P<b>\d+)\.(?P<rest>.+)', renamed('stage2.{b}.{rest}', b=1)),
    (r'layer(?P<s>[2-4])\.(?P<b>\d+)\.(?P<rest>.+)', renamed('stage{s}.{b}.{rest}', s=1)),
)


LAYOUTS = (
    Layout('mmdet:darknet53', 'Darknet', dict(depth=53, act_cfg=LEAKY_01), DARKNET_RULES,
           top1='77.2 at 256 px (the original Darknet-53, YOLOv3 paper; MMDetection '
                'converted its weights and publishes no figure of its own)'),
) + tuple(
    Layout(f'torchvision:resnet{d}', 'ResNet', dict(depth=d), RESNET_RULES,
           (r'fc\..*', r'head\..*'),
           top1=f'{TOP1[d]} at 224 px (torchvision IMAGENET1K_V1 weights metadata)',
           note="also MMPretrain's ResNets (the same keys under 'backbone.'): ResNet-50 "
                "resnet50_8xb32_in1k 76.55 (its metafile)")
    for d in (18, 34, 50, 101, 152)
)
