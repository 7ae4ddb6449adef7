#!/usr/bin/env python
"""Train or evaluate a Detectron2 model with an mmbackbones backbone, with
Detectron2's usual command line (yacs ``.yaml`` or LazyConfig ``.py`` files):

    python tools/train_detectron2.py --config-file configs/detectron2/retinanet_vovnet19slim_digits.yaml
    python tools/train_detectron2.py --config-file configs/detectron2/faster_rcnn_vovnet39_fpn_1x.yaml \\
        --num-gpus 8 MODEL.MMBACKBONES.PRETRAINED checkpoints/vovnet39_imagenet.pth
    python tools/train_detectron2.py --config-file CONFIG --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_detectron2.py --config-file configs/detectron2/lazy/retinanet_vovnet39_fpn.py \\
        train.device=cpu

The embedded demo set is registered as ``digits_det_train`` / ``digits_det_val``
(made under data/digits_det on first use); a COCO-format set of yours with
``--register-coco NAME ANN_FILE IMAGE_DIR`` (repeatable), for ``DATASETS.TRAIN``
and ``DATASETS.TEST``. Needs Detectron2 (built from source).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def main(argv=None):
    try:
        from mmbackbones.adapters import detectron2  # noqa: F401
    except ImportError as err:  # Detectron2 is not on PyPI: say how to get it
        sys.exit(f'train_detectron2.py: {err}')
    from detectron2.engine import default_argument_parser, launch

    from mmbackbones.adapters.detectron2_engine import main as run
    parser = default_argument_parser()
    parser.add_argument('--register-coco', nargs=3, action='append', default=[],
                        metavar=('NAME', 'ANN_FILE', 'IMAGE_DIR'),
                        help='register a COCO-format set as NAME (for DATASETS.TRAIN/TEST)')
    args = parser.parse_args(argv)
    return launch(run, args.num_gpus, num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args, ))


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
