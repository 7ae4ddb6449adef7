#!/usr/bin/env python
"""The main job, on embedded demo data (no download): make the data, pretrain a
backbone with the recipe, evaluate it, publish the checkpoint, then fine-tune a
detector from it and, with the same budget, from a random backbone, several times
each (seeds 0..K-1), and print the mean and spread of both COCO mAPs, the gain
and whether it holds against the run-to-run spread, and where everything went.

    python tools/demo.py            # (make demo)
    python tools/demo.py --quick    # a first look: shorter schedules, 2 seeds
    python tools/demo.py --seeds 5  # more detection runs per initialisation

Pretraining uses every core in one process. The detector runs are independent:
they run side by side in ``--jobs`` processes (default: one per core, at most
one per run), each with its share of the cores: on 2 cores a detector step took 0.25 s with
2 threads and 0.32-0.40 s with one, so two single-threaded runs side by side get
through more steps, and a busy neighbour on the machine stalls a multi-threaded
step (1.0-3.2 s measured) far more than a single-threaded one.
"""
import argparse
import glob
import multiprocessing
import os
import os.path as osp
import re
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)

CLS_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py')
DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
TARGET_TOP1 = 95.0
QUICK = dict(pretrain_epochs=6, detect_epochs=3, seeds=2)
#: the pretraining config's linear warmup; its cosine decay needs an epoch after it,
#: or MMEngine's scheduler refuses (end not after begin) once the run has started
PRETRAIN_WARMUP_EPOCHS = 1
#: how often the detection stage reports progress while its runs train
PROGRESS_EVERY_S = 30
JOB_LOG = 'demo_job.log'
TRAIN_LINE = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')


def schedule(epochs: int, warmup: int, val_every: int) -> List[str]:
    """``--cfg-options`` that shorten a demo config to ``epochs``: its second
    scheduler is the cosine decay after ``warmup`` epochs; validation every
    ``val_every`` epochs (and at the end), the checkpoint at the end."""
    return [f'train_cfg.max_epochs={epochs}',
            f'param_scheduler.1.end={epochs}', f'param_scheduler.1.T_max={epochs - warmup}',
            f'default_hooks.checkpoint.interval={epochs}',
            f'train_cfg.val_interval={val_every}']


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


def parallelism(runs: int, jobs: Optional[int] = None,
                cores: Optional[int] = None) -> Tuple[int, int]:
    """``(processes, threads each)`` for ``runs`` independent detector runs on
    ``cores`` (default: all of this machine's)."""
    cores = cores or os.cpu_count() or 1
    jobs = max(1, min(runs, jobs or cores))
    return jobs, max(1, cores // jobs)


def pretrain(work_dir: str, release: str, fp32: bool, options: Sequence[str] = ()) -> dict:
    """Train the classification demo config in this process, evaluate its last
    checkpoint with tools/test.py and publish it."""
    import test as test_tool
    import train as train_tool

    from mmbackbones.datasets import make_digits_classification
    from mmbackbones.publish import publish_checkpoint
    counts = make_digits_classification(osp.join(ROOT, 'data', 'digits'))
    print(f'[demo] classification data: data/digits ({counts["train"]} train, '
          f'{counts["val"]} val images)', flush=True)
    start = time.time()
    precision = ['--fp32'] if fp32 else []
    options = ['--cfg-options', *options] if options else []
    train_tool.main([CLS_CONFIG, '--work-dir', work_dir, *precision, *options])
    last = max(glob.glob(osp.join(work_dir, 'epoch_*.pth')), key=osp.getmtime)
    metrics = test_tool.main([CLS_CONFIG, last, '--work-dir', work_dir, *precision])
    return dict(checkpoint=last, release=publish_checkpoint(last, release),
                top1=metrics['accuracy/top1'], top5=metrics['accuracy/top5'],
                minutes=(time.time() - start) / 60)


@contextmanager
def output_to(path: str):
    """Send this process's stdout and stderr (file descriptors included, so
    MMEngine's handlers and C++ warnings follow) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a') as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _set_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def finetune(work_dir: str, pretrained: Optional[str], seed: int, fp32: bool,
             options: Sequence[str] = ()) -> dict:
    """Train the demo detector from ``pretrained`` (None: random backbone) with
    ``seed`` (head initialisation, data order, and the random backbone); its
    metrics are the last epoch's validation. The run's output goes to
    ``work_dir/demo_job.log``."""
    import train as train_tool

    from mmbackbones.datasets import make_digits_detection
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()
    with output_to(osp.join(work_dir, JOB_LOG)):
        print(f'[demo-job] started {start}', flush=True)
        make_digits_detection(osp.join(ROOT, 'data', 'digits_det'))
        init = (f'model.backbone.init_cfg.checkpoint={pretrained}' if pretrained
                else 'model.backbone.init_cfg=None')
        precision = ['--fp32'] if fp32 else []
        runner = train_tool.main([
            DET_CONFIG, '--work-dir', work_dir, *precision, '--cfg-options', *options, init,
            f'randomness.seed={seed}', 'train_dataloader.num_workers=0',
            'val_dataloader.num_workers=0'])
    hub = runner.message_hub
    # CocoMetric reports nothing when the detector finds nothing: that is mAP 0
    metric = {key: hub.get_scalar(f'val/coco/{key}').current()
              if f'val/coco/{key}' in hub.log_scalars else 0.0
              for key in ('bbox_mAP', 'bbox_mAP_50')}
    return dict(checkpoint=max(glob.glob(osp.join(work_dir, 'epoch_*.pth')),
                               key=osp.getmtime),
                mAP=metric['bbox_mAP'], mAP50=metric['bbox_mAP_50'],
                minutes=(time.time() - start) / 60)


def job_progress(work_dir: str, epochs: int) -> Optional[Tuple[float, float]]:
    """``(started, fraction done)`` of a detector run from its log, or None
    before it starts."""
    try:
        with open(osp.join(work_dir, JOB_LOG)) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    first, newline, _ = text.partition('\n')
    if not newline or not first.startswith('[demo-job] started '):
        return None  # the run has opened its log but not written its first line yet
    started = float(first.split()[-1])
    lines = TRAIN_LINE.findall(text)
    if not lines:
        return started, 0.0
    epoch, it, per_epoch = map(int, lines[-1])
    return started, ((epoch - 1) * per_epoch + it) / (epochs * per_epoch)


def detection_eta(progress: Sequence[Optional[Tuple[float, float]]], done_minutes:
                  Sequence[float], jobs: int, now: float) -> Optional[float]:
    """Minutes left for the detection stage: the runs' mean duration (finished
    runs, else extrapolated from the running ones) times the work left, shared
    by ``jobs`` processes."""
    running = [(now - started) / 60 / fraction for started, fraction in
               filter(None, progress) if fraction > 0.05]
    if not (done_minutes or running):
        return None  # nothing to extrapolate from yet
    duration = statistics.mean(done_minutes or running)
    left = sum(1.0 if p is None else 1.0 - p[1] for p in progress)
    return duration * left / jobs


def run_detectors(runs: Dict[str, Tuple[Optional[str], int]], epochs: int, fp32: bool,
                  options: Sequence[str], jobs: int, threads: int, start: float) -> dict:
    """The detector runs ``{work_dir: (pretrained, seed)}`` side by side; prints
    progress with an estimate of the time left."""
    results, done_minutes = {}, []
    context = multiprocessing.get_context('spawn')  # no OpenMP state forked from us
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_threads,
                             initargs=(threads, )) as pool:
        pending = {pool.submit(finetune, work_dir, weights, seed, fp32, options): work_dir
                   for work_dir, (weights, seed) in runs.items()}
        while pending:
            finished, _ = wait(pending, timeout=PROGRESS_EVERY_S,
                               return_when=FIRST_COMPLETED)
            for future in finished:
                work_dir = pending.pop(future)
                results[work_dir] = future.result()  # a failed run ends the demo here
                done_minutes.append(results[work_dir]['minutes'])
                print(f'[demo] detector {osp.basename(work_dir)}: COCO bbox mAP '
                      f'{results[work_dir]["mAP"]:.3f} in {done_minutes[-1]:.1f} min',
                      flush=True)
            progress = [job_progress(w, epochs) for w in pending.values()]
            eta = detection_eta(progress, done_minutes, jobs, time.time())
            running = [f'{osp.basename(w)} {100 * p[1]:.0f} %'
                       for w, p in zip(pending.values(), progress) if p is not None]
            print(f'[demo] detection: {len(results)}/{len(runs)} runs done'
                  + (f', running: {", ".join(running)}' if running else '')
                  + f'; elapsed {(time.time() - start) / 60:.1f} min'
                  + (f', about {eta:.1f} min left' if eta is not None and pending else ''),
                  flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--release', default=osp.join(ROOT, 'work_dirs', 'releases',
                                                      'vovnet19slim_digits.pth'),
                        help='where the pretrained backbone is published')
    parser.add_argument('--seeds', type=int, help='detection runs per backbone '
                        'initialisation (at least 2; default 3, --quick 2)')
    parser.add_argument('--quick', action='store_true',
                        help=f'a first look: pretraining {QUICK["pretrain_epochs"]} epochs, '
                        f'detection {QUICK["detect_epochs"]} epochs, {QUICK["seeds"]} seeds; '
                        'too short for the top-1 target')
    parser.add_argument('--fp32', action='store_true', help='turn mixed precision off')
    parser.add_argument('--jobs', type=int, help='detector runs side by side '
                        '(default: one per core torch uses here)')
    parser.add_argument('--pretrain-epochs', type=int, help='pretraining schedule (at least '
                        f'{PRETRAIN_WARMUP_EPOCHS + 1}: a {PRETRAIN_WARMUP_EPOCHS}-epoch '
                        'warmup, then the cosine decay)')
    parser.add_argument('--detect-epochs', type=int, help='detection schedule (at least 1)')
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    args.seeds = 3 if args.seeds is None else args.seeds
    if args.seeds < 2:
        parser.error(f'--seeds {args.seeds}: the spread needs at least 2 runs')
    if args.jobs is not None and args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: at least 1')
    if args.pretrain_epochs is not None and args.pretrain_epochs < PRETRAIN_WARMUP_EPOCHS + 1:
        parser.error(f'--pretrain-epochs {args.pretrain_epochs}: at least '
                     f'{PRETRAIN_WARMUP_EPOCHS + 1} (a {PRETRAIN_WARMUP_EPOCHS}-epoch warmup, '
                     'then the cosine decay)')
    if args.detect_epochs is not None and args.detect_epochs < 1:
        parser.error(f'--detect-epochs {args.detect_epochs}: at least 1')
    os.chdir(ROOT)  # configs name data/ relative to the repository
    from mmengine.config import Config
    detect_epochs = args.detect_epochs or Config.fromfile(DET_CONFIG).train_cfg.max_epochs
    pretrain_epochs = args.pretrain_epochs or Config.fromfile(CLS_CONFIG).train_cfg.max_epochs
    runs = {osp.join(args.work_dir, f'detection_{name}_seed{seed}'): (name, seed)
            for name in ('pretrained', 'random') for seed in range(args.seeds)}
    import torch  # its thread count is this run's share of the cores (OMP_NUM_THREADS)
    jobs, threads = parallelism(len(runs), args.jobs, torch.get_num_threads())
    start = time.time()
    print(f'[demo] stage 1/2: pretrain VoVNet-19-slim on digits, {pretrain_epochs} epochs '
          f'in this process (MMEngine\'s log lines show its ETA)', flush=True)
    cls = pretrain(osp.join(args.work_dir, 'pretrain'), args.release, args.fp32,
                   schedule(args.pretrain_epochs, PRETRAIN_WARMUP_EPOCHS, args.pretrain_epochs)
                   if args.pretrain_epochs else [])
    print(f'[demo] pretraining done in {cls["minutes"]:.1f} min: top-1 {cls["top1"]:.2f} %; '
          f'published {cls["release"]}', flush=True)
    print(f'[demo] stage 2/2: {len(runs)} RetinaNet runs of {detect_epochs} epochs, '
          f'{jobs} at a time ({threads} thread{"s" * (threads > 1)} each); each run logs '
          f'to its folder\'s {JOB_LOG}', flush=True)
    detect = schedule(detect_epochs, 0, max(1, detect_epochs // 3))  # 3 or more mAP points
    results = run_detectors(
        {work_dir: (cls['release'] if name == 'pretrained' else None, seed)
         for work_dir, (name, seed) in runs.items()},
        detect_epochs, args.fp32, detect, jobs, threads, start)
    groups = {name: [results[w] for w, (n, _) in runs.items() if n == name]
              for name in ('pretrained', 'random')}
    verdict = spread_verdict([r['mAP'] for r in groups['pretrained']],
                             [r['mAP'] for r in groups['random']])
    ok = cls['top1'] >= TARGET_TOP1
    target = ('met' if ok else 'not met: --quick is too short for it' if args.quick
              else 'MISSED')
    print('\n[demo] ---------------------------------------------------------------')
    print(f'[demo] pretraining  VoVNet-19-slim on digits, {cls["minutes"]:.1f} min: '
          f'top-1 {cls["top1"]:.2f} %, top-5 {cls["top5"]:.2f} % '
          f'(target >= {TARGET_TOP1:.0f} %: {target})')
    print(f'[demo] logs and checkpoints: {osp.join(args.work_dir, "pretrain")}')
    print(f'[demo] training checkpoint:  {cls["checkpoint"]}')
    print(f'[demo] published weights:    {cls["release"]}')
    for name, group in groups.items():
        stats = verdict[name]
        minutes = statistics.mean(r['minutes'] for r in group)
        print(f'[demo] RetinaNet, {name:>10} backbone, {len(group)} seeds, '
              f'{minutes:.1f} min each: COCO bbox mAP {stats["mean"]:.3f} ± {stats["std"]:.3f} '
              f'({", ".join(format(r["mAP"], ".3f") for r in group)})')
    print(f'[demo] pretraining gain: {verdict["gain"]:+.3f} mAP; run-to-run spread '
          f'(larger std over seeds) {verdict["spread"]:.3f}: '
          f'{"holds" if verdict["holds"] else "DOES NOT HOLD"} (gain > spread, and every '
          f'pretrained run beats every random one)')
    from mmbackbones.engine.curves import plot_runs
    plots = {'pretraining': ([osp.join(args.work_dir, 'pretrain')], None, None),
             'detection': (list(runs), ['loss', 'coco/bbox_mAP'],
                           [f'{name} backbone, seed {seed}' for name, seed in runs.values()])}
    for name, (dirs, keys, labels) in plots.items():
        out = osp.join(args.work_dir, f'{name}_curves.png')
        plot_runs(dirs, keys, out, labels)
        print(f'[demo] {name} curves:  {out}')
    from mmbackbones.engine.precision import cpu_bf16_supported
    bf16 = not args.fp32 and (torch.cuda.is_available() or cpu_bf16_supported())
    print(f'[demo] total {(time.time() - start) / 60:.1f} min '
          f'({"mixed precision" if bf16 else "fp32"})')
    return 0 if (ok or args.quick) and verdict['holds'] else 1


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
