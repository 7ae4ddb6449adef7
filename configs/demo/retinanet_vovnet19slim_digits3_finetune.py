# Fine-tuning a detector to other classes (docs/mmdetection.md): the demo's RetinaNet,
# trained on the 10 digits, fine-tuned to three of them. load_from loads every tensor of
# the trained detector strictly, except the layers load_from_reinit names: the class
# scores, whose shape follows num_classes, keep their new initialisation.
_base_ = ['./retinanet_vovnet19slim_digits.py']

classes = ('digit0', 'digit1', 'digit2')
load_from = 'work_dirs/demo/detection_pretrained_seed0/epoch_6.pth'
load_from_reinit = ['bbox_head.retina_cls']

model = dict(
    # load_from replaces every backbone tensor: no release to read first
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=len(classes)))
# MMDetection's CocoDataset and CocoMetric keep only these classes' annotations
train_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
