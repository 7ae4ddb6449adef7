"""Helpers for tests that build MMDetection models on the demo detection set."""
import copy

from mmengine.config import Config
from mmengine.registry import DefaultScope

CLASSES = tuple(f'digit{i}' for i in range(10))


def on_demo_data(cfg: Config, det_root: str) -> Config:
    """The config on the demo detection set: 10 classes, 128 px, no pretrained file."""
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.pop('pretrained_file', None)  # timm's weights (mmbackbones.Timm)
    for head in ('bbox_head', 'roi_head'):
        if head in cfg.model:
            target = cfg.model[head].get('bbox_head', cfg.model[head])
            target.num_classes = len(CLASSES)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='Resize', scale=(128, 128), keep_ratio=True),
                dict(type='PackDetInputs')]
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        cfg[loader] = dict(
            batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
            dataset=dict(type='CocoDataset', data_root=det_root + '/',
                         metainfo=dict(classes=CLASSES), ann_file=f'annotations/{split}.json',
                         data_prefix=dict(img=f'{split}/'), pipeline=pipeline,
                         filter_cfg=None, indices=2))
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    return cfg


def build_detector(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def first_batch(loader_cfg):
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('mmdet'):
        return next(iter(Runner.build_dataloader(loader_cfg)))


#: VoVNet-19-slim (the demo's backbone) trained from scratch, for detectors that train in seconds
SLIM_BACKBONE = dict(type='VoVNet', depth=19, slim=True, frozen_stages=-1, norm_eval=False,
                     init_cfg=None)


def small_trainable(cfg: Config, det_root: str, iters: int, work_dir: str,
                    batch: int = 8) -> Config:
    """A config of configs/detection (on the demo set: :func:`on_demo_data`) made
    small enough to train on the demo set in seconds: the demo's backbone, 64-channel
    FPN and heads (YOLOv3: 128/64/32), AdamW for ``iters`` iterations of ``batch``,
    then the test set's 80 images with COCO metrics. The test-time post-processing
    is the config's own."""
    cfg = on_demo_data(cfg, det_root)
    model = cfg.model
    if model.type == 'YOLOV3':
        model.backbone = dict(SLIM_BACKBONE, out_indices=(2, 3, 4))
        model.neck.update(in_channels=[512, 384, 256], out_channels=[128, 64, 32])
        model.bbox_head.update(in_channels=[128, 64, 32], out_channels=[128, 64, 32])
    else:
        model.backbone = dict(SLIM_BACKBONE, out_indices=(1, 2, 3, 4))
        model.neck.update(in_channels=[128, 256, 384, 512], out_channels=64)
        if 'roi_head' in model:
            model.rpn_head.update(in_channels=64, feat_channels=64)
            model.roi_head.bbox_roi_extractor.out_channels = 64
            model.roi_head.bbox_head.update(in_channels=64, fc_out_channels=256)
            # fewer training proposals and RoIs: a third of the step, the same test
            model.train_cfg.rpn_proposal.update(nms_pre=500, max_per_img=300)
            model.train_cfg.rcnn.sampler.num = 128
        else:
            model.bbox_head.update(in_channels=64, feat_channels=64, stacked_convs=2)
    cfg.train_dataloader.update(batch_size=batch)
    cfg.train_dataloader.sampler.shuffle = True
    cfg.train_dataloader.dataset.indices = None
    cfg.test_dataloader.batch_size = 16
    cfg.test_dataloader.dataset.indices = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = dict(type='TestLoop')
    cfg.test_evaluator = dict(type='CocoMetric', metric='bbox',
                              ann_file=f'{det_root}/annotations/val.json')
    cfg.optim_wrapper = dict(type='OptimWrapper', clip_grad=dict(max_norm=35, norm_type=2),
                             optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=min(10, iters))]
    cfg.default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                             interval=iters),
                             logger=dict(type='LoggerHook', interval=10),
                             timer=dict(type='IterTimerHook'),
                             param_scheduler=dict(type='ParamSchedulerHook'))
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=0)
    cfg.work_dir = work_dir
    return cfg


def train(cfg: Config) -> str:
    """Train ``cfg`` in this process; returns its last checkpoint."""
    import os.path as osp

    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('mmdet'):
        Runner.from_cfg(cfg).train()
    return osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
