#!/usr/bin/env python
"""Export an MMDetection detector (config + checkpoint) with its post-processing
for ONNX Runtime or OpenVINO, and check it against the PyTorch model.

    python tools/deploy.py configs/detection/retinanet_vovnet39_fpn_1x_coco.py \\
        work_dirs/retinanet/epoch_12.pth --backend onnxruntime
    python tools/deploy.py CONFIG CHECKPOINT --backend openvino --shape 512 512 --static
    python tools/deploy.py CONFIG CHECKPOINT --backend onnxruntime --test-img demo.jpg --eval
    python tools/deploy.py CONFIG CHECKPOINT --backend onnxruntime openvino --eval

Writes ``--work-dir`` (default ``work_dirs/deploy/<config>_<backend>``; with several
backends, one folder for all, ``<config>_onnxruntime+openvino``):
``end2end.onnx`` (+ ``end2end.xml``/``.bin`` for OpenVINO), ``model_config.py`` and
``deploy.json``. The graph takes the batch as the config's ``data_preprocessor``
makes it (``image``) and each image's size before padding (``image_shape``), and
returns ``dets`` (N, max_per_img, 5) and ``labels`` (N, max_per_img), unused rows
with label -1 (``mmbackbones.export.detector_graph``). By default the batch and
the image size are dynamic; ``--static`` fixes them to ``--batch`` x ``--shape``
(smaller images are padded to it, as the ``data_preprocessor`` pads a batch, and
PyTorch is checked on the same padded input; a larger one is an error).

``--test-img`` runs PyTorch and each runtime on the images and compares the
detections; ``--eval`` runs them over the config's test set (PyTorch once, however
many runtimes) and prints each one's metrics; with ``--max-batches N``, over
the images of those N batches only (the COCO evaluation restricted to their ids).
Either exits with status 1 when the detections differ (labels, boxes beyond
1e-3 relative, scores beyond 1e-4).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an MMDetection config (configs/detection/...)')
    parser.add_argument('checkpoint', help='the trained detector (a path, URL or weights name)')
    parser.add_argument('--backend', choices=['onnxruntime', 'openvino'], nargs='+',
                        default=['onnxruntime'],
                        help='the runtime(s): several share one export and one PyTorch run')
    parser.add_argument('--work-dir', help='where the deployment goes')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input height and width to trace (default: the test pipeline\'s '
                             'resize scale, padded); one value for a square')
    parser.add_argument('--static', action='store_true',
                        help='fix the batch and size to --batch x --shape')
    parser.add_argument('--batch', type=int, default=1, help='the batch of a --static file')
    parser.add_argument('--test-img', nargs='+', default=[],
                        help='images to run through both models and compare')
    parser.add_argument('--eval', action='store_true',
                        help='evaluate both models on the config\'s test set')
    parser.add_argument('--max-batches', type=int,
                        help='with --eval: only this many batches, and metrics over their '
                             'images only')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, as in tools/test.py')
    args = parser.parse_args(argv)
    args.backend = list(dict.fromkeys(args.backend))  # each runtime once
    if args.shape and len(args.shape) == 1:
        args.shape = args.shape * 2
    if args.shape and len(args.shape) != 2:
        parser.error(f'--shape takes a height and a width, got {args.shape}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from mmbackbones.engine.launch import apply_data_root
    from mmbackbones.input_check import check_config as check_input_format
    from mmbackbones.export import detector as deploy
    cfg = Config.fromfile(args.config)
    data_root_before = cfg.get('data_root')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_data_root(cfg, data_root_before)  # data_root=... reaches the test set
    check_input_format(cfg, args.checkpoint)  # the graph takes the preprocessor's input
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'deploy',
        f'{osp.splitext(osp.basename(args.config))[0]}_{"+".join(args.backend)}')
    path = deploy.write_deployment(cfg, args.checkpoint, work_dir, args.backend, args.shape,
                                   args.batch, dynamic=not args.static)
    print(f'[deploy] {"+".join(args.backend)}: {path}')
    deployed = {backend: deploy.DeployedDetector(work_dir, backend) for backend in args.backend}
    detector, _ = deploy.build_detector(osp.join(work_dir, deploy.CONFIG_FILE), args.checkpoint)
    status = 0
    for image_path in args.test_img:
        first = deployed[args.backend[0]]
        image, shapes, samples = deploy.preprocess(detector, first.pipeline, [image_path])
        image = first.fit(image, samples)  # a static file's size: PyTorch sees what it sees
        expected = deploy.predict_torch(detector, image, samples)[0]
        for backend, model in deployed.items():
            dets, labels = model.run(image, shapes)
            got = deploy.to_instances(dets[0], labels[0], samples[0])
            problem = deploy.compare_detections(expected, got)
            print(f'[deploy] {backend}: {image_path}: {len(got["scores"])} detections, '
                  + (f'DIFFERENT from PyTorch: {problem}' if problem else 'equal to PyTorch\'s'))
            status = status or int(problem is not None)
    if args.eval:
        result = deploy.evaluate(deployed, detector, cfg, args.max_batches)
        if result['images'] < result['total']:
            print(f'[deploy] metrics over the {result["images"]} of {result["total"]} test '
                  f'images that --max-batches {args.max_batches} ran (the COCO evaluation '
                  f'restricted to their image ids)')
        for side, metrics in [('pytorch', result['pytorch']), *result['runtimes'].items()]:
            shown = {k: round(v, 4) for k, v in metrics.items()
                     if isinstance(v, float) and k.endswith(('mAP', 'mAP_50', 'mAP_75'))}
            print(f'[deploy] {side}: {shown}')
        for backend, differing in result['differing'].items():
            for line in differing[:10]:
                print(f'[deploy] {backend} differs: {line}')
            print(f'[deploy] {backend}: images whose detections differ: {len(differing)}')
            status = status or int(bool(differing))
    return status


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
