# The ImageNet recipe scaled down to the embedded digits demo (10 classes, 64 px) on
# a 2-core CPU: the same transforms in the same order, MixUp/CutMix, label
# smoothing, no-decay norms, warmup + cosine per iteration; smaller crops, batch
# and schedule. Data: `python tools/make_demo_data.py` (README's `make demo` runs it).
_base_ = ['../_base_/imagenet_recipe.py']

data_root = 'data/digits'
train_crop, val_resize, val_crop = 40, 56, 48
epochs, warmup_epochs = 40, 1

model = dict(
    backbone=dict(type='VoVNet', depth=19, slim=True),
    head=dict(num_classes=10, in_channels=512, topk=(1, 5)))
data_preprocessor = dict(num_classes=10)

bgr_mean = {{_base_.bgr_mean}}
train_pipeline = [
    # crops of at least 25 % of a 64 px digit (ImageNet's 8 % leaves no digit)
    dict(type='mmbackbones.DecodeRandomResizedCrop', scale=train_crop,
         crop_ratio_range=(0.25, 1.0), interpolation='bilinear', to_pil=True),
    dict(type='torchvision/RandomHorizontalFlip', p=0.5),
    dict(type='mmbackbones.TrivialAugmentWide', interpolation='bilinear'),
    dict(type='PILToNumpy', to_bgr=True),
    dict(type='RandomErasing', erase_prob=0.1, mode='const', min_area_ratio=0.02,
         max_area_ratio=1 / 3, aspect_range=(0.3, 3.3), fill_color=bgr_mean),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='mmbackbones.DecodeResizeCenterCrop', resize=val_resize, crop_size=val_crop),
    dict(type='PackInputs'),
]
# `--cfg-options data_pipeline=exact`: MMPretrain's transforms, as in the recipe
exact_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=train_crop, crop_ratio_range=(0.25, 1.0),
         backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='NumpyToPIL', to_rgb=True),
    dict(type='torchvision/TrivialAugmentWide', interpolation='bilinear'),
    *train_pipeline[-3:],
]
exact_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=val_resize, edge='short', backend='pillow',
         interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=val_crop),
    dict(type='PackInputs'),
]
# The 64 px digits decode and augment in about a tenth of a step, in this process: on
# 2 cores a loader worker competes with the training threads (measured: 0.45 s a step
# with one worker, 0.40 s without)
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=120, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader

# the recipe's AmpOptimWrapper: bf16 autocast + channels-last on a CPU with native
# bf16 (tools/train.py), fp32 on one without
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, end_factor=1.0, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=epochs, val_interval=10)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=10, max_keep_ckpts=2))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0, deterministic=True)
