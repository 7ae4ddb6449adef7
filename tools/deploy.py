#!/usr/bin/env python
"""Export an MMDetection detector (config + checkpoint) with its post-processing
for ONNX Runtime or OpenVINO, and check it against the PyTorch model.

    python tools/deploy.py configs/detection/retinanet_vovnet39_fpn_1x_coco.py \\
        work_dirs/retinanet/epoch_12.pth --backend onnxruntime
    python tools/deploy.py CONFIG CHECKPOINT --backend openvino --shape 512 512 --static
    python tools/deploy.py CONFIG CHECKPOINT --backend onnxruntime --test-img demo.jpg --eval
    python tools/deploy.py CONFIG CHECKPOINT --backend onnxruntime openvino --eval

Writes ``--work-dir`` (default ``work_dirs/deploy/<config>_<backend>``; with several
backends, one folder for all, ``<config>_onnxruntime+openvino``; ``_int8`` or ``_bf16``
appended for those precisions):
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
1e-3 relative, scores beyond 1e-4), or when no image had detections to compare
(an untrained detector would pass any comparison); images without detections on
either side are counted apart.

``--precision int8`` quantizes the exported graph after training, calibrated on
``--calib`` images of the config's training set: OpenVINO through NNCF (with
accuracy control on the config's validation set when it has one, keeping the
mAP within ``--max-drop`` percent of the fp32 model's), ONNX Runtime through
its static QDQ quantization. ``--precision bf16`` runs OpenVINO in bf16 (the
same files). Such a deployment is judged by accuracy, not equality: ``--eval``
prints PyTorch's and its mAP side by side and how its detections agree with
PyTorch's (matched boxes' IoU, score differences), records them in the folder's
``deploy.json`` and exits with status 1 when the mAP drops by more than
``--max-drop`` percent (relative).

    python tools/deploy.py CONFIG CHECKPOINT --backend openvino --precision int8 --eval
"""
import argparse
import os.path as osp
import sys
from typing import List

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    from mmbackbones.export.quantize import DEFAULT_CALIB, DEFAULT_MAX_DROP, PRECISIONS
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
                             'images only; with --precision int8, also the validation '
                             'batches of OpenVINO\'s accuracy control')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp32 (default), bf16 (OpenVINO) or int8 (quantized after '
                             'training, calibrated on the training set)')
    parser.add_argument('--calib', type=int, default=DEFAULT_CALIB,
                        help=f'int8: how many images of the config\'s training set calibrate '
                             f'it (default {DEFAULT_CALIB}; all of them when it has fewer)')
    parser.add_argument('--max-drop', type=float, default=DEFAULT_MAX_DROP * 100,
                        help='bf16/int8: the mAP the deployment may lose, in percent of the '
                             'fp32 model\'s (relative; default %(default)g): OpenVINO\'s int8 '
                             'accuracy control keeps to it, and --eval fails beyond it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, as in tools/test.py')
    args = parser.parse_args(argv)
    if args.max_drop < 0:
        parser.error(f'--max-drop {args.max_drop:g}: a percentage of the mAP, 0 or more')
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
    precision = '' if args.precision == 'fp32' else f'_{args.precision}'  # beside fp32's
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'deploy',
        f'{osp.splitext(osp.basename(args.config))[0]}_{"+".join(args.backend)}{precision}')
    path = deploy.write_deployment(cfg, args.checkpoint, work_dir, args.backend, args.shape,
                                   args.batch, dynamic=not args.static,
                                   precision=args.precision, calib=args.calib,
                                   max_drop=args.max_drop / 100, max_batches=args.max_batches)
    print(f'[deploy] {"+".join(args.backend)} {args.precision}: {path}')
    deployed = {backend: deploy.DeployedDetector(work_dir, backend) for backend in args.backend}
    detector, _ = deploy.build_detector(osp.join(work_dir, deploy.CONFIG_FILE), args.checkpoint)
    # fp32 must compute what PyTorch computes; lower precisions are judged by accuracy
    exact = args.precision == 'fp32'
    status = check_images(args.test_img, deployed, detector, exact) if args.test_img else 0
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
        if exact:
            status = max(status, report_equality(result))
        else:
            status = max(status, report_accuracy(result, args.precision, args.max_drop))
            record_accuracy(work_dir, result, args.max_drop)
    return status


def check_images(paths: List[str], deployed: dict, detector, exact: bool) -> int:
    """--test-img: PyTorch and each runtime on each image, compared (fp32) or
    matched (bf16, int8). 1 when detections differ, or none were compared."""
    from mmbackbones.export import detector as deploy
    status, compared = 0, 0
    for image_path in paths:
        first = next(iter(deployed.values()))
        image, shapes, samples = deploy.preprocess(detector, first.pipeline, [image_path])
        image = first.fit(image, samples)  # a static file's size: PyTorch sees what it sees
        expected = deploy.predict_torch(detector, image, samples)[0]
        for backend, model in deployed.items():
            dets, labels = model.run(image, shapes)
            got = deploy.to_instances(dets[0], labels[0], samples[0])
            problem = deploy.compare_detections(expected, got)
            head = f'[deploy] {backend}: {image_path}: {len(got["scores"])} detections, '
            if problem == deploy.NOTHING_COMPARED:
                print(head + 'none in PyTorch either (not compared)')
            elif exact:
                compared += 1
                print(head + (f'DIFFERENT from PyTorch: {problem}' if problem
                              else 'equal to PyTorch\'s'))
                status = status or int(problem is not None)
            else:
                compared += 1
                agreement = deploy.Agreement()
                agreement.add(expected, got)
                print(head + f'PyTorch {len(expected["scores"])}; {describe(agreement.summary())}')
    if not compared:
        print('[deploy] nothing was compared: no image had detections, in PyTorch or the '
              'runtimes (an untrained detector?); give images with objects it detects')
        return 1
    return status


def report_equality(result: dict) -> int:
    """An fp32 deployment's --eval: 1 when any image's detections differ from
    PyTorch's, or no image had any to compare."""
    status = 0
    for backend, differing in result['differing'].items():
        for line in differing[:10]:
            print(f'[deploy] {backend} differs: {line}')
        print(f'[deploy] {backend}: images compared: {result["compared"][backend]} with '
              f'detections, {result["empty"][backend]} without')
        print(f'[deploy] {backend}: images whose detections differ: {len(differing)}')
        if not result['compared'][backend]:
            print(f'[deploy] {backend}: nothing was compared: no image had detections, in '
                  f'PyTorch or {backend} (an untrained detector?)')
        status = status or int(bool(differing) or not result['compared'][backend])
    return status


def report_accuracy(result: dict, precision: str, max_drop: float) -> int:
    """A bf16/int8 deployment's --eval: the mAP side by side with PyTorch's, how
    its detections agree with PyTorch's; 1 when the mAP drops by more than
    ``max_drop`` percent (relative)."""
    from mmbackbones.export.detector import main_metric
    from mmbackbones.export.quantize import relative_drop
    key, reference = main_metric(result['pytorch'])
    status = 0
    for backend, metrics in result['runtimes'].items():
        value = main_metric(metrics)[1]
        drop = relative_drop(reference, value) * 100
        kept = drop <= max_drop
        print(f'[deploy] {key}: pytorch {reference:.4f}, {backend} {precision} {value:.4f}: '
              f'{"drop" if drop >= 0 else "gain"} {abs(drop):.2f} % '
              f'({"within" if kept else "MORE than"} --max-drop {max_drop:g} %)')
        print(f'[deploy] {backend} {precision} vs pytorch: '
              f'{describe(result["agreement"][backend])}')
        status = status or int(not kept)
    return status


def describe(agreement: dict) -> str:
    """One line for an :class:`~mmbackbones.export.detector.Agreement` summary."""
    if not agreement['matched']:
        return (f'no detection matched (of {agreement["expected"]} expected, '
                f'{agreement["got"]} found)')
    return (f'matched {agreement["matched"]} of {agreement["expected"]} detections '
            f'({100 * agreement["matched_fraction"]:.1f} %; same label, IoU >= '
            f'{agreement["iou_threshold"]:g}; {agreement["got"]} found), IoU mean '
            f'{agreement["iou_mean"]:.3f} min {agreement["iou_min"]:.3f}, score difference '
            f'mean {agreement["score_diff_mean"]:.4f} max {agreement["score_diff_max"]:.4f}')


def record_accuracy(work_dir: str, result: dict, max_drop: float) -> None:
    """The measured accuracy into the folder's deploy.json, beside its precision
    and calibration images."""
    import json

    from mmbackbones.export import detector as deploy
    path = osp.join(work_dir, deploy.META_FILE)
    with open(path) as f:
        meta = json.load(f)
    key, reference = deploy.main_metric(result['pytorch'])
    meta['accuracy'] = dict(
        metric=key, images=result['images'], test_images=result['total'],
        max_drop_percent=max_drop, pytorch=reference,
        runtimes={backend: deploy.main_metric(metrics)[1]
                  for backend, metrics in result['runtimes'].items()},
        agreement=result['agreement'])
    deploy.write_meta(work_dir, meta)


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
