#!/usr/bin/env python
"""Parameters, MACs and FLOPs (= 2 x MACs) of a backbone or an OpenMMLab config.

    python tools/get_flops.py VoVNet --args depth=57 slim=False
    python tools/get_flops.py VoVNet-39-V1 --shape 512 640
    python tools/get_flops.py Timm --args model_name=convnext_tiny   # any timm model
    python tools/get_flops.py configs/darknet53_imagenet.py
    python tools/get_flops.py --all            # every variant, as a markdown table

Counts come from MMEngine's complexity analysis (convolutions, linear layers and
matmuls; normalization and elementwise ops are not counted). No dataset is read.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)
from mmengine.config import DictAction  # noqa: E402

from mmbackbones.analysis import format_row, markdown_table, measure  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', nargs='?',
                        help='backbone class or variant name, or a config file (.py)')
    parser.add_argument('--args', nargs='+', default=[],
                        help='backbone arguments as Python literals, e.g. depth=39 slim=True')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, as in tools/train.py')
    parser.add_argument('--shape', type=int, nargs='+', default=[224, 224],
                        help='input height and width (one value for a square)')
    parser.add_argument('--all', action='store_true',
                        help='print the table of every registered variant')
    parser.add_argument('--update-docs', action='store_true',
                        help='with --all: also write the table into docs/backbones.md')
    args = parser.parse_args(argv)
    if not args.all and not args.target:
        parser.error('give a backbone, a variant or a config, or --all')
    if args.update_docs and (not args.all or args.shape != [224, 224]):
        parser.error('--update-docs needs --all at the default shape')
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes 1 or 2 values, got {args.shape}')
    args.shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    return args


def measure_config(path: str, shape, cfg_options):
    """Build the config's model (MMPretrain classifier or MMDetection detector)
    and count one forward in tensor mode."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmbackbones.loader import without_weights
    cfg.model.backbone = without_weights(cfg.model.backbone)  # sizes need no weights
    model = MODELS.build(cfg.model)
    return measure(model, shape, call=tensor_mode_forward)


def tensor_mode_forward(model, x):
    if hasattr(model, 'rpn_head'):  # two-stage detectors need image metas
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(img_shape=x.shape[-2:],
                                             pad_shape=x.shape[-2:], scale_factor=(1, 1)))
        return model(x, [sample], mode='tensor')
    return model(x, mode='tensor')


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmbackbones.api import build_backbone, list_variants, parse_kwargs
    rows, what = [], 'backbone'
    if args.all:
        for variant in list_variants():
            rows.append(format_row(variant, measure(build_backbone(variant), args.shape)))
    elif args.target.endswith('.py'):
        rows.append(format_row(osp.basename(args.target),
                               measure_config(args.target, args.shape, args.cfg_options)))
        what = 'whole model (backbone + neck + head)'
    else:
        model = build_backbone(args.target, **parse_kwargs(args.args))
        label = f'{args.target} ({" ".join(args.args)})' if args.args else args.target
        rows.append(format_row(label, measure(model, args.shape, model.in_channels)))
    print(f'input 1x3x{args.shape[0]}x{args.shape[1]}; MACs = multiply-accumulates, '
          'FLOPs = 2 x MACs (MMEngine complexity analysis)')
    table = markdown_table(rows, what)
    print(table)
    if args.update_docs:
        replace_between_markers(SIZES_PAGE, 'sizes', table)
        print(f'updated {SIZES_PAGE}')


SIZES_PAGE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'docs', 'backbones.md')


def replace_between_markers(path: str, tag: str, text: str) -> None:
    begin, end = f'<!-- {tag}:begin -->', f'<!-- {tag}:end -->'
    with open(path) as f:
        content = f.read()
    if begin not in content or end not in content:
        raise SystemExit(f'{path} lacks the markers {begin} ... {end}')
    head, rest = content.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, 'w') as f:
        f.write(f'{head}{begin}\n{text}\n{end}{tail}')


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
