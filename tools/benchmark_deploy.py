#!/usr/bin/env python
"""Inference speed of a detector and of its backbone, side by side in one run:
PyTorch eager, ``deploy()`` (BN folded, channels-last), and the exported graph in
ONNX Runtime and OpenVINO, on the same prepared batch of real photos.

    python tools/benchmark_deploy.py configs/detection/retinanet_vovnet39_fpn_1x_coco.py \\
        --shape 512 --batch 1 8

Runs alternate between the backends every repeat (machine noise hits all
alike); reported are the median time per batch (min..max over the repeats),
images/s and the speed-up over eager. The detector runs whole: the test
pipeline's preprocessing is done once beforehand, the post-processing (NMS) is
timed (``predict()`` in PyTorch, inside the graph in the runtimes). Without
``--checkpoint`` the weights come from the config's initialisers (MMDetection's
prior-probability bias in the classifier: few boxes above ``score_thr``, as
with a trained detector; a network of random scores would time the worst case
of the post-processing, every (anchor, class) pair a candidate).

``onnxruntime-int8`` and ``openvino-int8`` run the graph quantized as
``tools/deploy.py --precision int8`` quantizes it (``mmbackbones.export.quantize``),
calibrated on ``--calib`` sample photos prepared like the timed ones: what they
measure is speed, for which any realistic calibration does (the accuracy of an
int8 deployment is ``tools/deploy.py --eval``'s to measure, on the training
set's calibration).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)

BACKENDS = ('eager', 'deploy', 'onnxruntime', 'openvino', 'openvino-bf16', 'onnxruntime-int8',
            'openvino-int8')
DEFAULT_BACKENDS = BACKENDS[:4]  # the ones whose outputs equal eager's (1e-4)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an MMDetection config')
    parser.add_argument('--checkpoint', help='the detector\'s weights (default: random)')
    parser.add_argument('--shape', type=int, default=512,
                        help='resize the photos to fit this square, padded (default 512)')
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--backends', nargs='+', choices=BACKENDS, default=list(DEFAULT_BACKENDS),
                        help='openvino-bf16: OpenVINO computing in bf16 (fast on a CPU with '
                             'AMX; not equal to eager within 1e-4); *-int8: the graph '
                             'quantized to int8 (fast on a CPU with VNNI or AMX)')
    parser.add_argument('--calib', type=int, default=8,
                        help='*-int8: sample photos that calibrate the quantization '
                             '(default 8)')
    parser.add_argument('--part', choices=['detector', 'backbone', 'both'], default='both')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='threads for every backend (default: all cores)')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    return parser.parse_args(argv)


def photo_pipeline(cfg, size: int):
    """The test pipeline, resizing to fit ``size`` x ``size``."""
    from mmbackbones.export.detector import inference_pipeline
    cfg = cfg.copy()
    for loader in ('test_dataloader', 'val_dataloader'):
        if cfg.get(loader):
            for step in cfg[loader].dataset.pipeline:
                if 'Resize' in step['type']:
                    step.update(scale=(size, size), keep_ratio=True)
    return inference_pipeline(cfg)


def photo_batch(detector, cfg, size: int, batch: int, folder: str):
    """``batch`` real photos through the test pipeline, resized to fit
    ``size`` x ``size``: (image, image_shape, samples)."""
    from mmbackbones.datasets.photos import write_sample_photos
    from mmbackbones.export.detector import preprocess
    return preprocess(detector, photo_pipeline(cfg, size), write_sample_photos(folder, batch))


def detector_steps(detector, graph_paths, backends, image, shapes, samples, threads):
    import torch

    from mmbackbones import deploy
    steps = {}
    if 'eager' in backends:
        steps['eager'] = lambda: detector.predict(image, samples)
    if 'deploy' in backends:
        fast = deploy(detector)
        steps['deploy'] = lambda: fast.predict(image, samples)
    feed = dict(image=image.numpy(), image_shape=shapes.numpy())
    for name, session in sessions(graph_paths, backends, threads):
        steps[name] = lambda session=session: session(feed)
    return {name: _no_grad(step, torch) for name, step in steps.items()}


def backbone_steps(backbone, paths, backends, image, threads):
    import torch

    from mmbackbones import deploy
    steps = {}
    if 'eager' in backends:
        steps['eager'] = lambda: backbone(image)
    if 'deploy' in backends:
        fast = deploy(backbone)
        steps['deploy'] = lambda: fast(image)
    for name, session in sessions(paths, backends, threads):
        steps[name] = lambda session=session: session(image.numpy())
    return {name: _no_grad(step, torch) for name, step in steps.items()}


def sessions(paths, backends, threads):
    from mmbackbones.export import Session
    for name in backends:
        if name in ('onnxruntime', 'openvino'):
            yield name, Session(paths[name], name, threads)
        elif name == 'openvino-bf16':
            yield name, Session(paths['openvino'], 'openvino', threads, precision='bf16')
        elif name.endswith('-int8'):
            yield name, Session(paths[name], name[:-len('-int8')], threads)


def _no_grad(step, torch):
    def run():
        with torch.no_grad():
            step()
    return run


def exported(work, name, export, backends, calibration=None):
    """The model exported once as ONNX, as OpenVINO IR where asked, and
    quantized to int8 for each ``*-int8`` backend, calibrated on ``calibration``
    (:class:`~mmbackbones.export.quantize.Inputs`)."""
    from mmbackbones.export.quantize import quantize_onnxruntime, quantize_openvino
    from mmbackbones.export.runtime import to_openvino_ir
    onnx_path = export(osp.join(work, f'{name}.onnx'))
    paths = {'onnxruntime': onnx_path}
    if any(b in ('openvino', 'openvino-bf16') for b in backends):
        paths['openvino'] = to_openvino_ir(onnx_path, osp.join(work, f'{name}.xml'))
    quantizers = {'onnxruntime-int8': (quantize_onnxruntime, '_int8.onnx'),
                  'openvino-int8': (quantize_openvino, '_int8.xml')}
    for backend, (quantize, suffix) in quantizers.items():
        if backend in backends:
            paths[backend] = osp.join(work, name + suffix)
            quantize(onnx_path, paths[backend], calibration)
    return paths


def calibration_inputs(detector, cfg, size: int, count: int, folder: str, part: str):
    """``count`` sample photos, each prepared as the timed batch is, as the
    inputs of the detector's graph or of its backbone's."""
    from mmbackbones.datasets.photos import write_sample_photos
    from mmbackbones.export.detector import preprocess
    from mmbackbones.export.quantize import Inputs
    pipeline = photo_pipeline(cfg, size)

    def feed(photo):
        image, shapes, _ = preprocess(detector, pipeline, [photo])
        return dict(image=image.numpy(), image_shape=shapes.numpy()) if part == 'detector' \
            else dict(image=image.numpy())
    return Inputs(write_sample_photos(folder, count), feed)


def milliseconds(seconds: float) -> str:
    """Whole milliseconds; three significant digits below 100 ms (a tiny run)."""
    ms = seconds * 1e3
    return f'{ms:.0f}' if ms >= 100 else f'{ms:.3g}'


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mmbackbones.benchmark import alternate
    from mmbackbones.export import export_onnx
    from mmbackbones.export.detector import build_detector, export_detector
    torch.set_num_threads(args.threads)
    detector, cfg = build_detector(args.config, args.checkpoint)
    if args.checkpoint is None:
        detector.init_weights()  # no file is read: build_detector dropped the pretrained one
    print('| part | batch | backend | ms / batch (min..max) | images/s | x eager |')
    print('|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as work:
        parts = ['detector', 'backbone'] if args.part == 'both' else [args.part]
        size = (args.shape, args.shape)
        paths = {}
        calibration = {part: calibration_inputs(detector, cfg, args.shape, args.calib,
                                                osp.join(work, 'calibration'), part)
                       if any(b.endswith('-int8') for b in args.backends) else None
                       for part in parts}
        if 'detector' in parts:
            paths['detector'] = exported(work, 'detector', lambda p: export_detector(
                detector, p, size, dynamic=True), args.backends, calibration['detector'])
        if 'backbone' in parts:
            paths['backbone'] = exported(work, 'backbone', lambda p: export_onnx(
                detector.backbone, p, (1, 3, *size), dynamic=True, dynamo=False),
                args.backends, calibration['backbone'])
        for batch in args.batch:
            image, shapes, samples = photo_batch(detector, cfg, args.shape, batch,
                                                 osp.join(work, 'photos'))
            for part in parts:
                steps = (detector_steps(detector, paths[part], args.backends, image, shapes,
                                        samples, args.threads) if part == 'detector' else
                         backbone_steps(detector.backbone.eval(), paths[part], args.backends,
                                        image, args.threads))
                results = alternate(steps, args.repeats, args.iters, args.warmup)
                eager = results['eager'].median if 'eager' in results else None
                for name, result in results.items():
                    times = [t * 1e3 for t in result.step_times]
                    ratio = f'{eager / result.median:.2f}' if eager else '-'
                    print(f'| {part} | {batch} | {name} | {milliseconds(result.median)} '
                          f'({milliseconds(min(times) / 1e3)}..'
                          f'{milliseconds(max(times) / 1e3)}) | '
                          f'{result.throughput(batch):.1f} | {ratio} |', flush=True)
        print(f'\n{args.config}, input {tuple(image.shape[2:])} (photos fit to '
              f'{args.shape} px, padded), {args.threads} threads, median of {args.repeats} '
              f'repeats x {args.iters} batches.')
    return 0


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
