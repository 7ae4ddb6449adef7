#!/usr/bin/env python
"""Plot training curves (loss, lr, top-1/top-5, bbox mAP) from MMEngine's scalar
logs, several runs on one figure:

    python tools/plot_curves.py work_dirs/demo/pretrain      # -> work_dirs/demo/pretrain/curves.png
    python tools/plot_curves.py work_dirs/a work_dirs/b --keys coco/bbox_mAP --labels a b

For TensorBoard instead, add ``vis_backends = [dict(type='LocalVisBackend'),
dict(type='TensorboardVisBackend')]`` (and ``visualizer.vis_backends``) to a config.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+', help='work dirs of MMEngine runs')
    parser.add_argument('--keys', nargs='+', help='scalars to plot (default: the usual ones '
                        'that are logged)')
    parser.add_argument('--labels', nargs='+', help='legend names, one per work dir')
    parser.add_argument('--out', help='the figure to write (default: curves.png in the first '
                        'work dir, beside its logs)')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error('give one --labels entry per work dir')
    args.out = args.out or osp.join(args.work_dirs[0], 'curves.png')
    from mmbackbones.engine.curves import plot_runs
    keys = plot_runs(args.work_dirs, args.keys, args.out, args.labels)
    print(f'wrote {args.out} ({", ".join(keys)})')
    return args.out


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
