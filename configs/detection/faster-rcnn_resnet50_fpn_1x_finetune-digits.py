# Fine-tuning a public COCO detector to other classes (docs/weights.md#fine-tuning-a-public-detector):
# MMDetection's Faster R-CNN R-50-FPN 1x (80 COCO classes), by name, fine-tuned on a COCO-format
# set of 10 classes, here the embedded digits (`python tools/make_demo_data.py`). For a set of
# yours: data_root, classes, the annotation files and image folders, and the image scale.
# load_from loads every tensor of the file strictly, except the layers load_from_reinit names:
# the class scores and the per-class box deltas, whose shapes follow num_classes.
#   python tools/train.py configs/detection/faster-rcnn_resnet50_fpn_1x_finetune-digits.py
_base_ = ['./faster-rcnn_resnet50_fpn_1x_coco.py']

data_root = 'data/digits_det/'
classes = tuple(f'digit{i}' for i in range(10))
load_from = 'mmbackbones://mmdet/faster-rcnn_r50_fpn_1x_coco'
load_from_reinit = ['roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg']
epochs = 4

model = dict(
    backbone=dict(init_cfg=None),  # load_from replaces every tensor: no ImageNet file to read
    roi_head=dict(bbox_head=dict(num_classes=len(classes))))

# the digits are 128 px canvases (MMDetection's (1333, 800) suits photos)
scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

# fine-tuning, at batch 8: a quarter of the COCO schedule's learning rate (0.02 at batch 16)
optim_wrapper = dict(optimizer=dict(lr=0.005))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=epochs, milestones=[3], gamma=0.1),
]
train_cfg = dict(max_epochs=epochs, val_interval=epochs)
default_hooks = dict(checkpoint=dict(interval=epochs, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False)
