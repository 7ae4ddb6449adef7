#!/usr/bin/env python
"""The main job, on embedded demo data (no download): make the data, pretrain a
backbone with the recipe, evaluate it, publish the checkpoint, then fine-tune a
detector from it and, with the same budget, from a random backbone, several times
each (seeds 0..K-1), and print the mean and spread of both COCO mAPs, the gain
and whether it holds against the run-to-run spread, and where everything went.

    python tools/demo.py            # (make demo)
    python tools/demo.py --seeds 5  # more detection runs per initialisation
"""
import argparse
import glob
import os
import os.path as osp
import statistics
import sys
import time
from typing import List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)

CLS_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py')
DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
TARGET_TOP1 = 95.0


def train_and_test(config: str, work_dir: str, fp32: bool, options: Sequence[str] = ()):
    """Train ``config`` (with ``--cfg-options``) by tools/train.py, evaluate its
    last checkpoint by tools/test.py; returns (checkpoint, metrics, minutes)."""
    import test as test_tool
    import train as train_tool
    start = time.time()
    precision = ['--fp32'] if fp32 else []
    options = ['--cfg-options', *options] if options else []
    train_tool.main([config, '--work-dir', work_dir, *precision, *options])
    last = max(glob.glob(osp.join(work_dir, 'epoch_*.pth')), key=osp.getmtime)
    metrics = test_tool.main([config, last, '--work-dir', work_dir, *precision])
    return last, metrics, (time.time() - start) / 60


def schedule(epochs: int, warmup: int) -> List[str]:
    """``--cfg-options`` that shorten a demo config to ``epochs``: its second
    scheduler is the cosine decay after ``warmup`` epochs; validation and the
    checkpoint at the end."""
    return [f'train_cfg.max_epochs={epochs}',
            f'param_scheduler.1.end={epochs}', f'param_scheduler.1.T_max={epochs - warmup}',
            f'default_hooks.checkpoint.interval={epochs}',
            f'train_cfg.val_interval={epochs if warmup else 1}']


def spread_verdict(pretrained: Sequence[float], random: Sequence[float]) -> dict:
    """Mean and sample standard deviation of each group; the gain (difference of
    means) holds when it exceeds the run-to-run spread (the larger standard
    deviation) and every pretrained run beats every random one."""
    stats = {}
    for name, values in (('pretrained', pretrained), ('random', random)):
        if len(values) < 2:
            raise ValueError(f'a spread needs at least 2 runs per group, got {len(values)}')
        stats[name] = dict(mean=statistics.mean(values), std=statistics.stdev(values),
                           min=min(values), max=max(values))
    gain = stats['pretrained']['mean'] - stats['random']['mean']
    spread = max(stats['pretrained']['std'], stats['random']['std'])
    holds = gain > spread and stats['pretrained']['min'] > stats['random']['max']
    return dict(stats, gain=gain, spread=spread, holds=holds)


def pretrain(work_dir: str, release: str, fp32: bool, options: Sequence[str] = ()) -> dict:
    from mmbackbones.datasets import make_digits_classification
    from mmbackbones.publish import publish_checkpoint
    counts = make_digits_classification(osp.join(ROOT, 'data', 'digits'))
    print(f'[demo] classification data: data/digits ({counts["train"]} train, '
          f'{counts["val"]} val images)', flush=True)
    last, metrics, minutes = train_and_test(CLS_CONFIG, work_dir, fp32, options)
    release = publish_checkpoint(last, release)
    return dict(checkpoint=last, release=release, top1=metrics['accuracy/top1'],
                top5=metrics['accuracy/top5'], minutes=minutes)


def finetune(work_dir: str, pretrained: Optional[str], seed: int, fp32: bool,
             options: Sequence[str] = ()) -> dict:
    """Train the demo detector from ``pretrained`` (None: random backbone) with
    ``seed`` (head initialisation, data order, and the random backbone), test it."""
    from mmbackbones.datasets import make_digits_detection
    make_digits_detection(osp.join(ROOT, 'data', 'digits_det'))
    init = (f'model.backbone.init_cfg.checkpoint={pretrained}' if pretrained
            else 'model.backbone.init_cfg=None')
    last, metrics, minutes = train_and_test(DET_CONFIG, work_dir, fp32,
                                            [*options, init, f'randomness.seed={seed}'])
    # CocoMetric reports nothing when the detector finds nothing: that is mAP 0
    return dict(checkpoint=last, mAP=metrics.get('coco/bbox_mAP', 0.0),
                mAP50=metrics.get('coco/bbox_mAP_50', 0.0), minutes=minutes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--release', default=osp.join(ROOT, 'work_dirs', 'releases',
                                                      'vovnet19slim_digits.pth'),
                        help='where the pretrained backbone is published')
    parser.add_argument('--seeds', type=int, default=3,
                        help='detection runs per backbone initialisation (at least 2)')
    parser.add_argument('--fp32', action='store_true', help='turn mixed precision off')
    parser.add_argument('--pretrain-epochs', type=int, help='shorter pretraining (tests)')
    parser.add_argument('--detect-epochs', type=int, help='shorter detection runs (tests)')
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f'--seeds {args.seeds}: the spread needs at least 2 runs')
    os.chdir(ROOT)  # configs name data/ relative to the repository
    start = time.time()
    cls = pretrain(osp.join(args.work_dir, 'pretrain'), args.release, args.fp32,
                   schedule(args.pretrain_epochs, warmup=1) if args.pretrain_epochs else [])
    detect = schedule(args.detect_epochs, warmup=0) if args.detect_epochs else []
    runs = {name: [finetune(osp.join(args.work_dir, f'detection_{name}_seed{seed}'), weights,
                            seed, args.fp32, detect) for seed in range(args.seeds)]
            for name, weights in (('pretrained', cls['release']), ('random', None))}
    verdict = spread_verdict([r['mAP'] for r in runs['pretrained']],
                             [r['mAP'] for r in runs['random']])
    ok = cls['top1'] >= TARGET_TOP1
    print('\n[demo] ---------------------------------------------------------------')
    print(f'[demo] pretraining  VoVNet-19-slim on digits, {cls["minutes"]:.1f} min: '
          f'top-1 {cls["top1"]:.2f} %, top-5 {cls["top5"]:.2f} % '
          f'(target >= {TARGET_TOP1:.0f} %: {"met" if ok else "MISSED"})')
    print(f'[demo] logs and checkpoints: {osp.join(args.work_dir, "pretrain")}')
    print(f'[demo] training checkpoint:  {cls["checkpoint"]}')
    print(f'[demo] published weights:    {cls["release"]}')
    for name, results in runs.items():
        stats = verdict[name]
        minutes = statistics.mean(r['minutes'] for r in results)
        print(f'[demo] RetinaNet, {name:>10} backbone, {len(results)} seeds, '
              f'{minutes:.1f} min each: COCO bbox mAP {stats["mean"]:.3f} ± {stats["std"]:.3f} '
              f'({", ".join(format(r["mAP"], ".3f") for r in results)})')
    print(f'[demo] pretraining gain: {verdict["gain"]:+.3f} mAP; run-to-run spread '
          f'(larger std over seeds) {verdict["spread"]:.3f}: '
          f'{"holds" if verdict["holds"] else "DOES NOT HOLD"} (gain > spread, and every '
          f'pretrained run beats every random one)')
    from mmbackbones.engine.curves import plot_runs
    detection_dirs = [osp.join(args.work_dir, f'detection_{name}_seed{seed}')
                      for name in runs for seed in range(args.seeds)]
    plots = {'pretraining': ([osp.join(args.work_dir, 'pretrain')], None, None),
             'detection': (detection_dirs, ['loss', 'coco/bbox_mAP'],
                           [f'{name} backbone, seed {seed}' for name in runs
                            for seed in range(args.seeds)])}
    for name, (dirs, keys, labels) in plots.items():
        out = osp.join(args.work_dir, f'{name}_curves.png')
        plot_runs(dirs, keys, out, labels)
        print(f'[demo] {name} curves:  {out}')
    print(f'[demo] total {(time.time() - start) / 60:.1f} min '
          f'({"fp32" if args.fp32 else "mixed precision where the machine has it"})')
    return 0 if ok and verdict['holds'] else 1


if __name__ == '__main__':
    sys.exit(main())
