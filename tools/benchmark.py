#!/usr/bin/env python
"""Speed of a backbone (or of a config's model): inference and training-step
throughput, peak memory, in fp32 or bf16, channels-last, torch.compile and fused
inference on or off -- side by side with a reference in the same process.

    python tools/benchmark.py Darknet-53 --args "act_cfg={'type': 'LeakyReLU', 'negative_slope': 0.1}"
    python tools/benchmark.py ResNet-50 --mode train --batch 16
    python tools/benchmark.py VoVNet-39 --against fused      # fused vs unfused
    python tools/benchmark.py configs/vovnet39_imagenet.py --against none

The reference (``--against reference``, default) is timm's model of the same
architecture (Darknet-53) or torchvision's (the ports), cut to the backbone.
Reported: median and min..max per-step time over the repeats, images/s, the
ratio of throughputs (ours / reference, > 1 = ours faster) and peak memory
(CUDA: allocated; CPU training: activations saved for backward).
"""
import argparse
import copy
import os.path as osp
import platform
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


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
    parser.add_argument('--fuse', action='store_true', help='fold BatchNorm (inference)')
    parser.add_argument('--against', choices=['reference', 'fused', 'none'],
                        default='reference')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
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
        return MODELS.build(cfg.model.backbone), None, {}
    kwargs = parse_kwargs(args.args)
    name, base = list_variants().get(args.target, (args.target, {}))
    kwargs = {**base, **kwargs}
    comparable = dict(kwargs, out_indices=(-1, ))  # the reference returns the last map
    return build_backbone(name, **comparable), name, kwargs


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmbackbones.benchmark import Setting, compare, reference_model
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, name, kwargs = build_ours(args)
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
        models = {'ours': copy.deepcopy(ours)}
        fused = args.fuse and mode == 'infer'
        if args.against == 'reference':
            ref = reference_model(name, kwargs) if name else None
            if ref is None:
                raise SystemExit(f'no identical reference for {args.target}; '
                                 f'use --against fused or none')
            models['reference'] = ref
        elif args.against == 'fused':
            if mode == 'train':
                continue
            models = {'fused': copy.deepcopy(ours), 'unfused': copy.deepcopy(ours)}
        setting = Setting(mode=mode, batch=args.batch, shape=args.shape, dtype=args.dtype,
                          channels_last=args.channels_last, compile=args.compile,
                          fused=fused, device=args.device)
        if args.against == 'fused':
            from mmbackbones.deploy import fuse
            models['fused'] = fuse(models['fused'])
            setting = Setting(**{**setting.__dict__, 'fused': False})
        results = compare(models, setting, args.repeats, args.iters, args.warmup)
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
    main()
