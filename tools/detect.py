#!/usr/bin/env python
"""Run a detector on photos and draw what it finds.

    python tools/detect.py IMAGE_OR_FOLDER... --model CONFIG --weights CHECKPOINT --out DIR
    python tools/detect.py IMAGE_OR_FOLDER... --deployment DEPLOY_DIR --out DIR

``--model`` is an MMDetection config (``configs/detection/*.py``, ``configs/demo/*.py``)
and ``--weights`` the trained detector (a path, URL or weights name), loaded strictly;
``--deployment`` runs a ``tools/deploy.py`` folder in its runtime instead of PyTorch
(the folder holds its config). For each image, ``DIR/<name>.png`` shows the
detections scoring at least ``--score-thr`` (boxes, class names, scores), and
``DIR/detections.json`` lists them: per image its file, width, height and
detections (``bbox`` [x1, y1, x2, y2] in the image's pixels, ``score``, ``label``,
``class``).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files or folders of images')
    parser.add_argument('--model', help='an MMDetection config (configs/detection/..., '
                                        'configs/demo/...)')
    parser.add_argument('--weights', help='the trained detector for --model (a path, URL or '
                                          'weights name)')
    parser.add_argument('--deployment', help='a tools/deploy.py folder to run instead of '
                                             'PyTorch (it holds its config)')
    parser.add_argument('--out', required=True, help='where the PNGs and detections.json go')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw and list detections scoring at least this (default 0.3)')
    parser.add_argument('--device', default='cpu', help='PyTorch device (default cpu)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmbackbones import detect
    detect.check_score_thr(args.score_thr)
    if args.deployment:
        if args.weights or args.model:
            raise ValueError('--deployment runs the weights and config it was exported with: '
                             'give --deployment alone, or --model and --weights')
        if args.device != 'cpu':
            raise ValueError(f'--device {args.device}: a deployment runs on the CPU '
                             f'(ONNX Runtime or OpenVINO)')
    elif not args.model:
        raise ValueError('give --model CONFIG (with --weights) or --deployment DIR')
    images = detect.find_images(args.images)
    if args.deployment:
        run, classes = detect.deployed_detector(args.deployment)
        about = dict(deployment=args.deployment)
    else:
        choice = detect.resolve_model(args.model)
        weights = args.weights or choice.weights
        if weights is None:
            raise ValueError(f'--model {args.model}: give --weights, the trained detector '
                             f'(a config alone has random weights)')
        from mmbackbones.weights.catalog import is_name
        if '://' not in weights and not is_name(weights) and not osp.isfile(weights):
            raise FileNotFoundError(f'--weights {weights}: no such file')
        run, classes = detect.pytorch_detector(choice.config, weights, args.device)
        about = dict(model=choice.config, weights=weights)
    detect.detect(images, run, classes, args.out, args.score_thr, about)
    return 0


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
