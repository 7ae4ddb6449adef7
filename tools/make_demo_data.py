#!/usr/bin/env python
"""Write the embedded demo data sets (from scikit-learn's digits, no download):
data/digits (ImageNet-style classification folders) and data/digits_det (COCO
detection). Idempotent."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    from mmbackbones.datasets import make_digits_classification, make_digits_detection
    cls = make_digits_classification(osp.join(ROOT, 'data', 'digits'))
    det = make_digits_detection(osp.join(ROOT, 'data', 'digits_det'))
    print(f'data/digits: {cls}; data/digits_det: {det}')


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
