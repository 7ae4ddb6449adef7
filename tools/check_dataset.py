#!/usr/bin/env python
"""Decode every image of a dataset before a long run does, in parallel:

    python tools/check_dataset.py data/imagenet/train --workers 8
    python tools/check_dataset.py configs/vovnet39_imagenet.py      # its train/val/test sets

For a COCO set (a config's, or a folder with --ann) the images the annotation file
lists are checked, so one it lists that is not on the disk is reported (missing).
Reports unreadable images (missing, empty, not an image, truncated) and warnings (CMYK,
grayscale, PNG named .jpg, smaller than --min-size); writes ``unreadable.txt`` and
a file the dataset config can use instead (``readable_ann.txt`` as MMPretrain's
``ann_file`` for class folders, ``<ann>.readable.json`` for COCO) to a folder of
its own under --out (``<parent>_<folder>`` for a folder, ``<config>/<split>`` for a
config); exits with status 1 when an image is unreadable.
"""
import argparse
import os.path as osp
import sys
from typing import Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def dataset_sets(target: str, ann: Optional[str] = None):
    """``[(name, image folder, COCO annotation file or None)]`` of a folder (with
    ``ann``, its COCO annotation file) or a config. The name is where its report
    goes under ``--out``, one per data set: ``<parent>_<folder>``
    (``imagenet_train``) or ``<config>/<split>``."""
    if not target.endswith('.py'):
        folder = osp.abspath(target)
        return [(f'{osp.basename(osp.dirname(folder))}_{osp.basename(folder)}', target, ann)]
    if ann:
        raise ValueError(f'--ann {ann} is for an image folder; {target} is a config, whose '
                         f'sets name their annotation files themselves')
    from mmengine.config import Config

    from mmbackbones.engine.launch import dataset_sets as config_sets
    stem = osp.splitext(osp.basename(target))[0]
    return [(f"{stem}/{loader.split('_')[0]}", folder,
             ann if ann and ann.endswith('.json') else None)
            for loader, folder, ann in config_sets(Config.fromfile(target))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', help='an image folder or a config file')
    parser.add_argument('--workers', type=int, default=4, help='decoding processes')
    parser.add_argument('--min-size', type=int, default=32,
                        help='report images with a side shorter than this')
    parser.add_argument('--out', default='work_dirs/check_dataset',
                        help='where the exclusion files go')
    parser.add_argument('--ann', help='for an image folder: its COCO annotation file; the '
                        'images it lists are checked')
    args = parser.parse_args(argv)
    from mmbackbones.datasets.check import (Report, check_images, coco_images, find_images,
                                            write_exclusions)
    status = 0
    for name, folder, coco_ann in dataset_sets(args.target, args.ann):
        missing = [p for p, exists in ((folder, osp.isdir), (coco_ann, osp.isfile))
                   if p and not exists(p)]
        if missing:
            print(f'check_dataset.py: error: [{name}] {missing[0]}: no such '
                  f'{"folder" if missing[0] == folder else "file"}', file=sys.stderr)
            status = 1
            continue
        print(f'[{name}] {folder}' + (f' (the images {coco_ann} lists)' if coco_ann else ''),
              flush=True)
        on_disk = find_images(folder)
        # a COCO set reads the images its annotation file lists, not the folder's files
        paths = coco_images(coco_ann, folder) if coco_ann else on_disk
        report = Report(check_images(paths, args.workers, args.min_size))
        print('\n' + report.summary())
        unlisted = len({osp.normpath(p) for p in on_disk} - {osp.normpath(p) for p in paths})
        if unlisted:
            print(f'  {unlisted} image files in {folder} are not listed in {coco_ann} '
                  f'(not used, not checked)')
        written = write_exclusions(report, osp.join(args.out, name), folder, coco_ann)
        print(f'  wrote {", ".join(written)}')
        status = status or int(bool(report.unreadable))
    return status


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
