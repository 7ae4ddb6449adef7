#!/usr/bin/env python
"""Speed of a backbone (or of a config's model): inference and training-step
throughput, peak memory, in fp32 or bf16, channels-last, torch.compile and fused
inference on or off -- side by side with a reference in the same process.

    python tools/benchmark.py Darknet-53 --args "act_cfg={'type': 'LeakyReLU', 'negative_slope': 0.1}"
    python tools/benchmark.py ResNet-50 --mode train --batch 16
    python tools/benchmark.py VoVNet-39 --fuse --against unfused
    python tools/benchmark.py VoVNet-39 --fuse --channels-last --compile --against eager
    python tools/benchmark.py configs/vovnet39_imagenet.py --against none

``--against`` picks the side-by-side run: ``reference`` (default) is timm's model
of the same architecture (Darknet-53) or torchvision's (the ports), cut to the
backbone, under the same settings (never fused); ``unfused`` is ours under the
same settings without ``--fuse``; ``eager`` is ours as ``model.eval()`` gives it
(fp32 autocast off, NCHW, unfused, not compiled) -- the path a user starts from.
``--fuse`` runs inference through ``mmbackbones.deploy.deploy``: BN folded, and
with ``--channels-last`` / ``--compile`` channels-last weights and an Inductor
compile with frozen parameters.
Reported: median and min..max per-step time over the repeats, images/s, the
ratio of throughputs (ours / reference, > 1 = ours faster) and peak memory
(CUDA: allocated; CPU training: activations saved for backward).
"""
import argparse
import copy
import os.path as osp
import platform
import sys
from dataclasses import replace

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('target', help='backbone class or variant name, or a config (.py)')
    parser.add_argument('--args', nargs='+', default=[], help='backbone arguments, k=v')
    parser.add_argument('--mode', choices=['infer', 'train', 'both'], default='both')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--shape', type=int, nargs='+', default=[224, 224])
    parser.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true', help='torch.compile(fullgraph=True)')
    parser.add_argument('--fuse', action='store_true',
                        help='inference through mmbackbones.deploy.deploy (BN folded)')
    parser.add_argument('--against', choices=['reference', 'unfused', 'eager', 'none'],
                        help='what to time beside ours (default: the identical timm/torchvision '
                             'network where one exists, else nothing)')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.against == 'unfused' and not (args.fuse and args.mode != 'train'):
        parser.error('--against unfused compares fused inference: add --fuse '
                     '(and --mode infer or both)')
    if args.against == 'eager' and not (args.fuse or args.channels_last or args.compile
                                        or args.dtype != 'fp32'):
        parser.error('--against eager needs a faster path to compare: '
                     '--fuse, --channels-last, --compile or --dtype bf16')
    args.shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    return args


def build_ours(args):
    from mmbackbones.api import build_backbone, list_variants, parse_kwargs
    if args.target.endswith('.py'):
        from mmengine.config import Config
        from mmengine.registry import MODELS, init_default_scope

        import mmbackbones  # noqa: F401
        cfg = Config.fromfile(args.target)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        from mmbackbones.loader import without_weights
        return MODELS.build(without_weights(cfg.model.backbone)), None, {}  # timing needs none
    kwargs = parse_kwargs(args.args)
    name, base = list_variants().get(args.target, (args.target, {}))
    kwargs = {**base, **kwargs}
    comparable = dict(kwargs, out_indices=(-1, ))  # the reference returns the last map
    return build_backbone(name, **comparable), name, kwargs


def describe(who: str, setting, *extra: str) -> str:
    """``ours (fused, channels-last, compiled, bf16)``: what a run was."""
    tags = list(extra) + [tag for tag, on in (('fused', setting.fused),
                                ('channels-last', setting.channels_last),
                                ('compiled', setting.compile),
                                ('bf16', setting.dtype == 'bf16')) if on]
    return f"{who} ({', '.join(tags)})" if tags else f'{who} (eager)'


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmbackbones.benchmark import Setting, compare, reference_model
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, name, kwargs = build_ours(args)
    reference = reference_model(name, kwargs) if name and args.against in (None,
                                                                            'reference') else None
    if reference is None and args.against == 'reference':
        raise ValueError(f'no identical reference for {args.target} in timm or torchvision; '
                         f'use --against unfused, eager or none')
    if args.against is None:
        args.against = 'reference' if reference is not None else 'none'
        if reference is None:
            print(f'# no identical timm/torchvision network for {args.target}: timing ours '
                  f'alone (--against eager compares with a faster path)')
    print(f'# {args.target} {kwargs or ""} | batch {args.batch} x 3 x {args.shape[0]} x '
          f'{args.shape[1]} | {args.dtype} | channels_last={args.channels_last} | '
          f'compile={args.compile} | fused={args.fuse} | {args.device} '
          f'({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'
          f' | torch {torch.__version__} | {args.repeats} repeats x {args.iters} steps')
    print('| mode | model | median ms/step | min..max ms | images/s | peak MB | ratio |')
    print('|---|---|---|---|---|---|---|')
    modes = ['infer', 'train'] if args.mode == 'both' else [args.mode]
    rows = []
    for mode in modes:
        setting = Setting(mode=mode, batch=args.batch, shape=args.shape, dtype=args.dtype,
                          channels_last=args.channels_last, compile=args.compile,
                          fused=args.fuse and mode == 'infer', device=args.device)
        runs = {describe('ours', setting): (copy.deepcopy(ours), setting)}
        if args.against == 'reference':
            ref_setting = replace(setting, fused=False)
            runs[describe('reference', ref_setting)] = (copy.deepcopy(reference), ref_setting)
        elif args.against == 'unfused':
            if not setting.fused:
                continue  # training has no fused form
            runs[describe('ours', replace(setting, fused=False), 'unfused')] = (
                copy.deepcopy(ours), replace(setting, fused=False))
        elif args.against == 'eager':
            eager = Setting(mode=mode, batch=args.batch, shape=args.shape, device=args.device)
            runs[describe('ours', eager)] = (copy.deepcopy(ours), eager)
        results = compare(runs, args.repeats, args.iters, args.warmup)
        first, *others = list(results.values())
        for result in results.values():
            ratio = (f'{result.throughput(args.batch) / others[0].throughput(args.batch):.3f}'
                     if result is first and others else '')
            memory = f'{result.peak_memory_mb:.0f}' if result.peak_memory_mb else '-'
            row = (mode, result.name, f'{result.median * 1e3:.1f}',
                   f'{min(result.step_times) * 1e3:.1f}..{max(result.step_times) * 1e3:.1f}',
                   f'{result.throughput(args.batch):.1f}', memory, ratio)
            rows.append(row)
            print('| ' + ' | '.join(row) + ' |', flush=True)
    return rows


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
