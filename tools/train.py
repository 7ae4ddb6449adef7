#!/usr/bin/env python
"""Train an MMPretrain (or MMDetection) config with mmbackbones' backbones.

    python tools/train.py configs/demo/vovnet19slim_digits.py
    tools/dist_train.sh configs/darknet53_imagenet.py 2          # 2 processes
    python tools/train.py CONFIG --resume                         # from the last checkpoint

Works on CPU-only machines too: ``--launcher pytorch`` uses gloo there, and the
recipe's mixed precision (``AmpOptimWrapper``) becomes bf16 autocast on a CPU with
native bf16, fp32 on one without. ``--fp32`` turns it off anywhere.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from a checkpoint; without a path, from the '
                        'latest one in the work dir')
    parser.add_argument('--load-from', help='initialise all weights from a checkpoint')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--fp32', action='store_true',
                        help='turn mixed precision off (AmpOptimWrapper -> OptimWrapper)')
    parser.add_argument('--skip-memory-check', action='store_true',
                        help='on CPU, start even when the batch looks too large for '
                        'the memory available')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args):
    from mmengine.config import Config

    import mmbackbones  # noqa: F401  (safe loading, atomic checkpoints, registry)
    from mmbackbones.engine import prepare_config
    cfg = Config.fromfile(args.config)
    data_root_before = cfg.get('data_root')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.fp32 and cfg.get('optim_wrapper') is not None:
        cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if args.load_from:
        cfg.load_from = args.load_from
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return prepare_config(cfg, args.launcher, check_memory=not args.skip_memory_check,
                          data_root_before=data_root_before)


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
