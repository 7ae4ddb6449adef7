"""Training and evaluation the Detectron2 way, for ``tools/train_detectron2.py``:
yacs configs through :class:`Trainer` (Detectron2's ``DefaultTrainer`` with COCO
evaluation), LazyConfig files through :func:`train_lazy`, and the embedded demo
set registered as ``digits_det_train`` / ``digits_det_val``.
"""
import logging
import weakref
import os
import os.path as osp
from typing import Dict, Optional, Sequence

from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import (AMPTrainer, DefaultTrainer, SimpleTrainer, default_setup,
                               default_writers, hooks)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..input_check import check_lazy_config
from .detectron2 import StrictDetectionCheckpointer, add_mmbackbones_config
from .naming import has_checkpoint

DEMO_ROOT = 'data/digits_det'
DEMO_SPLITS = {'digits_det_train': 'train', 'digits_det_val': 'val'}


def register_demo_datasets(root: str = DEMO_ROOT) -> None:
    """Register the embedded digits detection set (COCO format), making it on
    first use: no download, so the tool runs anywhere."""
    from ..datasets import make_digits_detection
    for name, split in DEMO_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        if comm.is_main_process():
            make_digits_detection(root)
        comm.synchronize()
        register_coco_instances(name, {}, osp.join(root, 'annotations', f'{split}.json'),
                                osp.join(root, split))


def register_coco_sets(sets: Sequence[Sequence[str]]) -> None:
    """``--register-coco NAME ANN_FILE IMAGE_DIR``: a user's COCO-format sets,
    checked before anything is built."""
    for name, ann_file, image_dir in sets:
        if name in DatasetCatalog.list():
            known = MetadataCatalog.get(name)
            if (known.get('json_file'), known.get('image_root')) == (ann_file, image_dir):
                continue  # the same set again (one process, several runs)
            raise ValueError(f'--register-coco {name}: Detectron2 already has a data set '
                             f'of that name; choose another')
        for what, path, exists in (('ANN_FILE', ann_file, osp.isfile),
                                   ('IMAGE_DIR', image_dir, osp.isdir)):
            if not exists(path):
                raise FileNotFoundError(f'--register-coco {name}: {what} {path} does not exist')
        register_coco_instances(name, {}, ann_file, image_dir)


class Trainer(DefaultTrainer):
    """Detectron2's trainer, evaluating every test set with COCO's metric and
    loading ``MODEL.WEIGHTS`` strictly for the backbone."""

    def build_hooks(self):
        # DefaultTrainer made its checkpointer just before; the periodic checkpoint
        # hook built here must share the strict one that resume_or_load uses
        self.checkpointer = StrictDetectionCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
            reinit=self.cfg.MODEL.MMBACKBONES.WEIGHTS_REINIT)
        return super().build_hooks()

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder=None):
        output_folder = output_folder or osp.join(cfg.OUTPUT_DIR, 'inference')
        return COCOEvaluator(dataset_name, output_dir=output_folder)


def setup_yacs(args) -> CfgNode:
    """``get_cfg()`` + our node + the file + the command line's ``KEY VALUE`` pairs.
    With ``--eval-only``, or ``--resume`` when the output folder holds a
    checkpoint, the weights come from ``MODEL.WEIGHTS`` or that checkpoint, so the
    ImageNet file of ``MODEL.MMBACKBONES.PRETRAINED`` is not needed and not read;
    the first start of a requeued job (``--resume``, nothing saved yet) keeps it."""
    cfg = get_cfg()
    add_mmbackbones_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.eval_only or (args.resume and has_checkpoint(cfg.OUTPUT_DIR)):
        cfg.MODEL.MMBACKBONES.PRETRAINED = ''
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def run_yacs(args) -> Optional[Dict]:
    cfg = setup_yacs(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        StrictDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def evaluate_lazy(cfg, model) -> Optional[Dict]:
    if 'evaluator' not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                                   instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def train_lazy(args, cfg) -> None:
    """A LazyConfig's ``model``, ``optimizer``, ``dataloader``, ``lr_multiplier`` and
    ``train`` (Detectron2's ``common/train.py`` keys) trained with its hooks."""
    model = create_ddp_model(instantiate(cfg.model).to(cfg.train.device),
                             **cfg.train.ddp)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, loader, optimizer)
    # fine-tuning to another class count: the layers init_checkpoint leaves as built
    checkpointer = StrictDetectionCheckpointer(
        model, cfg.train.output_dir, trainer=trainer,
        reinit=cfg.train.get('init_checkpoint_reinit') or [],
        reinit_option='train.init_checkpoint_reinit')
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate_lazy(cfg, model))
        if cfg.train.eval_period > 0 else None,  # 0: no evaluation, not even at the end
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def run_lazy(args) -> Optional[Dict]:
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    check_lazy_config(cfg)
    if args.eval_only:
        model = create_ddp_model(instantiate(cfg.model).to(cfg.train.device))
        StrictDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return evaluate_lazy(cfg, model)
    train_lazy(args, cfg)
    return None


def main(args) -> Optional[Dict]:
    """Entry point of one process: yacs (``.yaml``) or LazyConfig (``.py``) file."""
    logging.getLogger('mmbackbones').setLevel(logging.INFO)
    register_demo_datasets(os.environ.get('MMBACKBONES_DEMO_ROOT', DEMO_ROOT))
    register_coco_sets(getattr(args, 'register_coco', None) or [])
    if args.config_file.endswith('.py'):
        return run_lazy(args)
    return run_yacs(args)
