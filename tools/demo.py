#!/usr/bin/env python
"""The main job, on embedded demo data (no download): make the data, pretrain a
backbone with the recipe, evaluate it, publish the checkpoint, fine-tune a
detector from it and, with the same budget, from a random backbone, and print
both COCO mAPs and where everything went.

    python tools/demo.py            # (make demo)
"""
import argparse
import glob
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)

CLS_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py')
DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
TARGET_TOP1 = 95.0


def train_and_test(config: str, work_dir: str, *train_args: str):
    """Train ``config`` with tools/train.py, evaluate its last checkpoint with
    tools/test.py; returns (checkpoint, metrics, minutes)."""
    import test as test_tool
    import train as train_tool
    start = time.time()
    train_tool.main([config, '--work-dir', work_dir, *train_args])
    last = max(glob.glob(osp.join(work_dir, 'epoch_*.pth')), key=osp.getmtime)
    metrics = test_tool.main([config, last, '--work-dir', work_dir])
    return last, metrics, (time.time() - start) / 60


def pretrain(work_dir: str) -> dict:
    from mmbackbones.datasets import make_digits_classification
    from mmbackbones.publish import publish_checkpoint
    counts = make_digits_classification(osp.join(ROOT, 'data', 'digits'))
    print(f'[demo] classification data: data/digits ({counts["train"]} train, '
          f'{counts["val"]} val images)', flush=True)
    last, metrics, minutes = train_and_test(CLS_CONFIG, work_dir)
    release = publish_checkpoint(last, osp.join(ROOT, 'work_dirs', 'releases',
                                                'vovnet19slim_digits.pth'))
    return dict(checkpoint=last, release=release, top1=metrics['accuracy/top1'],
                top5=metrics['accuracy/top5'], minutes=minutes)


def finetune(work_dir: str, pretrained) -> dict:
    """Train the demo detector from ``pretrained`` (None: random backbone), test it."""
    from mmbackbones.datasets import make_digits_detection
    make_digits_detection(osp.join(ROOT, 'data', 'digits_det'))
    init = (f'model.backbone.init_cfg.checkpoint={pretrained}' if pretrained
            else 'model.backbone.init_cfg=None')
    last, metrics, minutes = train_and_test(DET_CONFIG, work_dir, '--cfg-options', init)
    # CocoMetric reports nothing when the detector finds nothing: that is mAP 0
    return dict(checkpoint=last, mAP=metrics.get('coco/bbox_mAP', 0.0),
                mAP50=metrics.get('coco/bbox_mAP_50', 0.0), minutes=minutes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # configs name data/ relative to the repository
    cls = pretrain(osp.join(args.work_dir, 'pretrain'))
    det = {name: finetune(osp.join(args.work_dir, f'detection_{name}'), weights)
           for name, weights in (('pretrained', cls['release']), ('random', None))}
    ok = cls['top1'] >= TARGET_TOP1
    print('\n[demo] ---------------------------------------------------------------')
    print(f'[demo] pretraining  VoVNet-19-slim on digits, {cls["minutes"]:.1f} min: '
          f'top-1 {cls["top1"]:.2f} %, top-5 {cls["top5"]:.2f} % '
          f'(target >= {TARGET_TOP1:.0f} %: {"met" if ok else "MISSED"})')
    print(f'[demo] logs and checkpoints: {osp.join(args.work_dir, "pretrain")}')
    print(f'[demo] training checkpoint:  {cls["checkpoint"]}')
    print(f'[demo] published weights:    {cls["release"]}')
    for name, result in det.items():
        print(f'[demo] RetinaNet, {name:>10} backbone, {result["minutes"]:.1f} min: COCO bbox '
              f'mAP {result["mAP"]:.3f}, mAP@0.5 {result["mAP50"]:.3f}  ({result["checkpoint"]})')
    gain = det['pretrained']['mAP'] - det['random']['mAP']
    print(f'[demo] pretraining gain: {gain:+.3f} mAP')
    from mmbackbones.engine.curves import plot_runs
    plots = {'pretraining': ([osp.join(args.work_dir, 'pretrain')], None, None),
             'detection': ([osp.join(args.work_dir, f'detection_{n}') for n in det],
                           ['loss', 'lr', 'coco/bbox_mAP'], [f'{n} backbone' for n in det])}
    for name, (dirs, keys, labels) in plots.items():
        out = osp.join(args.work_dir, f'{name}_curves.png')
        plot_runs(dirs, keys, out, labels)
        print(f'[demo] {name} curves:  {out}')
    return 0 if ok and gain > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
