#!/usr/bin/env python
"""Evaluate a checkpoint with a config: ``python tools/test.py CONFIG CHECKPOINT``
(``tools/dist_test.sh CONFIG CHECKPOINT N`` for N processes)."""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (training or published)')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump the metrics to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--fp32', action='store_true',
                        help='evaluate in fp32 (default: the autocast the config trains with)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args):
    from mmengine.config import Config

    import mmbackbones  # noqa: F401
    from mmbackbones.checkpoint import load_checkpoint
    from mmbackbones.engine import prepare_config
    from mmbackbones.loader import without_weights
    cfg = Config.fromfile(args.config)
    data_root_before = cfg.get('data_root')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    load_checkpoint(args.checkpoint)  # a clear error for a missing/corrupt/unsafe file
    cfg.load_from = args.checkpoint
    # the checkpoint replaces every weight (the load is strict): a backbone's own
    # pretrained file (Timm(weights=True), init_cfg=Pretrained) would only be a
    # download, or an error offline, for nothing
    if isinstance(cfg.get('model'), dict) and isinstance(cfg.model.get('backbone'), dict):
        cfg.model.backbone = without_weights(cfg.model.backbone)
    cfg.train_dataloader = cfg.train_cfg = cfg.param_scheduler = None
    if args.fp32 and cfg.get('optim_wrapper') is not None:
        cfg.optim_wrapper.type = 'OptimWrapper'
    cfg = prepare_config(cfg, args.launcher,  # reads optim_wrapper: the eval autocast
                         data_root_before=data_root_before)
    cfg.optim_wrapper = None
    return cfg


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.runner import Runner
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.out and is_main_process():
        import json
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)
    return metrics


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
