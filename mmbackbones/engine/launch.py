"""What tools/train.py and tools/test.py do to a config before building a Runner."""
import difflib
import os
import os.path as osp
import re
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log


def prepare_config(cfg: Config, launcher: str = 'none') -> Config:
    """Check the config early and adapt it to the machine:

    * ``--launcher pytorch`` without CUDA: MMEngine would call
      ``torch.cuda.set_device`` and NCCL, and give DDP ``device_ids``; we start a
      gloo process group ourselves (the Runner then skips its own) and wrap the
      model in DDP without device ids.
    * ``AmpOptimWrapper`` without CUDA (it asserts CUDA): fall back to fp32.
    * the model's backbone type and the dataset folders exist.
    * ``resume=True`` without ``load_from`` resumes from :func:`latest_checkpoint`.
    """
    check_backbone_type(cfg)
    check_dataset_folders(cfg)
    if cfg.get('resume') and not cfg.get('load_from') and cfg.get('work_dir'):
        cfg.load_from = latest_checkpoint(cfg.work_dir)
    cuda = torch.cuda.is_available()
    if launcher != 'none' and not cuda:
        if launcher != 'pytorch':
            raise ValueError(f'launcher {launcher!r} needs GPUs here; on CPU use '
                             f"--launcher pytorch (tools/dist_train.sh)")
        _init_gloo()
        cfg.env_cfg = dict(cfg.get('env_cfg', {}))
        cfg.env_cfg['dist_cfg'] = dict(cfg.env_cfg.get('dist_cfg', {}), backend='gloo')
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    optim = cfg.get('optim_wrapper')
    if optim is not None and optim.get('type') == 'AmpOptimWrapper' and not cuda:
        print_log('no CUDA device: training in fp32 with OptimWrapper instead of '
                  'AmpOptimWrapper (mixed precision needs a GPU)', logger='current',
                  level=30)
        optim.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim.pop(key, None)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if not cuda and cfg.get(loader) is not None:
            cfg[loader]['pin_memory'] = False
    return cfg


CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')


def _step(path: str) -> int:
    match = CHECKPOINT_NAME.fullmatch(osp.basename(path))
    return int(match.group(1)) if match else -1


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint a run in ``work_dir`` can resume from, or None.

    MMEngine reads only its ``last_checkpoint`` pointer, which CheckpointHook
    writes after the checkpoint itself: a run killed between the two writes
    would resume from the checkpoint before (or from scratch). Checkpoints are
    written atomically here, so every ``epoch_N.pth``/``iter_N.pth`` present is
    complete and the highest N wins; the pointer still counts (it may name a
    file in another ``out_dir``).
    """
    candidates = []
    if osp.isdir(work_dir):
        candidates = [osp.join(work_dir, name) for name in os.listdir(work_dir)
                      if CHECKPOINT_NAME.fullmatch(name)]
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if osp.isfile(target):
            candidates.append(target)
    return max(candidates, key=_step) if candidates else None


def _init_gloo() -> None:
    import torch.distributed as dist
    if not dist.is_initialized():
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
                   if k not in os.environ]
        if missing:
            raise RuntimeError(f'--launcher pytorch needs {missing} in the environment; '
                               'start it with tools/dist_train.sh (torchrun)')
        dist.init_process_group('gloo')


def check_backbone_type(cfg: Config) -> None:
    """An unknown ``model.backbone.type`` fails now, with the names we provide."""
    backbone = cfg.get('model', {}).get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return
    from mmengine.registry import MODELS, DefaultScope
    name = backbone['type']
    scope = cfg.get('default_scope') or 'mmengine'
    with DefaultScope.overwrite_default_scope(scope):
        with MODELS.switch_scope_and_registry(scope) as registry:
            found = registry.get(name)
    if found is None:
        from ..api import list_backbones
        ours = list_backbones()
        close = difflib.get_close_matches(name.split('.')[-1], ours, n=1)
        hint = f"; did you mean 'mmbackbones.{close[0]}'?" if close else ''
        raise ValueError(f'unknown backbone type {name!r} in model.backbone (scope '
                         f'{scope!r}); mmbackbones provides {ours}, as '
                         f"'mmbackbones.<Name>'{hint}")


def dataset_folders(cfg: Config) -> List[str]:
    folders = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while isinstance(dataset, dict) and 'dataset' in dataset:  # wrappers
            dataset = dataset['dataset']
        if not isinstance(dataset, dict):
            continue
        root = dataset.get('data_root', '')
        prefix = dataset.get('data_prefix') or dataset.get('split') or ''
        if isinstance(prefix, dict):
            prefix = prefix.get('img_path', prefix.get('img', ''))
        folders.append(osp.join(root, prefix) if prefix else root)
        if dataset.get('ann_file'):
            folders.append(osp.join(root, dataset['ann_file']))
    return [f for f in folders if f]


def check_dataset_folders(cfg: Config) -> None:
    missing = [f for f in dataset_folders(cfg) if not osp.exists(f)]
    if missing:
        raise FileNotFoundError(
            f'dataset path(s) not found: {missing}. Set data_root in the config (or '
            f'--cfg-options), see README "Data"; the demo data is made by '
            f'`python tools/make_demo_data.py`.')
