# retinanet + FPN with timm's ConvNeXt-T (mmbackbones.Timm, timm's published ImageNet
# weights, downloaded once: see _base_/mmbackbones.py). ConvNeXt trains with AdamW, as in MMDetection's
# own ConvNeXt configs.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '_base_/mmbackbones.py']
model = dict(backbone={{_base_.convnext_tiny}},
             neck=dict(in_channels={{_base_.convnext_tiny_channels}}),
             data_preprocessor={{_base_.imagenet_preprocessor}})
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.05),
                     clip_grad=dict(max_norm=35, norm_type=2))
