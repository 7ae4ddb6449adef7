import os
import random
from functools import partial

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop

from ..checkpoint import load_checkpoint
from ..loader import Source, backbone_of, load_source, network_record
from ..registry import HOOKS
from .finetune import OPTION as REINIT_OPTION
from .finetune import fine_tune_keys


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


@HOOKS.register_module()
class UnreadableImagesHook(Hook):
    """Stops a training run whose data set has too many unreadable images.

    :class:`~mmbackbones.datasets.LoadImageOrSkip` (in the main process and in
    data-loader workers) appends every skipped file to ``record``; after every
    iteration this hook looks at the record's size (re-reading it only when it
    grew), logs new skips, and stops the run at the iteration where more than
    ``max_fraction`` of the training set (default 0.1 %) were skipped, listing them.
    """
    priority = 'LOW'

    def __init__(self, record: str, max_fraction: float = 0.001):
        self.record, self.max_fraction = record, max_fraction
        self._reported, self._size = 0, 0

    def before_train(self, runner) -> None:
        if get_rank() == 0 and os.path.exists(self.record):
            os.remove(self.record)  # a resumed run counts its own skips

    def _check(self, runner) -> None:
        try:
            size = os.path.getsize(self.record)
        except OSError:
            return
        if size == self._size:
            return
        self._size = size
        with open(self.record) as f:
            paths = sorted({line.strip() for line in f if line.strip()})
        if len(paths) > self._reported:
            runner.logger.warning(f'{len(paths)} unreadable training images skipped so far '
                                  f'(listed in {self.record})')
            self._reported = len(paths)
        total = len(runner.train_dataloader.dataset)
        if len(paths) > self.max_fraction * total:
            raise RuntimeError(
                f'{len(paths)} training images are unreadable, more than the limit of '
                f'{self.max_fraction:.2%} of {total} (stopped after iteration '
                f'{runner.iter + 1}, epoch {runner.epoch + 1}): {paths}. Check the set with '
                f'tools/check_dataset.py, or raise unreadable_images.max_fraction.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._check(runner)

    def after_train_epoch(self, runner) -> None:
        self._check(runner)


@HOOKS.register_module()
class UnreadableEvalImagesHook(Hook):
    """With ``unreadable_images.skip_in_eval=True``: every evaluation's log (and
    scalars) says how many unreadable images were left out of it, and where
    they are listed."""
    priority = 'ABOVE_NORMAL'  # before the logger writes the epoch's line

    def __init__(self, record: str):
        self.record = record

    def _report(self, runner, mode: str) -> None:
        with open(self.record) as f:
            names = [line.strip() for line in f if line.strip()]
        runner.message_hub.update_scalar(f'{mode}/unreadable_left_out', len(names))
        runner.logger.warning(f'{mode}: {len(names)} unreadable images left out of the '
                              f'evaluated set (listed in {self.record})')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'val')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'test')


@HOOKS.register_module()
class CheckpointNetworkHook(Hook):
    """Every checkpoint of a run names its network, and every load of the run is
    strict (:func:`mmbackbones.load_weights`):

    * saving: ``meta.backbone`` records the backbone's type, config arguments and
      ``arch_args()``, so loading it into another network is an error, and
      ``tools/publish_model.py`` carries the record into the release;
    * ``load_from`` (``tools/test.py``, ``tools/train.py --load-from``) and
      ``resume``: a checkpoint whose keys or shapes do not fit the whole model,
      or whose recorded network differs, stops the run instead of MMEngine's
      ``strict=False`` warnings and a run on random weights. A training run's
      ``load_from`` leaves the tensors the config's ``load_from_reinit`` names
      at their initialisation (fine-tuning to other classes, :mod:`.finetune`).
    """
    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        runner.load_checkpoint = partial(load_into_runner, runner)
        if _reinit_names(runner) and not (runner._load_from or runner._resume):
            runner.logger.warning(f'{REINIT_OPTION} is set but there is no load_from: '
                                  f'nothing is loaded, every tensor is initialised')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        backbone = backbone_of(unwrap(runner.model))
        if backbone is None:
            return
        config = runner.cfg.get('model', {}).get('backbone') if runner.cfg else None
        meta = checkpoint.setdefault('meta', {})
        meta['backbone'] = network_record(backbone, config.to_dict() if hasattr(
            config, 'to_dict') else config)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def _reinit_names(runner):
    return runner.cfg.get(REINIT_OPTION) if runner.cfg else None


def load_into_runner(runner, filename: str, map_location='cpu', strict: bool = False,
                     revise_keys=None) -> dict:
    """``Runner.load_checkpoint`` through :func:`mmbackbones.load_weights`:
    the whole model, strictly, whatever ``strict`` MMEngine passes."""
    if map_location == 'default' or callable(map_location):
        map_location = 'cpu'
    checkpoint = load_checkpoint(filename, map_location)
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    path = os.path.expanduser(filename)
    model, keep = unwrap(runner.model), ()
    # a resumed run, or a test, holds the fine-tuned shapes: every tensor loads
    if isinstance(runner._train_loop, BaseLoop) and not runner._resume:
        keep = fine_tune_keys(model, checkpoint, _reinit_names(runner), filename,
                              logger=runner.logger)
    load_source(model, Source(filename, checkpoint, path if os.path.isfile(path) else None),
                logger=runner.logger, keep=keep)
    runner._has_loaded = True
    return checkpoint
