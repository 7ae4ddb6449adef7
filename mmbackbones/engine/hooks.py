import random
from functools import partial

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from ..registry import HOOKS


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int, base_seed: int) -> None:
    _seed_everything(base_seed + worker_id + 1)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seeds every random generator at the start of each training epoch from
    ``(seed, epoch, rank)`` alone, in the main process and in fresh data-loader
    workers.

    MMEngine seeds once per run, so a resumed run draws different augmentations
    (per-sample transforms, MixUp/CutMix, drop path) than the run it continues,
    and its default worker seeding repeats the same draws every epoch. With this
    hook, epoch ``e`` is the same whether or not the run was interrupted before it.
    Needs ``persistent_workers=False`` for the workers' part.
    """
    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner) -> None:
        base = runner.seed if runner.seed is not None else 0
        seed = (base * 10007 + runner.epoch) * 1009 + get_rank() * 101
        _seed_everything(seed)
        loader = runner.train_dataloader
        if getattr(loader, 'num_workers', 0) > 0:
            if loader.persistent_workers:
                runner.logger.warning('EpochSeedHook cannot re-seed persistent data '
                                      'workers; set persistent_workers=False for '
                                      'resumable, reproducible augmentation')
            else:
                loader.worker_init_fn = partial(_seed_worker, base_seed=seed)
