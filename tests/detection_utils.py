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
