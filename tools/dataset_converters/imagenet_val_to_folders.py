#!/usr/bin/env python
"""Sort ImageNet's validation images into class folders (the layout MMPretrain's
ImageNet dataset reads), from Kaggle's LOC_val_solution.csv:

    python tools/dataset_converters/imagenet_val_to_folders.py \\
        --val_solution_path ImageNet/LOC_val_solution.csv \\
        --val_image_dir ImageNet/ILSVRC/Data/CLS-LOC/val [--dry-run]

Idempotent (a second run moves nothing), never deletes or overwrites an image, and
reports images that are missing or not listed in the CSV.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--val_solution_path', '--val-solution-path', required=True)
    parser.add_argument('--val_image_dir', '--val-image-dir', required=True)
    parser.add_argument('--dry-run', action='store_true', help='report, move nothing')
    args = parser.parse_args(argv)
    from mmbackbones.datasets.imagenet import sort_val_images
    report = sort_val_images(args.val_solution_path, args.val_image_dir, args.dry_run)
    print(report.summary(args.dry_run))
    return 1 if report.missing or report.conflicts else 0


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
