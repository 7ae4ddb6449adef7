#!/usr/bin/env python
"""Convert a public ImageNet checkpoint (timm, MMDetection, MMPretrain,
vovnet-detectron2, DD3D) into an mmbackbones release, and print the backbone
config that loads it:

    python tools/convert_weights.py darknet53.pth checkpoints/darknet53_timm.pth
    python tools/convert_weights.py V-39-eSE.pth checkpoints/vovnet39_d2.pth
    python tools/convert_weights.py --list       # public files by name, and layouts
    python tools/convert_weights.py vovnet-detectron2/V-39-eSE checkpoints/v39.pth  # by name

The layout is detected from the keys (``--layout timm:darknet53`` forces one).
The release holds the weights under ``backbone.`` (as a classifier checkpoint
would), is named ``<out stem>-<sha>.pth``, and ``OUT`` becomes a link to it.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def print_list(layouts, entries) -> None:
    """The public files by name (what ``weights=``, ``mmbackbones://<name>`` and
    ``MODEL.MMBACKBONES.PRETRAINED`` take), then the key layouts read from files."""
    print('Public weights by name (weights=NAME, checkpoint=\'mmbackbones://NAME\'):')
    for name, entry in sorted(entries.items()):
        norm = entry.normalization  # the one record of each file's input
        what = (f'      detector: {entry.detector} ({entry.framework}), its backbone: '
                f'{entry.config()}\n      configs: {", ".join(entry.configs)}\n'
                f'      licence: {entry.licence}\n' if entry.is_detector else
                f'      network: {entry.config()}\n')
        print(f'  {name}\n{what}      {entry.published()}\n'
              f'      input: {norm.label}: {norm.describe()} ({norm.source})\n'
              f'      {entry.url}')
    print('\nKey layouts recognised in files (--layout NAME):')
    for name, layout in sorted(layouts.items()):
        print(f'  {name:34s} {layout.type}({layout.kwargs})'
              + (f'; {layout.note}' if layout.note else ''))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', nargs='?', help='the public checkpoint (path or URL)')
    parser.add_argument('out', nargs='?', help='release name, e.g. checkpoints/x.pth')
    parser.add_argument('--layout', help='skip detection: one of --list')
    parser.add_argument('--list', action='store_true',
                        help='print the public files by name and the known layouts')
    args = parser.parse_args(argv)
    from mmbackbones.input_check import entry_for
    from mmbackbones.loader import network_record
    from mmbackbones.publish import write_release
    from mmbackbones import convert_weights
    from mmbackbones.weights import LAYOUTS
    from mmbackbones.weights.catalog import catalog
    if args.list:
        print_list(LAYOUTS, catalog())
        return ''
    if not args.src or not args.out:
        parser.error('give SRC and OUT (or --list)')
    converted = convert_weights(args.src, args.layout)
    model = converted.build()  # every tensor, exactly
    # a named file's input is known; a file's keys do not tell it (DD3D's V2-99 has
    # vovnet-detectron2's keys and was trained with another std)
    named = entry_for(args.src)
    trained_on = named.normalization if named is not None else None
    path = write_release(
        {f'backbone.{k}': v for k, v in converted.state_dict.items()},
        dict(source=osp.basename(args.src), layout=converted.source,
             backbone=network_record(model, converted.kwargs),
             input=trained_on.record() if trained_on else None), args.out)
    print(f'{args.src}: {converted.source} layout, {len(converted.state_dict)} tensors'
          + (f'; set aside {converted.set_aside}' if converted.set_aside else ''))
    if trained_on is not None:
        print(f'trained on {trained_on.describe_pixels()} ({trained_on.label}): the data '
              f'preprocessor must give the same (recorded as meta.input)')
    print(f'wrote {path} ({args.out} links to it). In a config:')
    print(f"  {converted.config()[:-1]},\n"
          f"       init_cfg=dict(type='Pretrained', checkpoint={args.out!r}, "
          f"prefix='backbone.'))")
    return path


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
