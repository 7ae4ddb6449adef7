# The seed's ImageNet recipe (torchvision's "new" classification recipe, 100 epochs),
# for MMPretrain. A backbone config inherits this file and sets only `model`.
#   tools/dist_train.sh configs/darknet53_imagenet.py 2     # 2 GPUs x 512 = 1024
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmbackbones'], allow_failed_imports=False)

# ---------------------------------------------------------------- model
model = dict(
    type='ImageClassifier',
    # set `type` and arguments in the child config
    backbone=dict(
        out_indices=(4, ),
        init_cfg=[dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu'),
                  dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)]),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=None,  # the backbone's deepest channels, set in the child config
        # CrossEntropy with label smoothing 0.1, applied to the mixed soft targets of
        # CutMix/MixUp exactly like torch's cross_entropy(label_smoothing=0.1)
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original',
                  loss_weight=1.0),
        topk=(1, 5)),
    # per batch, either MixUp (alpha 0.2) or CutMix (alpha 1.0), never both
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2),
                             dict(type='CutMix', alpha=1.0)],
                   probs=[0.5, 0.5]))

# ---------------------------------------------------------------- data
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
# images are loaded as BGR (OpenCV); the preprocessor turns them to RGB and normalizes
data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
bgr_mean = data_preprocessor['mean'][::-1]

# The fast pipeline (the default): decoding and the crop in one step, from the
# JPEG header's size, at libjpeg's reduced DCT scales where the crop allows
# (mmbackbones/datasets/fast_loading.py); the same augmentations as the exact one
# (tests/test_fast_pipeline.py); per data-loader worker about 1.35x the exact
# pipeline's speed and 1.55x torchvision's reference transforms (docs/speed.md).
train_pipeline = [
    # torchvision's RandomResizedCrop boxes (scale 0.08-1, ratio 3/4-4/3), 176 px,
    # given as an RGB PIL image to torchvision's transforms
    dict(type='mmbackbones.DecodeRandomResizedCrop', scale=176, interpolation='bilinear',
         to_pil=True),
    dict(type='torchvision/RandomHorizontalFlip', p=0.5),
    # torchvision's TrivialAugmentWide (its operation table built once)
    dict(type='mmbackbones.TrivialAugmentWide', interpolation='bilinear'),
    dict(type='PILToNumpy', to_bgr=True),
    # torchvision erases the normalized tensor with 0, i.e. with the mean colour
    dict(type='RandomErasing', erase_prob=0.1, mode='const', min_area_ratio=0.02,
         max_area_ratio=1 / 3, aspect_range=(0.3, 3.3), fill_color=bgr_mean),
    dict(type='PackInputs'),
]
test_pipeline = [
    # ResizeEdge 232 (short edge, bilinear) + CenterCrop 224 in one step
    dict(type='mmbackbones.DecodeResizeCenterCrop', resize=232, crop_size=224),
    dict(type='PackInputs'),
]
# The exact pipeline: MMPretrain's own transforms on full-size decodes. Select it
# with `--cfg-options data_pipeline=exact` (tools/train.py, tools/test.py).
data_pipeline = 'fast'
exact_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=176, backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # torchvision's own TrivialAugmentWide, on an RGB PIL image as in its recipe
    dict(type='NumpyToPIL', to_rgb=True),
    dict(type='torchvision/TrivialAugmentWide', interpolation='bilinear'),
    *train_pipeline[-3:],  # PILToNumpy, RandomErasing, PackInputs
]
exact_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=232, edge='short', backend='pillow',
         interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=512,  # per GPU; x 2 GPUs = 1024
    num_workers=16,
    # fresh workers each epoch, re-seeded per epoch by EpochSeedHook: the
    # augmentation of epoch e depends only on (seed, e), so a resumed run
    # reproduces an uninterrupted one
    persistent_workers=False,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=False,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule
epochs = 100
warmup_epochs = 5
optim_wrapper = dict(
    # mixed precision on GPU; tools/train.py falls back to fp32 OptimWrapper on a
    # machine without CUDA (or pass --cfg-options optim_wrapper.type=OptimWrapper)
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=0.5, momentum=0.9, weight_decay=2e-5),
    # torchvision's norm_weight_decay=0.0: no decay on normalization weights/biases
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    # linear warmup from lr x 0.01 (torchvision's lr_warmup_decay), every iteration
    dict(type='LinearLR', start_factor=0.01, end_factor=1.0, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# lr 0.5 is for a total batch of 1024; other totals scale linearly
auto_scale_lr = dict(base_batch_size=1024, enable=True)

# ---------------------------------------------------------------- runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
custom_hooks = [dict(type='mmbackbones.EpochSeedHook')]
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
